package judge

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// clock is a test clock that only moves when told to.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func failed(x *experiment.Experiment) bool { return x.Status.Terminal() && x.Status.Failed() }

func TestWatchdogFailsStuckInitializing(t *testing.T) {
	e := newEnv(t)
	clk := newClock()
	s, _ := e.runJudge(Config{Now: clk.Now, WatchdogInterval: 20 * time.Millisecond})
	x := e.create(e.doc("no-router", 3))
	if !x.Status.InitTime.Equal(clk.Now()) {
		t.Fatalf("initTime %v, want the judge's clock %v", x.Status.InitTime, clk.Now())
	}

	// Just within the timeout: a pass of the watchdog leaves it alone.
	clk.Add(2*time.Minute - time.Second)
	s.failStuck(context.Background())
	if got := e.get("default", "no-router"); got.Status.Stage != experiment.StageInitializing {
		t.Fatalf("failed before InitTimeout: %+v", got.Status)
	}

	clk.Add(2 * time.Second)
	got := e.waitStatus("no-router", "failed by the watchdog", failed)
	want := "HandlerFailed: no router set up mirroring within 2m0s (is the router running?)"
	if got.Status.Message != want {
		t.Errorf("message %q, want %q", got.Status.Message, want)
	}
	if c := got.Status.Condition(experiment.ConditionFailed); c.Reason != experiment.ReasonHandlerFailed || !got.Status.EndTime.Equal(clk.Now()) {
		t.Errorf("Failed condition %+v, endTime %v", c, got.Status.EndTime)
	}
	evs := e.waitEvents("no-router", bus.EventFailed, 1)
	if evs[0].Message != want || evs[0].Experiment == nil {
		t.Errorf("failed event %+v", evs[0])
	}
	// A router answering late changes nothing; the watchdog fails it once.
	e.routing(x, true, "")
	e.waitConsumed()
	s.failStuck(context.Background())
	if got := e.get("default", "no-router"); got.Status.Stage != experiment.StageCompleted || !got.Status.Failed() {
		t.Errorf("a late routing event revived a failed experiment: %+v", got.Status)
	}
	if n := len(eventsOf(e.events("no-router"), bus.EventFailed)); n != 1 {
		t.Errorf("%d failed events, want 1", n)
	}
}

func TestWatchdogFailsMissingMetrics(t *testing.T) {
	e := newEnv(t)
	clk := newClock()
	s, _ := e.runJudge(Config{Now: clk.Now, WatchdogInterval: 20 * time.Millisecond, MetricsTimeout: 2 * time.Second})
	x := e.create(e.doc("no-collector", 5))
	start := clk.Now()
	e.publish(x, bus.EventRouting, bus.MsgID(x.Metadata.UID, bus.EventRouting), func(ev *bus.Event) {
		ev.Time = start
		ev.Routing = &bus.Routing{Ready: true}
	})
	e.waitStatus("no-collector", "Running", running)
	e.snapshot(x, bus.RoleDark, 1, good(1))
	e.waitStatus("no-collector", "iteration 1", completed(1))

	// Iteration 2 is due at start+2s; with 1 s intervals the wait is
	// max(3 intervals, MetricsTimeout 2s) = 3s, so it fails after start+5s.
	clk.Add(5 * time.Second)
	s.failStuck(context.Background())
	if got := e.get("default", "no-collector"); got.Status.Stage != experiment.StageRunning {
		t.Fatalf("failed before its time: %+v", got.Status)
	}
	clk.Add(time.Second)
	got := e.waitStatus("no-collector", "failed by the watchdog", failed)
	want := "AnalyticsServiceError: no metrics for iteration 2 within 3s of its due time 2026-03-01T12:00:02Z (is the collector running?)"
	if got.Status.Message != want || got.Status.CompletedIterations != 1 {
		t.Errorf("status %q after %d iterations, want %q", got.Status.Message, got.Status.CompletedIterations, want)
	}
	e.waitEvents("no-collector", bus.EventFailed, 1)
	// A snapshot arriving after the failure is not judged.
	e.snapshot(x, bus.RoleDark, 2, good(2))
	e.waitConsumed()
	if got := e.get("default", "no-collector"); got.Status.CompletedIterations != 1 || len(eventsOf(e.events("no-collector"), bus.EventIteration)) != 1 {
		t.Errorf("a failed experiment went on: %+v", got.Status)
	}
}

// TestWatchdogWaitsForUnhandledEvents: while a poison event holds the judge's
// one-at-a-time consumer of its partition, the snapshots of another
// experiment on that partition wait in the queue.
// The watchdog must not fail that experiment as if no collector ran: the
// judge is behind, not the collector. Once the poison event is dropped, the
// experiment completes.
func TestWatchdogWaitsForUnhandledEvents(t *testing.T) {
	e := newEnv(t)
	// The poison event is retried for 0.5 + 1 + 2 + 4 = 7.5 s; the watchdog
	// would fail an experiment 3 s after an iteration's end without metrics.
	s, _ := e.runJudge(Config{MaxDeliveries: 5, WatchdogInterval: 100 * time.Millisecond, MetricsTimeout: time.Millisecond})
	x := e.create(e.doc("behind", 1))
	e.routing(x, true, "")
	e.waitStatus("behind", "Running", running)

	name := sharingPartition("poison", "behind")
	if _, err := e.store.KV.Put(context.Background(), bus.Key("default", name), []byte{0xc1}); err != nil {
		t.Fatal(err)
	}
	poison := e.doc(name, 1)
	poison.Metadata.Namespace, poison.Metadata.UID = "default", "uid-of-poison"
	e.routing(poison, true, "")
	e.snapshot(x, bus.RoleLive, 1, good(1))
	e.snapshot(x, bus.RoleDark, 1, good(1))

	got := e.waitStatusWithin("behind", "Completed", 15*time.Second, func(x *experiment.Experiment) bool { return x.Status.Terminal() })
	if got.Status.Failed() || got.Status.CompletedIterations != 1 {
		t.Errorf("status %s, %d iterations: want completed on its metrics, not failed by the watchdog", got.Status.Message, got.Status.CompletedIterations)
	}
	if n := testutil.ToFloat64(s.prom.eventsDropped); n != 1 {
		t.Errorf("events dropped %v, want the poison event", n)
	}
}
