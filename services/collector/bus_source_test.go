package collector

import (
	"errors"
	"log/slog"
	"maps"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

func val(t *testing.T, values map[string]*float64, name string) float64 {
	t.Helper()
	v, ok := values[name]
	if !ok || v == nil {
		t.Fatalf("%s unavailable in %v", name, values)
	}
	return *v
}

func TestBusSourceMeasure(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	start := time.Now().UTC()
	exp := running("bus", start, 1, 3)
	uid := exp.Metadata.UID
	at := func(d time.Duration) time.Time { return start.Add(d) }

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

	src := &BusSource{Stream: e.Obs}
	w, err := src.Open(t.Context(), exp)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()

	m, err := w.Measure(t.Context(), bus.RoleLive, at(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	live, mirror := m.Values, m.Mirror
	if got := val(t, live, experiment.MetricRequestCount); got != 3 {
		t.Errorf("live request-count %v, want 3 (other UID, other role, garbage and the batch at the end excluded)", got)
	}
	if got := val(t, live, experiment.MetricMeanLatency); got != 20 {
		t.Errorf("live mean-latency %v, want 20", got)
	}
	if got := val(t, live, experiment.MetricErrorRate); got != 1.0/3 {
		t.Errorf("live error-rate %v, want 1/3", got)
	}
	if mirror != nil {
		t.Errorf("live mirror stats %+v, want none", mirror)
	}
	m, err = w.Measure(t.Context(), bus.RoleDark, at(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	mirror = m.Mirror
	if mirror == nil || mirror.Mirrored != 5 || mirror.Dropped["inflight"] != 1 {
		t.Errorf("dark mirror stats %+v, want 5 mirrored, 1 dropped (inflight)", mirror)
	}

	// Published just before measuring: Measure reads everything stored first.
	e.publishObs(t, exp, observed(uid, bus.RoleLive, at(1500*time.Millisecond), []float64{50}, 0))
	m, err = w.Measure(t.Context(), bus.RoleLive, at(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	live2 := m.Values
	if got := val(t, live2, experiment.MetricRequestCount); got != 5 {
		t.Errorf("cumulative live request-count %v, want 5", got)
	}
	if got := val(t, live2, experiment.MetricMeanLatency); got != 30 {
		t.Errorf("cumulative live mean-latency %v, want 30", got)
	}
	again, err := w.Measure(t.Context(), bus.RoleLive, at(2*time.Second))
	if err != nil || !equalValues(again.Values, live2) {
		t.Errorf("measuring the same end twice: err %v, values %v then %v", err, live2, again.Values)
	}
	if _, err := w.Measure(t.Context(), bus.RoleLive, at(time.Second)); err == nil {
		t.Error("measuring backwards: want an error")
	}

	// A window opened later (a restarted collector) replays the same.
	w2, err := src.Open(t.Context(), exp)
	if err != nil {
		t.Fatal(err)
	}
	replay1, err1 := w2.Measure(t.Context(), bus.RoleLive, at(time.Second))
	replay2, err2 := w2.Measure(t.Context(), bus.RoleLive, at(2*time.Second))
	if err1 != nil || err2 != nil || !equalValues(replay1.Values, live) || !equalValues(replay2.Values, live2) {
		t.Errorf("replay differs: %v %v", err1, err2)
	}
	w2.Close()

	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Measure(t.Context(), bus.RoleLive, at(3*time.Second)); !errors.Is(err, ErrClosed) {
		t.Errorf("after Close: err = %v, want ErrClosed", err)
	}
}

func TestBusSourceNoObservations(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	start := time.Now().UTC()
	exp := running("empty", start, 1, 1)
	w, err := (&BusSource{Stream: e.Obs}).Open(t.Context(), exp)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	m, err := w.Measure(t.Context(), bus.RoleDark, start.Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	values, mirror := m.Values, m.Mirror
	if got := val(t, values, experiment.MetricRequestCount); got != 0 {
		t.Errorf("request-count %v, want 0", got)
	}
	for _, name := range []string{experiment.MetricErrorRate, experiment.MetricMeanLatency, experiment.MetricP95Latency} {
		if v, ok := values[name]; !ok || v != nil {
			t.Errorf("%s = %v (present %v), want unavailable", name, v, ok)
		}
	}
	if mirror == nil || mirror.Mirrored != 0 {
		t.Errorf("dark mirror stats %+v, want zero counts", mirror)
	}
	if _, err := w.Measure(t.Context(), "canary", start); err == nil {
		t.Error("unknown role: want an error")
	}
}

// TestBusSourceNotCaughtUp: when the stored observations cannot be read in
// time, Measure says so instead of undercounting.
func TestBusSourceNotCaughtUp(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	exp := running("lag", time.Now(), 1, 1)
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

func equalValues(a, b map[string]*float64) bool {
	return maps.EqualFunc(a, b, func(x, y *float64) bool { return (x == nil) == (y == nil) && (x == nil || *x == *y) })
}
