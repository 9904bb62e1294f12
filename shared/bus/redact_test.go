package bus_test

import (
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/darklaunch/darklaunch/internal/testenv"
	"github.com/darklaunch/darklaunch/shared/bus"
)

// TestRedactURL: passwords and tokens go, in every URL of a list, whether
// the URL parses or not; the rest stays as it was.
func TestRedactURL(t *testing.T) {
	cases := map[string]string{
		"nats://alice:hunter2@127.0.0.1:4222":              "nats://alice:xxxxx@127.0.0.1:4222",
		"nats://s3cr3t-token@127.0.0.1:4222":               "nats://xxxxx@127.0.0.1:4222",
		"tls://a:p%40ss@h1:4222, nats://tok@h2":            "tls://a:xxxxx@h1:4222, nats://xxxxx@h2",
		"alice:pa/ss@h:4222":                               "alice:xxxxx@h:4222", // does not parse as a URL
		"nats://al:ice:p@ss@h:notaport":                    "nats://al:xxxxx@h:notaport",
		"nats://127.0.0.1:4222":                            "nats://127.0.0.1:4222",
		"":                                                 "",
		"nats://h1:4222,nats://u:p@h2:4222,nats://h3:4222": "nats://h1:4222,nats://u:xxxxx@h2:4222,nats://h3:4222",
	}
	for in, want := range cases {
		if got := bus.RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestConnectErrorsHideCredentials: whatever fails, bus.Connect's error
// names the server without the password or token it was given, in the URL
// or in the configuration, and still matches nats.go's errors; on a real
// nats-server with token and with user/password authorization.
func TestConnectErrorsHideCredentials(t *testing.T) {
	token := testenv.StartNATSWith(t, func(o *server.Options) { o.Authorization = "right-token-1" })
	users := testenv.StartNATSWith(t, func(o *server.Options) { o.Username, o.Password = "alice", "right-password-1" })
	hostOf := func(n *testenv.NATS) string { return strings.TrimPrefix(n.URL(), "nats://") }
	free := testenv.FreeAddr(t)
	for name, c := range map[string]struct {
		cfg    bus.ConnConfig
		secret string
		is     error
	}{
		"token in URL":         {bus.ConnConfig{URL: "nats://wrong-token-2@" + hostOf(token)}, "wrong-token-2", nats.ErrAuthorization},
		"token option":         {bus.ConnConfig{URL: token.URL(), Token: "wrong-token-3"}, "wrong-token-3", nats.ErrAuthorization},
		"password in URL":      {bus.ConnConfig{URL: "nats://alice:wrong-pass-4@" + hostOf(users)}, "wrong-pass-4", nats.ErrAuthorization},
		"password option":      {bus.ConnConfig{URL: users.URL(), User: "alice", Password: "wrong-pass-5"}, "wrong-pass-5", nats.ErrAuthorization},
		"escaped password":     {bus.ConnConfig{URL: "nats://alice:wrong%2Fpass-6@" + hostOf(users)}, "wrong/pass-6", nats.ErrAuthorization},
		"no server":            {bus.ConnConfig{URL: "nats://alice:secret-pass-7@" + free}, "secret-pass-7", nats.ErrNoServers},
		"bad port":             {bus.ConnConfig{URL: "nats://alice:secret-pass-8@127.0.0.1:notaport"}, "secret-pass-8", nil},
		"unparseable":          {bus.ConnConfig{URL: "nats://alice:secret\"pass-9@127.0.0.1:4222/%zz"}, `secret"pass-9`, nil},
		"token, second URL":    {bus.ConnConfig{URL: "nats://" + free + ",nats://secret-token-10@" + free}, "secret-token-10", nats.ErrNoServers},
		"right one, elsewhere": {bus.ConnConfig{URL: "nats://right-token-1@" + free}, "right-token-1", nats.ErrNoServers},
	} {
		t.Run(name, func(t *testing.T) {
			nc, err := bus.Connect(c.cfg, nil)
			if err == nil {
				nc.Close()
				t.Fatal("connected")
			}
			msg := err.Error()
			for _, leak := range []string{c.secret, strings.ReplaceAll(c.secret, `"`, `\"`), strings.ReplaceAll(c.secret, "/", "%2F")} {
				if strings.Contains(msg, leak) {
					t.Errorf("the error shows the secret %q: %s", leak, msg)
				}
			}
			if !strings.Contains(msg, "connect to NATS at ") {
				t.Errorf("the error does not say what failed: %s", msg)
			}
			if c.is != nil && !errors.Is(err, c.is) {
				t.Errorf("errors.Is(%v, %v) = false", err, c.is)
			}
		})
	}
	// With the right credentials it connects.
	for _, cfg := range []bus.ConnConfig{{URL: "nats://right-token-1@" + hostOf(token)}, {URL: users.URL(), User: "alice", Password: "right-password-1"}} {
		nc, err := bus.Connect(cfg, nil)
		if err != nil {
			t.Fatalf("%s: %v", bus.RedactURL(cfg.URL), err)
		}
		nc.Close()
	}
}

// TestReconnectLogHidesToken: the log of a connection that comes back
// names the server without its token (net/url's Redacted, and so
// nc.ConnectedUrlRedacted, hide only passwords).
func TestReconnectLogHidesToken(t *testing.T) {
	srv := testenv.StartNATSWith(t, func(o *server.Options) { o.Authorization = "log-token-11" })
	var logs testenv.Buffer
	nc, err := bus.Connect(bus.ConnConfig{URL: "nats://log-token-11@" + strings.TrimPrefix(srv.URL(), "nats://")}, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if got := bus.ConnectedURL(nc); strings.Contains(got, "log-token-11") || !strings.Contains(got, "xxxxx@") {
		t.Errorf("ConnectedURL = %q", got)
	}
	port := srv.Server.Addr().(*net.TCPAddr).Port
	srv.Server.Shutdown()
	srv.Server.WaitForShutdown()
	testenv.StartNATSWith(t, func(o *server.Options) { o.Authorization, o.Port = "log-token-11", port })
	testenv.Until(t, 10*time.Second, "the connection to come back and be logged", func() bool {
		return nc.IsConnected() && strings.Contains(strings.ToLower(logs.String()), "reconnected")
	})
	if strings.Contains(logs.String(), "log-token-11") {
		t.Errorf("the logs show the token:\n%s", logs.String())
	}
}
