package stack

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/darklaunch/darklaunch/services"
	"github.com/darklaunch/darklaunch/services/loadgen"
	"github.com/darklaunch/darklaunch/services/router"
	"github.com/darklaunch/darklaunch/services/router/proxy"
	"github.com/darklaunch/darklaunch/shared/service"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
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

// TestWiringWhateverTheOrder: loadgen targets the router's proxy whatever
// the order of Run, a router with its own ephemeral address serves where
// it did after a restart, a service left out of Run can still be started,
// two starts of one service do not both run it, and a registry given in a
// service's configuration is the one it uses.
func TestWiringWhateverTheOrder(t *testing.T) {
	reg := prometheus.NewRegistry()
	st, err := Start(context.Background(), Config{
		StoreDir: t.TempDir(),
		Run:      []string{services.Loadgen, services.Router},
		Services: []service.Config{&router.Config{Proxy: proxy.Config{Addr: "127.0.0.1:0"}, Registry: reg}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	st.mu.Lock()
	lg := st.running[services.Loadgen].svc.(*loadgen.Service)
	st.mu.Unlock()
	if got := lg.Config().URL; got != st.ProxyURL || got == "" {
		t.Errorf("loadgen targets %q, the proxy is at %q", got, st.ProxyURL)
	}
	if n, err := testutil.GatherAndCount(reg, "darklaunch_proxy_routes"); err != nil || n != 1 {
		t.Errorf("the router's registry has %d darklaunch_proxy_routes (err %v), want the given registry used", n, err)
	}

	before := st.ProxyURL
	if err := st.StopService(services.Router); err != nil {
		t.Fatal(err)
	}
	if err := st.StartService(services.Router); err != nil {
		t.Fatal(err)
	}
	st.mu.Lock()
	after := st.running[services.Router].svc.(service.Endpoint).URL()
	st.mu.Unlock()
	if after != before {
		t.Errorf("the restarted router serves at %s, loadgen at %s", after, before)
	}

	errs := make(chan error, 2)
	for range 2 {
		go func() { errs <- st.StartService(services.Collector) }()
	}
	var failed int
	for range 2 {
		if err := <-errs; err != nil {
			if !strings.Contains(err.Error(), "already running") {
				t.Errorf("second start: %v", err)
			}
			failed++
		}
	}
	if failed != 1 {
		t.Errorf("%d of two concurrent starts of the collector failed, want exactly one (and it left out of Run at first)", failed)
	}
}
