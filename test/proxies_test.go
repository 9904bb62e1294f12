package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/darklaunch/darklaunch/internal/stack"
	"github.com/darklaunch/darklaunch/internal/testenv"
	"github.com/darklaunch/darklaunch/services/collector"
	"github.com/darklaunch/darklaunch/services/judge"
	"github.com/darklaunch/darklaunch/services/router"
	"github.com/darklaunch/darklaunch/services/router/mirroring"
	"github.com/darklaunch/darklaunch/services/router/proxy"
	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/service"
)

// TestTwoProxiesCountLikeOne: the same traffic, 30 requests in each of the
// 3 iterations of 1 s of an experiment mirroring every request, sent
// through one router's proxy, then split between two routers' proxies
// (request i to proxy i mod 2) flushing at different paces (200 and
// 300 ms): the collector's snapshots count every request once, live and
// dark, iteration by iteration (30, 60, 90), and the two runs agree
// exactly. No observation is reported lost, and the judge gets one
// routing event. The judge, collector and routers are real, on a real
// nats-server.
func TestTwoProxiesCountLikeOne(t *testing.T) {
	t.Parallel()
	one := proxiesRun(t, "one-proxy", 1, split)
	two := proxiesRun(t, "two-proxies", 2, split)
	for _, role := range []string{bus.RoleLive, bus.RoleDark} {
		for k := range one[role] {
			if one[role][k] != two[role][k] {
				t.Errorf("%s iteration %d: %v requests through two proxies, %v through one", role, k+1, two[role][k], one[role][k])
			}
		}
	}
}

// TestProxyStopLosesNothing: of two routers' proxies sharing the traffic,
// one is stopped in the middle of iteration 2 (the traffic then goes to
// the other only): its last flush is published before it exits, so every
// request still counts, and nothing is reported lost.
func TestProxyStopLosesNothing(t *testing.T) {
	t.Parallel()
	proxiesRun(t, "proxy-stops", 2, stopSecond)
}

// TestProxyCutOffIsCounted: of two routers' proxies sharing the traffic,
// one is cut off from NATS in the middle of iteration 2 and stopped, so
// that its last observations are never published (as in a crash): the
// loss is reported, the router named, once its lease has lapsed.
func TestProxyCutOffIsCounted(t *testing.T) {
	t.Parallel()
	proxiesRun(t, "proxy-cut-off", 2, cutSecond)
}

// TestTwoRoutersTwoCollectors: two routers' proxies share the traffic and
// two collectors the experiment; the collector that runs the clock stops
// after iteration 2 and the other takes over. Each iteration is measured
// and judged once, in order (one iteration event each), every request
// counted once.
func TestTwoRoutersTwoCollectors(t *testing.T) {
	t.Parallel()
	proxiesRun(t, "two-of-each", 2, collectorStops)
}

// startCollectors runs two collectors on e's bus, and watches them until
// the test ends: once the experiment has completed iteration 2 the one
// running a clock is stopped. The returned func waits for that watch.
func startCollectors(t *testing.T, e *env) (wait func()) {
	t.Helper()
	var regs []*prometheus.Registry
	var stops []func()
	for i := range 2 {
		nc, err := bus.Connect(bus.ConnConfig{URL: e.st.URL, Name: fmt.Sprintf("collector-%d", i), InboxPrefix: bus.InboxPrefix(bus.RoleCollector)}, logger(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		reg := prometheus.NewRegistry()
		c, err := collector.New(collector.Config{Grace: 600 * time.Millisecond, Instance: fmt.Sprintf("collector-%d", i), Registry: reg}, nc, logger(t))
		if err != nil {
			t.Fatal(err)
		}
		regs = append(regs, reg)
		stops = append(stops, testenv.Run(t, c))
	}
	clocks := func(reg *prometheus.Registry) float64 {
		fams, err := reg.Gather()
		if err != nil {
			t.Error(err)
		}
		for _, f := range fams {
			if f.GetName() == "darklaunch_collector_clocks" && len(f.GetMetric()) == 1 {
				return f.GetMetric()[0].GetGauge().GetValue()
			}
		}
		return 0
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			x, err := e.client.Get(context.Background(), bus.Ref{Namespace: "default", Name: "two-of-each"})
			if err == nil && x.Status.CompletedIterations >= 2 {
				n := []float64{clocks(regs[0]), clocks(regs[1])}
				if n[0]+n[1] != 1 {
					t.Errorf("clocks %v, want one among the two collectors", n)
					return
				}
				owner := 0
				if n[1] == 1 {
					owner = 1
				}
				t.Logf("collector-%d, which runs the clock, stopped after iteration %d", owner, x.Status.CompletedIterations)
				stops[owner]()
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Error("iteration 2 not completed within 30 s")
	}()
	return func() { <-done }
}

// TestIdleProxyIsNoLoss: of two routers' proxies, one gets every request
// and the other none (a load balancer may do that): the idle one, which
// publishes nothing after the first flush of its route (and flushes
// faster, so that its first batch is stored before the busy one's first),
// is not taken for one that stopped without its last flush.
func TestIdleProxyIsNoLoss(t *testing.T) {
	t.Parallel()
	proxiesRun(t, "proxy-idle", 2, idleFirst)
}

// proxiesMode is how proxiesRun spreads the requests.
type proxiesMode int

const (
	split          proxiesMode = iota // request i to proxy i mod n
	stopSecond                        // split until the second one stops, 1.5 s in
	idleFirst                         // every request to the second
	cutSecond                         // split until the second one is cut off from NATS, 1.5 s in
	collectorStops                    // split, two collectors, the clock's stopped after iteration 2
)

// proxiesRun runs the experiment name through n routers' proxies, sending
// perIteration requests in each iteration (request i to proxy i mod n, as
// mode says), and checks the snapshots' cumulative request counts of
// every iteration: perIteration × k exactly. It returns the counts by
// role.
func proxiesRun(t *testing.T, name string, n int, mode proxiesMode) map[string][]float64 {
	t.Helper()
	const perIteration = 30
	iterations := 3
	if mode == cutSecond {
		iterations = 6 // the cut-off router's lease lapses 3 s after the cut
	}
	run := []string{judge.Name, collector.Name}
	if mode == collectorStops {
		run = run[:1] // the test's own two
		iterations = 5
	}
	e := startStack(t, stack.Config{
		Run:      run,
		Services: []service.Config{&collector.Config{Grace: 600 * time.Millisecond}},
	})
	if mode == collectorStops {
		stopOwner := startCollectors(t, e)
		defer stopOwner()
	}
	var urls []string
	var stops []func()
	var conns []*nats.Conn
	for i := range n {
		nc, err := bus.Connect(bus.ConnConfig{URL: e.st.URL, Name: fmt.Sprintf("router-%d", i), InboxPrefix: bus.InboxPrefix(bus.RoleRouter)}, logger(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		conns = append(conns, nc)
		r, err := router.New(router.Config{
			Instance: fmt.Sprintf("router-%d", i),
			Proxy:    proxy.Config{Addr: testenv.FreeAddr(t), FlushInterval: time.Duration(200+100*i) * time.Millisecond},
			Settings: mirroring.Settings{InitTimeout: 5 * time.Second, InitInterval: 100 * time.Millisecond,
				DefaultLiveURL: e.st.LiveURL, DefaultDarkURL: e.st.DarkURL},
		}, nc, logger(t))
		if err != nil {
			t.Fatal(err)
		}
		urls = append(urls, r.URL())
		stops = append(stops, testenv.Run(t, r))
	}

	d := strings.Replace(string(doc(name)), "iterationsPerLoop: 7", fmt.Sprintf("iterationsPerLoop: %d", iterations), 1)
	d = strings.Replace(d, "rate: 25", "rate: 0", 1) // the test sends the traffic
	d += "  mirroring:\n    percent: 100\n"
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := e.client.Create(ctx, []byte(d)); err != nil {
		t.Fatalf("create: %v", err)
	}
	ref := bus.Ref{Namespace: "default", Name: name}
	begin := awaitStart(ctx, t, e.client, ref)

	// perIteration requests in the middle 60 % of each iteration, 20 ms
	// apart: none ends anywhere near a window's edge, even on a loaded
	// machine, so every count is exact.
	var wg, toSecond, stopping sync.WaitGroup
	errs := make(chan error, perIteration*iterations)
	sent := make([]int, n)
	stopAt := begin.Add(1500 * time.Millisecond)
	stopped := false
	for i := range perIteration * iterations {
		k, j := i/perIteration, i%perIteration
		due := begin.Add(time.Duration(k)*time.Second + 200*time.Millisecond + time.Duration(j)*600*time.Millisecond/perIteration)
		if (mode == stopSecond || mode == cutSecond) && !stopped && !due.Before(stopAt) {
			// Once every request sent to it has been answered; its copies
			// and its last flush are the stop's to wait for. Meanwhile
			// the traffic goes on through the first.
			stopped = true
			stopping.Go(func() {
				toSecond.Wait()
				if mode == cutSecond {
					// What it observed since its last flush can no
					// longer be published, and its lease lapses.
					conns[1].Close()
				}
				stops[1]()
			})
		}
		time.Sleep(time.Until(due))
		to := i % n
		switch {
		case stopped:
			to = 0
		case mode == idleFirst:
			to = 1
		}
		sent[to]++
		if to == 1 {
			toSecond.Add(1)
		}
		wg.Go(func() {
			errs <- get(urls[to], "customdomain.com")
			if to == 1 {
				toSecond.Done()
			}
		})
	}
	stopping.Wait()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}

	for {
		x, err := e.client.Get(ctx, ref)
		if err != nil {
			t.Fatalf("get: %v", err)
		}
		if x.Status.Terminal() {
			if x.Status.Failed() || x.Status.CompletedIterations != int32(iterations) {
				t.Fatalf("experiment ended after %d iterations: %s", x.Status.CompletedIterations, x.Status.Message)
			}
			switch {
			case mode == cutSecond:
				if x.Status.Loss == nil || !slices.Equal(x.Status.Loss.Stopped, []string{"router-1"}) {
					t.Errorf("status reports loss %+v, want router-1 stopped", x.Status.Loss)
				}
			case x.Status.Loss != nil:
				t.Errorf("status reports observations lost: %+v", x.Status.Loss)
			}
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	counts := requestCounts(t, e.events(name, bus.EventMetrics), func(s *bus.Snapshot) {
		if s.Loss != nil && mode != cutSecond {
			t.Errorf("%s iteration %d: observations reported lost: %+v", s.Role, s.Iteration, s.Loss)
		}
		if s.Role == bus.RoleDark && s.Mirror != nil && len(s.Mirror.Dropped) > 0 {
			t.Errorf("dark iteration %d: copies dropped %v", s.Iteration, s.Mirror.Dropped)
		}
	})
	t.Logf("%d proxies, requests sent to each %v; cumulative request-count by iteration: live %v, dark %v", n, sent, counts[bus.RoleLive], counts[bus.RoleDark])
	its := e.events(name, bus.EventIteration)
	for i, ev := range its {
		if ev.Iteration == nil || ev.Iteration.Number != int32(i+1) {
			t.Errorf("iteration event %d: %+v, want number %d", i, ev.Iteration, i+1)
		}
	}
	if len(its) != iterations {
		t.Errorf("%d iteration events, want %d (one per iteration)", len(its), iterations)
	}
	if routing := e.events(name, bus.EventRouting); len(routing) != 1 {
		t.Errorf("%d routing events, want 1 whatever the number of routers", len(routing))
	}
	if mode == cutSecond {
		// Counted up to the cut-off router's last flush, or less: what
		// is gone is reported, not made up.
		for _, role := range []string{bus.RoleLive, bus.RoleDark} {
			if got := counts[role][iterations-1]; got > float64(perIteration*iterations) || got < float64(perIteration*iterations-sent[1]) {
				t.Errorf("%s: %v requests counted of %d sent, %d of them to the cut-off router", role, got, perIteration*iterations, sent[1])
			}
		}
		return counts
	}
	for _, role := range []string{bus.RoleLive, bus.RoleDark} {
		if len(counts[role]) != iterations {
			t.Fatalf("%s: %d snapshots, want %d", role, len(counts[role]), iterations)
		}
		for k, got := range counts[role] {
			if want := float64(perIteration * (k + 1)); got != want {
				t.Errorf("%s iteration %d: request-count %v, want %v", role, k+1, got, want)
			}
		}
	}
	return counts
}
