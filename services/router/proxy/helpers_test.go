package proxy

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/darklaunch/darklaunch/services/router/mirroring"
	"github.com/darklaunch/darklaunch/services/router/routertest"
	"github.com/darklaunch/darklaunch/shared/experiment"
	"github.com/darklaunch/darklaunch/shared/sketch"
)

// newTestProxy serves a Proxy, with the router's default settings, on a
// free loopback port until the test ends, and returns it with its URL.
func newTestProxy(t testing.TB, cfg Config, js jetstream.JetStream) (*Proxy, string) {
	t.Helper()
	return newTestProxyWith(t, cfg, mirroring.Settings{}, js)
}

// newTestProxyWith is newTestProxy with the router's settings given. The
// proxy is served by an httptest server on its own listener, without Run's
// flusher: the tests flush when they mean to.
func newTestProxyWith(t testing.TB, cfg Config, set mirroring.Settings, js jetstream.JetStream) (*Proxy, string) {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	p, err := New(cfg, set, js, prometheus.NewRegistry(), routertest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(p)
	srv.Config = p.newServer() // HTTP/1.1 and h2c, as Run serves
	srv.Listener.Close()
	srv.Listener = p.ln
	srv.Start()
	if p.tlsLn != nil {
		// Served by the same server: srv.Close ends its connections too.
		go srv.Config.ServeTLS(p.tlsLn, "", "")
	}
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = p.Close(ctx)
	})
	return p, p.URL()
}

func setup(t testing.TB, p *Proxy, e *experiment.Experiment) experiment.RoutingStatus {
	t.Helper()
	st, err := p.Setup(context.Background(), e)
	if err != nil {
		t.Fatalf("setup %s: %v", e.Key(), err)
	}
	return st
}

func counter(t testing.TB, p *Proxy, exp, role, class string) float64 {
	t.Helper()
	return testutil.ToFloat64(p.prom.requests.WithLabelValues(exp, role, class))
}

func dropped(t testing.TB, p *Proxy, exp, reason string) float64 {
	t.Helper()
	return testutil.ToFloat64(p.prom.dropped.WithLabelValues(exp, reason))
}

// routedProxy is newTestProxy routing percent of host from live to dark
// for a running experiment named name.
func routedProxy(t testing.TB, cfg Config, live, dark *routertest.Version, name, host string, percent float64) (*Proxy, string, *experiment.Experiment) {
	t.Helper()
	p, base := newTestProxy(t, cfg, nil)
	e := routertest.Experiment(name, host, live.URL, dark.URL, percent, experiment.StageRunning)
	setup(t, p, e)
	return p, base, e
}

// seriesByExperiment counts p's Prometheus series by their experiment
// label.
func seriesByExperiment(t testing.TB, p *Proxy) map[string]int {
	t.Helper()
	n := map[string]int{}
	mfs, err := p.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "experiment" {
					n[l.GetValue()]++
				}
			}
		}
	}
	return n
}

// recorded takes everything rt's recorder of role holds, open slot
// included, summed into one slot (Start and End unset).
func recorded(rt *route, role int) sketch.Slot {
	var sum sketch.Slot
	for _, s := range rt.rec[role].Flush(time.Time{}) {
		sum.Count += s.Count
		sum.Errors += s.Errors
		sum.Late += s.Late
		if sum.Tallies == nil {
			sum.Tallies = make([]int64, len(s.Tallies))
		}
		for i, n := range s.Tallies {
			sum.Tallies[i] += n
		}
	}
	return sum
}
