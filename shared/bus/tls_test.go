package bus_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/internal/testenv"
	"github.com/darklaunch/darklaunch/shared/bus"
)

// TestConnectTLS: against a server that requires TLS and a client
// certificate, the CA and the client's certificate connect (and JetStream
// works through it); missing either is refused with a reason that says so.
func TestConnectTLS(t *testing.T) {
	p := testenv.NewPKI(t)
	srv := testenv.StartNATSWithTLS(t, p)
	if !strings.HasPrefix(srv.URL(), "tls://") {
		t.Fatalf("server URL %s, want tls://", srv.URL())
	}
	good := bus.ConnConfig{URL: srv.URL(), Name: t.Name(), TLSCA: p.CAFile, TLSCert: p.ClientCert, TLSKey: p.ClientKey}
	nc, err := bus.Connect(good, nil)
	if err != nil {
		t.Fatalf("connect with the CA and a client certificate: %v", err)
	}
	defer nc.Close()
	if !nc.TLSRequired() {
		t.Error("the connection is not TLS")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := bus.EnsureInfra(ctx, nc, bus.StreamLimits{}); err != nil {
		t.Fatalf("JetStream over TLS: %v", err)
	}

	for name, tc := range map[string]struct {
		cfg  bus.ConnConfig
		want string
	}{
		"no client certificate": {bus.ConnConfig{URL: srv.URL(), TLSCA: p.CAFile}, "require a client certificate? pass --tls-cert and --tls-key"},
		"unknown CA":            {bus.ConnConfig{URL: srv.URL(), TLSCert: p.ClientCert, TLSKey: p.ClientKey}, "with --tls-ca"},
		"nats:// URL":           {bus.ConnConfig{URL: strings.Replace(srv.URL(), "tls://", "nats://", 1)}, "--tls-ca"},
		"certificate, no key":   {bus.ConnConfig{URL: srv.URL(), TLSCA: p.CAFile, TLSCert: p.ClientCert}, "--tls-cert and --tls-key"},
		"missing CA file":       {bus.ConnConfig{URL: srv.URL(), TLSCA: p.CAFile + ".missing"}, "rootCA"},
	} {
		t.Run(name, func(t *testing.T) {
			nc, err := bus.Connect(tc.cfg, nil)
			if err == nil {
				nc.Close()
				t.Fatal("connected")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
		})
	}
}
