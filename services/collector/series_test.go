package collector

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

// TestBusSourceFindsLostBatches: with a real nats-server, the bus source
// reports what the routers' numbering shows lost — nothing for a router that
// ended its series with its Final batch, a gap for a batch never published,
// and a router whose series stopped without its Final batch while a later
// series (its restart) went on — and nothing for batches without a series.
func TestBusSourceFindsLostBatches(t *testing.T) {
	t.Parallel()
	e, exp, start := newRunning(t, "lost", 0, 1, 3)
	uid := exp.Metadata.UID
	w, err := (&BusSource{Stream: e.Obs}).Open(t.Context(), exp)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	batch := func(router, series string, seq uint64, final bool, at time.Duration) {
		b := observed(uid, bus.RoleLive, start.Add(at), []float64{5}, 0)
		b.Router, b.Series, b.Seq, b.Final = router, series, seq, final
		e.publishObs(t, exp, b)
	}
	measure := func(k int) *experiment.ObservationLoss {
		t.Helper()
		m, err := w.Measure(t.Context(), bus.RoleLive, start.Add(time.Duration(k)*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		return m.Loss
	}

	// A clean router: 1, 2, 3 (final); an old one without numbering.
	batch("clean", "s-clean", 1, false, 100*time.Millisecond)
	batch("clean", "s-clean", 2, false, 200*time.Millisecond)
	batch("clean", "s-clean", 3, true, 300*time.Millisecond)
	batch("old", "", 7, false, 400*time.Millisecond)
	if l := measure(1); l != nil {
		t.Fatalf("iteration 1: loss %+v, want none", l)
	}

	// r1 publishes 1, 2 and 4 (3 was dropped), then dies; its restart r1
	// starts a new series.
	batch("r1", "s-a", 1, false, 1100*time.Millisecond)
	batch("r1", "s-a", 2, false, 1200*time.Millisecond)
	batch("r1", "s-a", 4, false, 1300*time.Millisecond)
	if l := measure(2); l == nil || l.Batches != 1 || len(l.Stopped) != 0 {
		t.Fatalf("iteration 2: loss %+v, want 1 batch missing and no router stopped yet", l)
	}
	batch("r1", "s-b", 1, false, 2100*time.Millisecond)
	l := measure(3)
	if l == nil || l.Batches != 1 || !slices.Equal(l.Stopped, []string{"r1"}) {
		t.Fatalf("iteration 3: loss %+v, want 1 batch missing and router r1 stopped", l)
	}
	if s := l.String(); s == "" {
		t.Error("a loss that says nothing")
	}
}

// fakeLeases are the routers' leases a test sets (absent: never seen).
type fakeLeases struct {
	mu    sync.Mutex
	state map[string]LeaseState
}

func (f *fakeLeases) Lease(instance string) LeaseState {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.state[instance]
}

func (f *fakeLeases) set(instance string, st LeaseState) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.state[instance] = st
}

// TestBusSourceLeasesTellIdleFromStopped: routers side by side, with
// leases. One that published its first batch only (no traffic since) while
// another went on is alive, not stopped; it is stopped once its lease is
// gone, or stale (heartbeats missed) with a later series of another router
// gone on (killed, restarted under another name). A router restarted under
// its name (a new series of the same router) stopped, lease or not. A
// router without a lease is judged by the later series of any router, as
// before leases.
func TestBusSourceLeasesTellIdleFromStopped(t *testing.T) {
	t.Parallel()
	e, exp, start := newRunning(t, "leases", 0, 1, 5)
	uid := exp.Metadata.UID
	leases := &fakeLeases{state: map[string]LeaseState{"idle": LeaseLive, "busy": LeaseLive, "same": LeaseLive, "other": LeaseLive, "killed": LeaseLive}}
	w, err := (&BusSource{Stream: e.Obs, Routers: leases}).Open(t.Context(), exp)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	batch := func(router, series string, seq uint64, at time.Duration) {
		b := observed(uid, bus.RoleLive, start.Add(at), []float64{5}, 0)
		b.Router, b.Series, b.Seq = router, series, seq
		e.publishObs(t, exp, b)
	}
	measure := func(k int) []string {
		t.Helper()
		m, err := w.Measure(t.Context(), bus.RoleLive, start.Add(time.Duration(k)*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if m.Loss == nil {
			return nil
		}
		return m.Loss.Stopped
	}
	batch("idle", "s-idle", 1, 100*time.Millisecond)
	batch("busy", "s-busy", 1, 200*time.Millisecond)
	batch("busy", "s-busy", 2, 300*time.Millisecond)
	if got := measure(1); got != nil {
		t.Fatalf("iteration 1: stopped %v, want none: the idle router holds its lease", got)
	}
	batch("same", "s-same-1", 1, 1100*time.Millisecond)
	batch("same", "s-same-2", 1, 1200*time.Millisecond)
	if got := measure(2); !slices.Equal(got, []string{"same"}) {
		t.Fatalf("iteration 2: stopped %v, want the router restarted under its name", got)
	}
	leases.set("idle", LeaseGone)
	if got := measure(3); !slices.Equal(got, []string{"idle", "same"}) {
		t.Fatalf("iteration 3: stopped %v, want the idle router too once its lease is gone", got)
	}
	batch("nolease", "s-old", 1, 3100*time.Millisecond)
	batch("other", "s-other", 1, 3200*time.Millisecond)
	if got := measure(4); !slices.Equal(got, []string{"idle", "nolease", "same"}) {
		t.Fatalf("iteration 4: stopped %v, want the router without a lease, whose series another one's followed", got)
	}
	// Killed: its heartbeats stop, and its restart under another name
	// starts a series before its lease has lapsed.
	batch("killed", "s-killed", 1, 4100*time.Millisecond)
	batch("restarted", "s-restarted", 1, 4200*time.Millisecond)
	if got := measure(5); slices.Contains(got, "killed") {
		t.Fatalf("iteration 5: stopped %v, want the killed router not yet: its lease is live", got)
	}
	leases.set("killed", LeaseStale)
	if got := measure(5); !slices.Equal(got, []string{"idle", "killed", "nolease", "same"}) {
		t.Fatalf("iteration 5: stopped %v, want the killed router, its lease stale and a later series gone on", got)
	}
}
