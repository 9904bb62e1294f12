package stack

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/darklaunch/darklaunch/services"
	"github.com/darklaunch/darklaunch/services/loadgen"
	"github.com/darklaunch/darklaunch/shared/service"
)

func TestStartRefusesUnknownServices(t *testing.T) {
	for name, cfg := range map[string]Config{
		"run":    {Run: []string{"judge", "scheduler"}},
		"config": {Services: []service.Config{&fakeConfig{}}},
	} {
		t.Run(name, func(t *testing.T) {
			st, err := Start(t.Context(), cfg)
			if err == nil {
				st.Close()
				t.Fatal("Start succeeded")
			}
			if !strings.Contains(err.Error(), `"scheduler"`) {
				t.Errorf("error %q does not name the unknown service", err)
			}
		})
	}
}

// TestBusyProxyPortIsReportedFirst: building the router binds its proxy's
// port, so a busy port stops Start before any service runs.
func TestBusyProxyPortIsReportedFirst(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	st, err := Start(t.Context(), Config{ProxyAddr: ln.Addr().String(), StoreDir: t.TempDir()})
	if err == nil {
		st.Close()
		t.Fatal("Start succeeded on a busy proxy port")
	}
	if !strings.Contains(err.Error(), ln.Addr().String()) || !strings.Contains(err.Error(), "listen") {
		t.Errorf("error %q does not say the proxy could not listen on %s", err, ln.Addr())
	}
}

// TestRestartedRouterServesWhereItDid: loadgen's target stays right across
// a router restart, and the services get the stack's wiring.
func TestRestartedRouterServesWhereItDid(t *testing.T) {
	st, err := Start(context.Background(), Config{StoreDir: t.TempDir(), Services: []service.Config{&loadgen.Config{Rate: 5}}})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if st.ProxyURL == "" || st.local.ProxyURL != st.ProxyURL || st.local.LiveURL != st.LiveURL || st.local.DarkURL != st.DarkURL {
		t.Fatalf("wiring %+v, proxy %s, live %s, dark %s", *st.local, st.ProxyURL, st.LiveURL, st.DarkURL)
	}
	if c := st.configs[services.Loadgen].(*loadgen.Config); c.Rate != 5 {
		t.Errorf("loadgen runs with %+v, want the given configuration", c)
	}
	before := st.ProxyURL
	if err := st.StopService(services.Router); err != nil {
		t.Fatal(err)
	}
	if err := st.StartService(services.Router); err != nil {
		t.Fatal(err)
	}
	if err := st.StartService(services.Router); err == nil {
		t.Error("a second start of a running service succeeded")
	}
	if st.ProxyURL != before {
		t.Errorf("proxy URL %s after the restart, want %s", st.ProxyURL, before)
	}
	resp, err := http.Get(before + "/")
	if err != nil {
		t.Fatalf("the restarted router does not serve at %s: %v", before, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("an unrouted host got %d, want the proxy's 404", resp.StatusCode)
	}
}

type fakeConfig struct{ service.Config }

func (*fakeConfig) Service() string { return "scheduler" }
