package cli

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/darklaunch/darklaunch/internal/testenv"
)

// authServers are real nats-servers, with JetStream, that want a token
// and a user and password; hostport is where each listens.
func authServers(t *testing.T) (tokenHost, usersHost string) {
	t.Helper()
	token := testenv.StartNATSWith(t, func(o *server.Options) { o.Authorization = "right-token-1" })
	users := testenv.StartNATSWith(t, func(o *server.Options) { o.Username, o.Password = "alice", "right-password-1" })
	return strings.TrimPrefix(token.URL(), "nats://"), strings.TrimPrefix(users.URL(), "nats://")
}

// TestConnectHints: a server that refuses the credentials (none, or wrong
// ones) gets a hint that says so and names the flags and variables that
// give them, not "start one with `darklaunch dev`", which only a missing
// server gets; no secret given is ever printed.
func TestConnectHints(t *testing.T) {
	tokenHost, usersHost := authServers(t)
	free := testenv.FreeAddr(t)
	authHint := []string{"--creds", "--token", "nats://user:password@host", "DARKLAUNCH_CREDS", "DARKLAUNCH_TOKEN", "DARKLAUNCH_SERVER"}
	for name, c := range map[string]struct {
		args   []string
		secret string
		want   []string
		not    string
	}{
		"token wanted": {[]string{"--server", "nats://" + tokenHost}, "",
			append([]string{"refused the connection without credentials"}, authHint...), "darklaunch dev"},
		"user wanted": {[]string{"--server", "nats://" + usersHost}, "",
			append([]string{"refused the connection without credentials"}, authHint...), "darklaunch dev"},
		"wrong --token": {[]string{"--server", "nats://" + tokenHost, "--token", "wrong-token-2"}, "wrong-token-2",
			append([]string{"refused the credentials given"}, authHint...), "darklaunch dev"},
		"wrong token in URL": {[]string{"--server", "nats://wrong-token-3@" + tokenHost}, "wrong-token-3",
			[]string{"nats://xxxxx@", "refused the credentials given"}, "darklaunch dev"},
		"wrong password in URL": {[]string{"--server", "nats://alice:wrong-pass-4@" + usersHost}, "wrong-pass-4",
			[]string{"nats://alice:xxxxx@", "refused the credentials given"}, "darklaunch dev"},
		"no server": {[]string{"--server", "nats://alice:secret-pass-5@" + free}, "secret-pass-5",
			[]string{"no servers available", "start one with `darklaunch dev`"}, "refused"},
		"dev, token wanted": {[]string{"dev", "--server", "nats://wrong-token-7@" + tokenHost}, "wrong-token-7",
			append([]string{"refused the credentials given"}, authHint...), "darklaunch dev`"},
		"bad URL": {[]string{"--server", "nats://alice:secret-pass-6@127.0.0.1:notaport"}, "secret-pass-6",
			[]string{"invalid port"}, "darklaunch dev"},
	} {
		t.Run(name, func(t *testing.T) {
			args := c.args
			if args[0] != "dev" {
				args = append([]string{"list"}, args...)
			}
			code, _, stderr := run(t, "", args...)
			if code != ExitInvalid {
				t.Errorf("exit %d, want %d", code, ExitInvalid)
			}
			for _, w := range c.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr does not say %q:\n%s", w, stderr)
				}
			}
			if strings.Contains(stderr, c.not) {
				t.Errorf("stderr says %q:\n%s", c.not, stderr)
			}
			if c.secret != "" && strings.Contains(stderr, c.secret) {
				t.Errorf("stderr shows the secret %q:\n%s", c.secret, stderr)
			}
		})
	}
}

// TestServiceAndDevHideCredentials: `serve` logs the server it connected
// to and `dev --server` prints it, both without the token or password the
// URL carries.
func TestServiceAndDevHideCredentials(t *testing.T) {
	tokenHost, usersHost := authServers(t)
	for name, c := range map[string]struct {
		args        []string
		secret      string
		ready, want string
	}{
		"serve, token": {[]string{"serve", "judge", "--server", "nats://right-token-1@" + tokenHost, "--connect-wait", "0"},
			"right-token-1", "judge running", "nats://xxxxx@" + tokenHost},
		"serve, password": {[]string{"serve", "judge", "--server", "nats://alice:right-password-1@" + usersHost, "--connect-wait", "0"},
			"right-password-1", "judge running", "nats://alice:xxxxx@" + usersHost},
		"dev, password": {[]string{"dev", "--server", "nats://alice:right-password-1@" + usersHost, "--proxy-addr", testenv.FreeAddr(t)},
			"right-password-1", "Ctrl-C stops it", "nats://alice:xxxxx@" + usersHost},
	} {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var out testenv.Buffer
			done := make(chan int, 1)
			go func() { done <- Run(ctx, c.args, strings.NewReader(""), &out, &out) }()
			testenv.Until(t, 30*time.Second, c.ready, func() bool { return strings.Contains(out.String(), c.ready) })
			cancel()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				t.Fatal("did not stop")
			}
			if !strings.Contains(out.String(), c.want) {
				t.Errorf("the output does not name the server as %s:\n%s", c.want, out.String())
			}
			if strings.Contains(out.String(), c.secret) {
				t.Errorf("the output shows the secret %q:\n%s", c.secret, out.String())
			}
		})
	}
}
