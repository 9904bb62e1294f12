package collector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/internal/testenv"
	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// fakeSource is a Source whose values encode the measurement (request-count
// = the window's end in seconds after start), and whose failures are scripted.
type fakeSource struct {
	start time.Time

	mu        sync.Mutex
	openFails int                // Open fails this many times first
	fail      map[string][]error // "role/k" → errors returned, one per call
	opens     int
	closes    int
	calls     []measureCall
}

type measureCall struct {
	role string
	k    int
	at   time.Time
}

var _ Source = (*fakeSource)(nil)

func (f *fakeSource) Open(context.Context, *experiment.Experiment) (Window, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.opens++
	if f.openFails > 0 {
		f.openFails--
		return nil, errors.New("prometheus is down")
	}
	return fakeWindow{f}, nil
}

type fakeWindow struct{ f *fakeSource }

func (w fakeWindow) Measure(_ context.Context, role string, end time.Time) (Measurement, error) {
	f := w.f
	f.mu.Lock()
	defer f.mu.Unlock()
	k := int(end.Sub(f.start) / time.Second)
	f.calls = append(f.calls, measureCall{role: role, k: k, at: time.Now()})
	key := fmt.Sprintf("%s/%d", role, k)
	if errs := f.fail[key]; len(errs) > 0 {
		f.fail[key] = errs[1:]
		return Measurement{}, errs[0]
	}
	n := float64(k)
	return Measurement{Values: map[string]*float64{experiment.MetricRequestCount: &n, experiment.MetricMeanLatency: nil}}, nil
}

func (w fakeWindow) Close() error {
	w.f.mu.Lock()
	w.f.closes++
	w.f.mu.Unlock()
	return nil
}

func (f *fakeSource) snapshot() (calls []measureCall, opens, closes int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]measureCall(nil), f.calls...), f.opens, f.closes
}

func testRunner(e *env, src Source, cfg Config) *runner {
	cfg.Default()
	prom, err := newPromMetrics(prometheus.NewRegistry(), cfg.Source)
	if err != nil {
		panic(err) // constant descriptors on a fresh registry
	}
	return &runner{cfg: cfg, log: slog.New(slog.DiscardHandler), js: e.JS, obs: e.Obs, store: e.Store, source: src, prom: prom}
}

// TestClockCatchesUpThenKeepsTime: a clock started late (a restarted
// collector) resumes at completedIterations+1, measures the iterations whose
// time has passed at once, then each next one at its end + grace, live
// before dark.
func TestClockCatchesUpThenKeepsTime(t *testing.T) {
	t.Parallel()
	const grace = 200 * time.Millisecond
	e, exp, start := newRunning(t, "clock", -3500*time.Millisecond, 1, 5)
	began := start.Add(3500 * time.Millisecond)
	exp.Status.CompletedIterations = 1
	src := &fakeSource{start: start.UTC()}
	r := testRunner(e, src, Config{Grace: grace})

	r.clock(t.Context(), exp, exp.Status.CompletedIterations+1)

	calls, opens, closes := src.snapshot()
	if opens != 1 || closes != 1 {
		t.Errorf("window opened %d and closed %d times, want once each", opens, closes)
	}
	if len(calls) != 8 {
		t.Fatalf("%d measurements, want 8 (iterations 2..5, live and dark): %+v", len(calls), calls)
	}
	for i, c := range calls {
		k, role := 2+i/2, roles[i%2]
		if c.k != k || c.role != role {
			t.Errorf("measurement %d: %s k=%d, want %s k=%d", i, c.role, c.k, role, k)
		}
		due := start.Add(time.Duration(k)*time.Second + grace)
		if k <= 3 {
			// At once: well before iteration 4 is due (700 ms after began),
			// with room for a loaded machine.
			if d := c.at.Sub(began); d > 600*time.Millisecond {
				t.Errorf("past iteration %d measured %v after the clock started, want at once", k, d)
			}
		} else if c.at.Before(due) {
			t.Errorf("iteration %d measured %v before its end + grace", k, due.Sub(c.at))
		}
	}

	events := e.metricsEvents(t, exp, 8, nil)
	for i, me := range events {
		k, role := int32(2+i/2), roles[i%2]
		s := me.ev.Snapshot
		if want := bus.MsgID(exp.Metadata.UID, "metrics", role, fmt.Sprint(k)); me.id != want {
			t.Errorf("event %d Msg-Id %q, want %q", i, me.id, want)
		}
		wantVersion := map[string]string{bus.RoleLive: "live", bus.RoleDark: "sample-app-v2"}[role]
		if s.Iteration != k || s.Role != role || s.Version != wantVersion || s.Source != "bus" ||
			!s.Start.Equal(start) || !s.End.Equal(start.Add(time.Duration(k)*time.Second)) {
			t.Errorf("event %d: snapshot %+v", i, s)
		}
		if v := s.Values[experiment.MetricRequestCount]; v == nil || *v != float64(k) {
			t.Errorf("event %d: request-count %v, want %d", i, v, k)
		}
		if s.Errors[experiment.MetricMeanLatency] == "" {
			t.Errorf("event %d: a nil value without a reason: %v", i, s.Errors)
		}
		if me.ev.UID != exp.Metadata.UID || me.ev.Source != "collector" || me.ev.Type != bus.EventMetrics {
			t.Errorf("event %d envelope: %+v", i, me.ev)
		}
	}
}

// TestClockSourceFailures: a source that cannot open is retried; a
// transient failure is retried; a lasting one gives a snapshot whose values
// are all unavailable, with the reason, and the clock carries on.
func TestClockSourceFailures(t *testing.T) {
	t.Parallel()
	e, exp, start := newRunning(t, "failures", -3*time.Second, 1, 2)
	src := &fakeSource{
		start:     start.UTC(),
		openFails: 2, // at the clock's start and at the first measurement
		fail: map[string][]error{
			"live/1": {errors.New("connection refused")},                                                          // once: retried
			"dark/1": {fmt.Errorf("dark: %w", ErrNoValues)},                                                       // not retried
			"live/2": {errors.New("a"), errors.New("b"), errors.New("c"), errors.New("d"), errors.New("lasting")}, // past the timeout
		},
	}
	r := testRunner(e, src, Config{Grace: 10 * time.Millisecond, MeasureTimeout: 500 * time.Millisecond})
	r.clock(t.Context(), exp, exp.Status.CompletedIterations+1)

	events := e.metricsEvents(t, exp, 4, nil)
	byKey := map[string]*bus.Snapshot{}
	for _, me := range events {
		byKey[fmt.Sprintf("%s/%d", me.ev.Snapshot.Role, me.ev.Snapshot.Iteration)] = me.ev.Snapshot
	}
	if v := byKey["live/1"].Values[experiment.MetricRequestCount]; v == nil || *v != 1 || byKey["live/1"].Errors[experiment.MetricRequestCount] != "" {
		t.Errorf("live/1 after a failed open and a transient error: %+v", byKey["live/1"])
	}
	for _, key := range []string{"dark/1", "live/2"} {
		s := byKey[key]
		for _, name := range experiment.MetricNames() {
			v, ok := s.Values[name]
			if !ok || v != nil {
				t.Errorf("%s: %s = %v (present %v), want unavailable (nil)", key, name, v, ok)
			}
			if !strings.Contains(s.Errors[name], "source bus failed") {
				t.Errorf("%s: %s reason %q", key, name, s.Errors[name])
			}
		}
	}
	if reason := byKey["dark/1"].Errors[experiment.MetricErrorRate]; !strings.Contains(reason, "no values found") {
		t.Errorf("dark/1 reason %q, want the source's error", reason)
	}
	if v := byKey["dark/2"].Values[experiment.MetricRequestCount]; v == nil || *v != 2 {
		t.Errorf("dark/2 after failures: %+v", byKey["dark/2"])
	}
	calls, opens, _ := src.snapshot()
	count := map[string]int{}
	for _, c := range calls {
		count[fmt.Sprintf("%s/%d", c.role, c.k)]++
	}
	if count["live/1"] != 2 || count["dark/1"] != 1 || count["live/2"] < 3 || opens != 3 {
		t.Errorf("measure calls %v, opens %d: want live/1 retried once, dark/1 (no values) not retried, live/2 retried until the timeout, 3 opens", count, opens)
	}

	// The Prometheus metrics tell the same story.
	m := r.prom
	for key, want := range map[[2]string]float64{
		{bus.RoleLive, resultOK}: 1, {bus.RoleLive, resultUnavailable}: 1,
		{bus.RoleDark, resultOK}: 1, {bus.RoleDark, resultUnavailable}: 1,
	} {
		if got := testutil.ToFloat64(m.snapshots.WithLabelValues(key[0], key[1])); got != want {
			t.Errorf("snapshots{role=%s,result=%s} %v, want %v", key[0], key[1], got, want)
		}
	}
	// request-count is unavailable in the two failed snapshots; the fake
	// never has a mean-latency.
	for metric, want := range map[string]float64{experiment.MetricRequestCount: 2, experiment.MetricMeanLatency: 4} {
		if got := testutil.ToFloat64(m.unavailable.WithLabelValues(metric)); got != want {
			t.Errorf("unavailable_values{metric=%s} %v, want %v", metric, got, want)
		}
	}
	if got := testutil.ToFloat64(m.clocks); got != 0 {
		t.Errorf("clocks %v after the clock returned, want 0", got)
	}
	if got := testutil.CollectAndCount(m.duration); got != 1 {
		t.Errorf("measure duration: %d series, want 1", got)
	}
}

// TestClockStops: cancelling a waiting clock ends it at once, closes the
// window and publishes nothing for the interrupted iteration.
func TestClockStops(t *testing.T) {
	t.Parallel()
	e, exp, start := newRunning(t, "stop", 0, 10, 3)
	src := &fakeSource{start: start.UTC()}
	r := testRunner(e, src, Config{})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { r.clock(ctx, exp, exp.Status.CompletedIterations+1); close(done) }()
	testenv.Until(t, 2*time.Second, "the window to open", func() bool { _, opens, _ := src.snapshot(); return opens == 1 })
	cancel()
	closedWithin(t, done, time.Second, "the clock to return after cancel")
	calls, _, closes := src.snapshot()
	if len(calls) != 0 || closes != 1 {
		t.Errorf("after cancel: %d measurements, %d closes; want 0 and 1", len(calls), closes)
	}
}
