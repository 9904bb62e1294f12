package proxy

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/internal/testenv"
	"github.com/darklaunch/darklaunch/services/router/mirroring"
	"github.com/darklaunch/darklaunch/services/router/routertest"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

// TestContract: the proxy passes the suite every router backend passes,
// against real live and dark servers, publishing on a real NATS. A
// restarted proxy is a new one: its routes were in the old one's memory.
func TestContract(t *testing.T) {
	infra := testenv.Infra(t, testenv.StartNATS(t).Conn(t))
	routertest.TestBackend(t, func(t *testing.T) routertest.Harness {
		live := routertest.NewVersion(t, nil)
		dark := routertest.NewVersion(t, nil)
		set := mirroring.Settings{InitTimeout: 300 * time.Millisecond, InitInterval: 20 * time.Millisecond}
		return routertest.Harness{
			New: func(t *testing.T) routertest.Backend {
				p, _ := newTestProxyWith(t, Config{}, set, infra.JS)
				return p
			},
			Experiment: func(t *testing.T, name, host string) *experiment.Experiment {
				return routertest.Experiment(name, host, live.URL, dark.URL, 40, experiment.StageInitializing)
			},
			// Connections to the dark version are refused from now on.
			Break: func(t *testing.T) { dark.Close() },
			Routes: func(t *testing.T, b routertest.Backend) map[string]string {
				tab := b.(*Proxy).table.Load()
				routes := map[string]string{}
				for host, rt := range tab.byHost {
					routes[host] = rt.uid
					if tab.byKey[rt.key] != rt {
						t.Errorf("route of %s is not the table's route of %s", host, rt.key)
					}
				}
				if len(tab.byKey) != len(tab.byHost) {
					t.Errorf("%d routes by experiment, %d by host", len(tab.byKey), len(tab.byHost))
				}
				return routes
			},
		}
	})
}

// TestNewFailsOnABusyPort: the port is bound by New, so a busy one is
// reported before anything runs.
func TestNewFailsOnABusyPort(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	if _, err := New(Config{Addr: busy.Addr().String()}, mirroring.Settings{}, nil, nil, nil); err == nil || !strings.Contains(err.Error(), busy.Addr().String()) {
		t.Fatalf("New on a busy port: err %v, want one naming %s", err, busy.Addr())
	}
}

// TestRunServesUntilCanceled: Run serves at URL until its context ends and
// then returns nil; Close afterwards is clean.
func TestRunServesUntilCanceled(t *testing.T) {
	live := routertest.NewVersion(t, nil)
	dark := routertest.NewVersion(t, nil)
	p, err := New(Config{Addr: "127.0.0.1:0"}, mirroring.Settings{}, nil, nil, routertest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	setup(t, p, routertest.Experiment("run", "customdomain.com", live.URL, dark.URL, 100, experiment.StageRunning))
	if r := routertest.Send(t, p.URL(), "customdomain.com", "GET", "/", nil); r.Status != 200 {
		t.Fatalf("through Run's server: %d %q", r.Status, r.Body)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run returned %v, want nil once its context ended", err)
		}
	case <-time.After(2 * ShutdownTimeout):
		t.Fatal("Run did not return after its context ended")
	}
	cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer ccancel()
	if err := p.Close(cctx); err != nil {
		t.Fatal(err)
	}
	if _, err := routertest.Client.Get(p.URL()); err == nil {
		t.Error("the proxy still answers after Run and Close")
	}
}
