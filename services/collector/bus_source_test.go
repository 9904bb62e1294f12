package collector

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
	"github.com/darklaunch/darklaunch/shared/sketch"
)

// TestBusSourceContract: the bus source passes the source suite against a
// real nats-server.
func TestBusSourceContract(t *testing.T) {
	t.Parallel()
	testSource(t, &busHarness{e: newEnv(t)})
}

// busHarness serves requests as the router's proxy observes them: one
// observation batch a Serve, published on the experiment's subject.
type busHarness struct {
	e *env

	mu  sync.Mutex
	now time.Time // the proxy's clock: each batch starts after the last, each end after the batches before it
}

// busTolerance: counts and ratios are exact; a latency quantile is within
// the sketch's relative accuracy of the latency at DDSketch's rank
// ⌊q·(n−1)⌋ of the sorted latencies.
var busTolerance = tolerance{
	count: func(n float64) (float64, float64) { return n, n },
	quantile: func(q float64, lat []float64) (float64, float64) {
		sorted := slices.Sorted(slices.Values(lat))
		return sorted[int(q*float64(len(sorted)-1))], sketch.RelativeAccuracy
	},
}

func (h *busHarness) Source(*testing.T) Source { return &BusSource{Stream: h.e.Obs} }

func (h *busHarness) Experiment(_ *testing.T, name string, start time.Time) *experiment.Experiment {
	return running(name, start, 1, 10)
}

func (h *busHarness) Start(context.Context, *testing.T) time.Time { return h.tick() }

func (h *busHarness) Serve(t *testing.T, exp *experiment.Experiment, role string, latMs []float64, failed int) {
	h.e.publishObs(t, exp, observed(exp.Metadata.UID, role, h.tick(), latMs, failed))
}

// Measurable waits for nothing: the stream acknowledged every batch, and
// Measure reads everything stored before it measures.
func (h *busHarness) Measurable(context.Context, *testing.T, time.Time) time.Time { return h.tick() }

func (h *busHarness) Tolerance() tolerance { return busTolerance }

// tick advances the proxy's clock: now, or a millisecond after its last
// reading if the wall clock has not moved on.
func (h *busHarness) tick() time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := time.Now().UTC()
	if !now.After(h.now) {
		now = h.now.Add(time.Millisecond)
	}
	h.now = now
	return now
}

// TestBusSourceMeasure: what only the bus source does. On the experiment's
// subject it counts only the batches of its UID and roles that decode; a
// batch starting at an end counts from the next end on; mirror counts are
// the dark version's (zero, not absent, before any observation) and the
// live one has none; an end is never measured again after a later one.
func TestBusSourceMeasure(t *testing.T) {
	t.Parallel()
	e, exp, start := newRunning(t, "bus", 0, 1, 3)
	uid := exp.Metadata.UID
	at := func(d time.Duration) time.Time { return start.Add(d) }

	src := &BusSource{Stream: e.Obs}
	silent, err := src.Open(t.Context(), running("silent", start, 1, 1))
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	m, err := silent.Measure(t.Context(), bus.RoleDark, at(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if m.Mirror == nil || m.Mirror.Mirrored != 0 {
		t.Errorf("dark mirror stats without observations %+v, want zero counts", m.Mirror)
	}

	e.publishObs(t, exp, observed(uid, bus.RoleLive, at(100*time.Millisecond), []float64{10, 20, 30}, 1))
	dark := observed(uid, bus.RoleDark, at(200*time.Millisecond), []float64{100, 200}, 0)
	dark.Mirrored, dark.Dropped = 5, map[string]int64{"inflight": 1}
	e.publishObs(t, exp, dark)
	e.publishObs(t, exp, observed("older-experiment", bus.RoleLive, at(100*time.Millisecond), []float64{5000}, 1))
	e.publishObs(t, exp, observed(uid, "canary", at(100*time.Millisecond), []float64{5000}, 1))
	if err := e.NC.Publish(bus.ObsSubject("default", "bus", uid), []byte("not msgpack")); err != nil {
		t.Fatal(err)
	}
	e.publishObs(t, exp, observed(uid, bus.RoleLive, at(time.Second), []float64{40}, 0)) // starts at the end: next iteration

	w, err := src.Open(t.Context(), exp)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	m, err = w.Measure(t.Context(), bus.RoleLive, at(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	live := truth{lat: []float64{10, 20, 30}, errors: 1}
	live.check(t, busTolerance, "live (other UID, other role, garbage and the batch at the end excluded)", m.Values)
	if m.Mirror != nil {
		t.Errorf("live mirror stats %+v, want none", m.Mirror)
	}
	m, err = w.Measure(t.Context(), bus.RoleDark, at(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if m.Mirror == nil || m.Mirror.Mirrored != 5 || m.Mirror.Dropped["inflight"] != 1 {
		t.Errorf("dark mirror stats %+v, want 5 mirrored, 1 dropped (inflight)", m.Mirror)
	}

	m, err = w.Measure(t.Context(), bus.RoleLive, at(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	live.add([]float64{40}, 0)
	live.check(t, busTolerance, "live at the next end", m.Values)
	if _, err := w.Measure(t.Context(), bus.RoleLive, at(time.Second)); err == nil {
		t.Error("measuring backwards: want an error")
	}
}

// TestBusSourceNotCaughtUp: when the stored observations cannot be read in
// time, Measure says so instead of undercounting.
func TestBusSourceNotCaughtUp(t *testing.T) {
	t.Parallel()
	e, exp, _ := newRunning(t, "lag", 0, 1, 1)
	// A window with no consumer attached: a stored batch can never be read.
	// (Stopping a running consumer would race with its last delivery.)
	w := newBusWindow(e.Obs, exp, 200*time.Millisecond, slog.New(slog.DiscardHandler))
	defer w.Close()
	e.publishObs(t, exp, observed(exp.Metadata.UID, bus.RoleLive, time.Now(), []float64{1}, 0))
	_, err := w.Measure(t.Context(), bus.RoleLive, time.Now().Add(time.Second))
	if !errors.Is(err, ErrNotCaughtUp) {
		t.Errorf("err = %v, want ErrNotCaughtUp", err)
	}
}

// TestBusSourceCutsAtSlotEdges: each request counts in the window of the
// moment it ended, whatever batch carried it: a slot ending at an
// iteration's end is in that iteration, one starting there in the next. A
// batch of an older router counts by its flush period's start, as it did.
// A batch that arrives after its iteration was measured counts once, in the
// next measurement, which says how many requests came late.
func TestBusSourceCutsAtSlotEdges(t *testing.T) {
	t.Parallel()
	e, exp, start := newRunning(t, "edges", 0, 1, 3)
	uid := exp.Metadata.UID
	at := func(d time.Duration) time.Time { return start.Add(d) }
	rec := sketch.NewRecorder(sketch.Grid{Origin: start, Width: time.Second}, 0)
	publish := func() {
		for _, s := range rec.Flush(time.Time{}) {
			e.publishObs(t, exp, s.Batch(uid, bus.RoleLive, "test"))
		}
	}
	for _, end := range []time.Duration{0, time.Second - 1, time.Second, 1500 * time.Millisecond, 2*time.Second - 1} {
		rec.Observe(at(end), 10, false)
	}
	publish()
	e.publishObs(t, exp, legacy(uid, bus.RoleLive, at(900*time.Millisecond), []float64{10, 10}, 0))

	w, err := (&BusSource{Stream: e.Obs}).Open(t.Context(), exp)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	measure := func(k int, wantCount, wantLate int64) {
		t.Helper()
		m, err := w.Measure(t.Context(), bus.RoleLive, at(time.Duration(k)*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if got := val(t, m.Values, experiment.MetricRequestCount); got != float64(wantCount) || m.Late != wantLate {
			t.Errorf("iteration %d: request-count %v (%d late), want %d (%d late)", k, got, m.Late, wantCount, wantLate)
		}
	}
	measure(1, 2+2, 0) // slot 0 (ends at 0 and at 1s−1ns) and the older router's batch
	measure(2, 4+3, 0) // slot 1: ends at 1s, 1.5s and 2s−1ns

	rec.Observe(at(2*time.Second), 10, false) // slot 2
	for range 5 {
		rec.Observe(at(500*time.Millisecond), 10, false) // slot 0, published late
	}
	publish()
	measure(3, 7+1+5, 5)
	measure(3, 13, 0) // the late batch is counted once
}
