package judge

import (
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/darklaunch/darklaunch/internal/testenv"
	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

// TestTwoJudgesOneKilledMidRun: two judges share 20 experiments running at
// once, each experiment's events handled in order and different
// experiments' in parallel, by both judges. One judge is killed mid-run
// (its connection closed under it, with events in hand: no ack, no hand
// back): the other takes its partitions, and every experiment completes
// with its verdict and every iteration judged once.
func TestTwoJudgesOneKilledMidRun(t *testing.T) {
	e := newEnv(t)
	const n, iterations = 20, 6
	level := slog.LevelError
	if testing.Verbose() {
		level = slog.LevelInfo
	}
	var judges [2]*Service
	var stops [2]func()
	conns := [2]interface{ Close() }{}
	for i := range judges {
		nc := e.srv.Conn(t)
		s, err := New(Config{Instance: fmt.Sprintf("judge-%d", i)}, nc, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})))
		if err != nil {
			t.Fatal(err)
		}
		judges[i], stops[i], conns[i] = s, testenv.Run(t, s), nc
	}
	for _, s := range judges {
		e.waitFor("both judges ready", readyIs(s, true))
	}

	xs := make([]*experiment.Experiment, n)
	for i := range xs {
		xs[i] = e.create(e.doc(fmt.Sprintf("shared-%02d", i), iterations))
		e.routing(xs[i], true, "")
	}
	parts := map[int]bool{}
	for _, x := range xs {
		e.waitStatus(x.Metadata.Name, "Running", running)
		parts[e.partitionOf(x.Metadata.Name)] = true
	}
	killed := false
	for k := int32(1); k <= iterations; k++ {
		for _, x := range xs {
			e.snapshot(x, bus.RoleLive, k, good(k))
			e.snapshot(x, bus.RoleDark, k, good(k))
		}
		if k == iterations/2 {
			// The judges compete for every partition's events; the one
			// that has judged more is killed, with events in hand.
			e.waitFor("iterations judged", func() (bool, string) {
				a, b := testutil.ToFloat64(judges[0].prom.iterations), testutil.ToFloat64(judges[1].prom.iterations)
				return a+b > 0, fmt.Sprintf("%v and %v", a, b)
			})
			if testutil.ToFloat64(judges[1].prom.iterations) > testutil.ToFloat64(judges[0].prom.iterations) {
				judges[0], judges[1] = judges[1], judges[0]
				stops[0], stops[1] = stops[1], stops[0]
				conns[0], conns[1] = conns[1], conns[0]
			}
			conns[0].Close()
			stops[0]()
			killed = true
		}
	}
	if !killed {
		t.Fatal("no judge killed")
	}
	for _, x := range xs {
		got := e.waitStatusWithin(x.Metadata.Name, "Completed", 30*time.Second, func(x *experiment.Experiment) bool { return x.Status.Terminal() })
		if !got.Passed() || got.Status.CompletedIterations != iterations {
			t.Errorf("%s: %s after %d iterations (%s), want passed after %d", x.Metadata.Name, got.Status.Stage, got.Status.CompletedIterations, got.Status.Message, iterations)
		}
		e.waitEvents(x.Metadata.Name, bus.EventVerdict, 1) // published after the state is stored
		evs := e.events(x.Metadata.Name)
		its := eventsOf(evs, bus.EventIteration)
		for i, ev := range its {
			if ev.Iteration == nil || ev.Iteration.Number != int32(i+1) {
				t.Errorf("%s: iteration event %d: %+v, want iterations 1..%d once each, in order", x.Metadata.Name, i, ev.Iteration, iterations)
			}
		}
		if len(its) != iterations || len(eventsOf(evs, bus.EventVerdict)) != 1 {
			t.Errorf("%s: %d iteration events and %d verdicts, want %d and 1", x.Metadata.Name, len(its), len(eventsOf(evs, bus.EventVerdict)), iterations)
		}
	}
	a, b := testutil.ToFloat64(judges[0].prom.iterations), testutil.ToFloat64(judges[1].prom.iterations)
	t.Logf("%d experiments on %d partitions; iterations judged: %v by the judge killed, %v by the other", n, len(parts), a, b)
	// Each judge counts what it stored and published; an iteration the
	// killed judge stored but could not publish the other publishes, and
	// neither counts: at most one per partition in flight at the kill.
	if a == 0 || b == 0 {
		t.Errorf("iterations judged %v and %v: both judges were to be at work", a, b)
	}
	if a+b > n*iterations || a+b < n*iterations-bus.JudgePartitions {
		t.Errorf("%v + %v iterations judged, want %d less at most the %d in flight at the kill: each once", a, b, n*iterations, bus.JudgePartitions)
	}
}
