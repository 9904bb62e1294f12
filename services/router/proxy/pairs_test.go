package proxy

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/internal/testenv"
	"github.com/darklaunch/darklaunch/services/router/routertest"
	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
	"github.com/darklaunch/darklaunch/shared/stats"
)

// recordedPairs waits until no request or copy of rt is in flight, then
// takes every pair rt's dark recorder holds, summed.
func recordedPairs(t *testing.T, rt *route) bus.Pairs {
	t.Helper()
	testenv.Until(t, 10*time.Second, "requests and copies in flight to end", func() bool { return rt.active.Load() == 0 })
	var sum bus.Pairs
	for _, s := range rt.rec[roleDark].Flush(time.Time{}) {
		sum.Add(s.Pairs)
	}
	return sum
}

// sendAll sends n GETs of path through base, workers at a time.
func sendAll(t *testing.T, base, host, path string, n, workers int) {
	t.Helper()
	var wg sync.WaitGroup
	jobs := make(chan struct{})
	for range workers {
		wg.Go(func() {
			for range jobs {
				routertest.Send(t, base, host, "GET", path, nil)
			}
		})
	}
	for range n {
		jobs <- struct{}{}
	}
	close(jobs)
	wg.Wait()
}

// TestProxyPairsSlowerDark: with every request mirrored to a dark version
// 30 ms slower than live, every request is a pair, each side's latency is
// what it took, and the paired ratio of means and the paired difference
// are shown above 1 and above 0 on 150 requests.
func TestProxyPairsSlowerDark(t *testing.T) {
	live := routertest.NewVersion(t, func(w http.ResponseWriter, r *http.Request) { time.Sleep(5 * time.Millisecond) })
	dark := routertest.NewVersion(t, func(w http.ResponseWriter, r *http.Request) { time.Sleep(35 * time.Millisecond) })
	const n = 150
	cfg := Config{MirrorTimeout: 250 * time.Millisecond}
	p, base, _ := routedProxy(t, cfg, live, dark, "slower", "customdomain.com", 100)
	sendAll(t, base, "customdomain.com", "/", n, 8)
	got := recordedPairs(t, p.table.Load().byKey["default/slower"])

	if got.N != n || got.DarkFailed+got.LiveFailed+got.BothFailed != 0 || got.CapMs != 250 {
		t.Fatalf("pairs %+v: want %d, none failed, capped at 250 ms", got, n)
	}
	meanL, meanD := got.SumLive/n, got.SumDark/n
	if meanL < 5 || meanL > 30 || meanD < 35 || meanD > 80 || meanD-meanL < 25 {
		t.Errorf("mean live %.1f ms, dark %.1f ms: want about 5 and 35", meanL, meanD)
	}
	rg := stats.Range{Min: 0, Max: got.CapMs}
	sp := stats.Pairs{N: got.N, SumLive: got.SumLive, SumDark: got.SumDark, SumLive2: got.SumLive2, SumDark2: got.SumDark2, SumCross: got.SumCross}
	ratio, err := stats.PairedRatio(sp, rg, 0.95)
	if err != nil {
		t.Fatal(err)
	}
	diff, err := stats.PairedDifference(sp, rg, 0.95)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("dark ÷ live %v, dark − live %v ms", ratio, diff)
	if ratio.Estimate < 1.5 || ratio.Lo <= 1 {
		t.Errorf("ratio %v: want well above 1, and shown above 1", ratio)
	}
	if diff.Lo <= 0 || !diff.Contains(meanD-meanL) {
		t.Errorf("difference %v: want shown above 0, around %.1f", diff, meanD-meanL)
	}
}

// TestProxyPairsFailures: a pair tells who failed: dark alone (a 500 where
// live answered 200), live alone, both; a copy that times out is a dark
// failure at the cap. A copy not sent (dropped) is no pair, and neither is
// a request whose client went away before live answered.
func TestProxyPairsFailures(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	live := routertest.NewVersion(t, func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasPrefix(r.URL.Path, "/live-fails"), strings.HasPrefix(r.URL.Path, "/both-fail"):
			w.WriteHeader(http.StatusServiceUnavailable)
		case strings.HasPrefix(r.URL.Path, "/client-leaves"):
			<-r.Context().Done()
		}
	})
	dark := routertest.NewVersion(t, func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasPrefix(r.URL.Path, "/dark-fails"), strings.HasPrefix(r.URL.Path, "/both-fail"):
			w.WriteHeader(http.StatusInternalServerError)
		case strings.HasPrefix(r.URL.Path, "/hang"):
			select {
			case <-r.Context().Done():
			case <-release:
			}
		}
	})
	cfg := Config{MirrorTimeout: time.Second, MirrorInflight: 4}
	p, base, _ := routedProxy(t, cfg, live, dark, "failures", "customdomain.com", 100)
	rt := p.table.Load().byKey["default/failures"]
	host := "customdomain.com"
	// One at a time, each copy ended before the next request: on a busy
	// machine copies still in flight would take the 4 slots and the next
	// ones be dropped, which is not what this part is about.
	for _, path := range []struct {
		path string
		n    int
	}{{"/ok", 5}, {"/dark-fails", 4}, {"/live-fails", 3}, {"/both-fail", 2}} {
		for range path.n {
			sendAll(t, base, host, path.path, 1, 1)
			testenv.Until(t, 10*time.Second, "the copy to end", func() bool { return rt.active.Load() == 0 })
		}
	}
	if d := dropped(t, p, "default/failures", DropInflight); d != 0 {
		t.Fatalf("%v copies dropped for inflight before the hung ones", d)
	}

	// A client that gives up before live answers: its copy is answered,
	// but there is no live answer to pair it with.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/client-leaves", nil)
	req.Host = host
	if resp, err := routertest.Client.Do(req); err == nil {
		resp.Body.Close()
		t.Errorf("/client-leaves answered %d; want the client to give up", resp.StatusCode)
	}
	cancel()

	// Four copies hang until the timeout (dark failures at the cap); the
	// next two find no free slot and are dropped: no pairs.
	sendAll(t, base, host, "/hang", 6, 6)
	got := recordedPairs(t, rt)
	if d := dropped(t, p, "default/failures", DropInflight); d < 2 {
		t.Errorf("%v copies dropped for inflight, want at least 2", d)
	}
	hung := 6 - int64(dropped(t, p, "default/failures", DropInflight))
	want := struct{ n, dark, live, both int64 }{5 + 4 + 3 + 2 + hung, 4 + hung, 3, 2}
	if got.N != want.n || got.DarkFailed != want.dark || got.LiveFailed != want.live || got.BothFailed != want.both {
		t.Errorf("pairs n %d, dark failed %d, live failed %d, both %d; want %+v", got.N, got.DarkFailed, got.LiveFailed, got.BothFailed, want)
	}
	// The hung copies count the cap each: 1 s.
	if atCap := got.SumDark - float64(hung)*1000; atCap < 0 || atCap > float64(want.n-hung)*1000 {
		t.Errorf("dark sum %.1f ms: want %d copies at the 1 s cap", got.SumDark, hung)
	}
	if err := got.Validate(); err != nil {
		t.Error(err)
	}
}

// TestProxyPublishesPairs: the pairs travel in the dark batches on a real
// NATS, live's batches carry none, and the last batch of a teardown has
// the last pairs.
func TestProxyPublishesPairs(t *testing.T) {
	infra := testenv.Infra(t, testenv.StartNATS(t).Conn(t))
	live := routertest.NewVersion(t, nil)
	dark := routertest.NewVersion(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fail" {
			w.WriteHeader(http.StatusInternalServerError)
		}
	})
	p, base := newTestProxy(t, Config{FlushInterval: 50 * time.Millisecond, Instance: "paired-router", MirrorTimeout: time.Second}, infra.JS)
	fctx, stop := context.WithCancel(context.Background())
	defer stop()
	go p.runFlusher(fctx)
	e := routertest.Experiment("pairs", "customdomain.com", live.URL, dark.URL, 50, experiment.StageRunning)
	setup(t, p, e)
	obs := newObsReader(t, infra.JS, "default", "pairs")
	for i := range 60 {
		path := "/ok"
		if i%6 == 1 {
			path = "/fail" // every one of them copied (request n = i+1 even)
		}
		routertest.Send(t, base, "customdomain.com", "GET", path, nil)
	}
	d := obs.aggs[bus.RoleDark]
	obs.readUntil(t, 10*time.Second, func() bool { return d.Pairs.N == 30 })
	if d.Pairs.DarkFailed != 10 || d.Pairs.LiveFailed+d.Pairs.BothFailed != 0 || d.Pairs.CapMs != 1000 || d.Count != 30 {
		t.Errorf("dark pairs %+v of %d copies: want 30 pairs, 10 dark failures, capped at 1000 ms", d.Pairs, d.Count)
	}
	if l := obs.aggs[bus.RoleLive]; l.Pairs != (bus.Pairs{}) {
		t.Errorf("live batches carry pairs: %+v", l.Pairs)
	}
	stop()
	routertest.Send(t, base, "customdomain.com", "GET", "/ok", nil)
	routertest.Send(t, base, "customdomain.com", "GET", "/ok", nil)
	if err := p.Teardown(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	obs.readUntil(t, 5*time.Second, func() bool { return d.Pairs.N == 31 })
}
