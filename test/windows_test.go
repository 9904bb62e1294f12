package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/internal/stack"
	"github.com/darklaunch/darklaunch/services/collector"
	"github.com/darklaunch/darklaunch/services/judge"
	"github.com/darklaunch/darklaunch/services/router"
	"github.com/darklaunch/darklaunch/services/router/proxy"
	"github.com/darklaunch/darklaunch/services/router/routertest"
	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
	"github.com/darklaunch/darklaunch/shared/service"
)

// TestWindowsAreExact: at a fixed rate, iteration k counts rate × interval ×
// k requests ± 1, live and the mirrored share of dark, whatever the flush
// timing: with the router's default flush (1 s, slots of 1 s) and with one
// of 300 ms (slots of 250 ms), and the collector's default grace (1.5 s).
// The real router's proxy, judge and collector on a real nats-server, real
// live and dark servers; the test is the traffic: 30 req/s for the 3
// iterations of 1 s, each request due in the middle of its 1/30 s so that
// none ends near a window's edge. (Before slots, iteration 1 counted 59 and
// every later count stayed about 29 high: batches were cut by flush, not by
// when their requests ended.)
func TestWindowsAreExact(t *testing.T) {
	t.Parallel()
	for name, flush := range map[string]time.Duration{"default flush": 0, "flush 300ms": 300 * time.Millisecond} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			windowsAreExact(t, flush)
		})
	}
}

func windowsAreExact(t *testing.T, flush time.Duration) {
	const (
		rate       = 30
		iterations = 3
		percent    = 40
	)
	live := routertest.NewVersion(t, nil)
	dark := routertest.NewVersion(t, nil)
	e := startStack(t, stack.Config{
		LiveURL:  live.URL,
		DarkURL:  dark.URL,
		Run:      []string{judge.Name, router.Name, collector.Name},
		Services: []service.Config{&router.Config{Proxy: proxy.Config{FlushInterval: flush}}},
	})
	client, st := e.client, e.st

	name := "windows"
	d := strings.Replace(string(doc(name)), "iterationsPerLoop: 7", fmt.Sprintf("iterationsPerLoop: %d", iterations), 1)
	d = strings.Replace(d, "rate: 25", "rate: 0", 1) // the test sends the traffic
	d += fmt.Sprintf("  mirroring:\n    percent: %d\n", percent)
	cctx, ccancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer ccancel()
	if _, err := client.Create(cctx, []byte(d)); err != nil {
		t.Fatalf("create: %v", err)
	}
	ref := bus.Ref{Namespace: "default", Name: name}
	begin := awaitStart(cctx, t, client, ref)

	// Request i is due at begin + (i + ½)/rate; one due while the test was
	// still waiting for the start goes at once, in the same iteration.
	var wg sync.WaitGroup
	errs := make(chan error, rate*iterations)
	for i := range rate * iterations {
		due := begin.Add(time.Duration((float64(i) + 0.5) / rate * float64(time.Second)))
		time.Sleep(time.Until(due))
		wg.Go(func() { errs <- get(st.ProxyURL, "customdomain.com") })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}

	for {
		x, err := client.Get(cctx, ref)
		if err != nil {
			t.Fatalf("get: %v", err)
		}
		if x.Status.Terminal() {
			if x.Status.Failed() || x.Status.CompletedIterations != iterations {
				t.Fatalf("experiment ended after %d iterations: %s", x.Status.CompletedIterations, x.Status.Message)
			}
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	counts := requestCounts(t, e.events(name, bus.EventMetrics), nil)
	t.Logf("cumulative request-count by iteration: live %v, dark %v", counts[bus.RoleLive], counts[bus.RoleDark])
	for role, share := range map[string]float64{bus.RoleLive: 1, bus.RoleDark: percent / 100.0} {
		if len(counts[role]) != iterations {
			t.Fatalf("%s: %d snapshots, want %d", role, len(counts[role]), iterations)
		}
		for k, got := range counts[role] {
			want := share * rate * float64(k+1)
			if got < want-1 || got > want+1 {
				t.Errorf("%s iteration %d: request-count %v, want %v ± 1", role, k+1, got, want)
			}
		}
	}
}

func get(base, host string) error {
	req, err := http.NewRequest("GET", base+"/", nil)
	if err != nil {
		return err
	}
	req.Host = host
	resp, err := routertest.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %d", base, resp.StatusCode)
	}
	return nil
}

// awaitStart waits until the experiment ref runs and returns its
// status.startTime.
func awaitStart(ctx context.Context, t *testing.T, client *bus.Client, ref bus.Ref) time.Time {
	t.Helper()
	for {
		x, err := client.Get(ctx, ref)
		if err != nil {
			t.Fatalf("get: %v", err)
		}
		switch {
		case x.Status.Terminal():
			t.Fatalf("experiment ended before it ran: %s", x.Status.Message)
		case x.Status.StartTime != nil:
			return *x.Status.StartTime
		}
		time.Sleep(5 * time.Millisecond) // polling the API: the state has no event to wait on here
	}
}

// requestCounts is each role's cumulative request-count by iteration, from
// the experiment's metrics events, which must come in order, one per role
// and iteration; check, if not nil, looks at each snapshot too.
func requestCounts(t *testing.T, metrics []*bus.Event, check func(*bus.Snapshot)) map[string][]float64 {
	t.Helper()
	counts := map[string][]float64{}
	for _, ev := range metrics {
		s := ev.Snapshot
		v := s.Values[experiment.MetricRequestCount]
		if v == nil || int(s.Iteration) != len(counts[s.Role])+1 {
			t.Fatalf("snapshot %+v: want iteration %d with a request-count", s, len(counts[s.Role])+1)
		}
		if check != nil {
			check(s)
		}
		counts[s.Role] = append(counts[s.Role], *v)
	}
	return counts
}
