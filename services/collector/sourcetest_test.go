package collector

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

// The contract suite every Source passes, in the style of watermill's
// pubsub/tests: testSource runs each case against one source through its
// sourceHarness, which knows how to serve requests to a version of an
// experiment and how long to wait until the source can measure them.
// TestBusSourceContract and TestPrometheusSourceContract run it.

// sourceHarness drives one source for the suite. Its methods may be called
// from the suite's parallel cases at once.
type sourceHarness interface {
	// Source is a new instance of the source, as a (re)started collector
	// builds it.
	Source(t *testing.T) Source
	// Experiment is a running experiment named name, started at start,
	// whose versions are its own: what is served to another experiment's
	// versions is not served to it.
	Experiment(t *testing.T, name string, start time.Time) *experiment.Experiment
	// Start waits until requests served from now on fall in a window that
	// begins at the time it returns, the experiments' start.
	Start(ctx context.Context, t *testing.T) time.Time
	// Serve serves one request per latency (ms) to role's version of exp,
	// the first failed of them failures, as the version's users would.
	Serve(t *testing.T, exp *experiment.Experiment, role string, latMs []float64, failed int)
	// Measurable waits until everything served so far can be measured and
	// returns the end of a window from start that covers it. Requests
	// served after it returns fall after that end.
	Measurable(ctx context.Context, t *testing.T, start time.Time) time.Time
	// Tolerance is how far the source's values may be from the truth.
	Tolerance() tolerance
}

// tolerance is how closely a source measures what was served.
type tolerance struct {
	// count bounds the count (requests, errors) the source may report for n
	// served.
	count func(n float64) (lo, hi float64)
	// ratio is the relative tolerance of error-rate and mean-latency (0:
	// exact).
	ratio float64
	// quantile is the q-quantile the source reports for these latencies,
	// and its relative tolerance.
	quantile func(q float64, latMs []float64) (want, rel float64)
}

// truth is what was served to one version: the values a measurement is
// checked against.
type truth struct {
	lat    []float64
	errors int
}

func (tr *truth) add(lat []float64, failed int) {
	tr.lat = append(tr.lat, lat...)
	tr.errors += failed
}

var quantiles = map[string]float64{experiment.MetricP50Latency: 0.5, experiment.MetricP95Latency: 0.95, experiment.MetricP99Latency: 0.99}

// check says where values disagree with the truth beyond tol. With nothing
// served the counts are 0 and every ratio and latency is unavailable, never 0.
func (tr truth) check(t *testing.T, tol tolerance, what string, values map[string]*float64) {
	t.Helper()
	n, errs := float64(len(tr.lat)), float64(tr.errors)
	for name, want := range map[string]float64{experiment.MetricRequestCount: n, experiment.MetricErrorCount: errs} {
		lo, hi := tol.count(want)
		if got := val(t, values, name); got < lo || got > hi {
			t.Errorf("%s: %s %v, want %v (within [%v, %v])", what, name, got, want, lo, hi)
		}
	}
	if n == 0 {
		for _, name := range []string{experiment.MetricErrorRate, experiment.MetricMeanLatency, experiment.MetricP50Latency, experiment.MetricP95Latency, experiment.MetricP99Latency} {
			if v, ok := values[name]; !ok || v != nil {
				t.Errorf("%s: %s = %v (present %v), want unavailable: nothing was served", what, name, printable(v), ok)
			}
		}
		return
	}
	var sum float64
	for _, l := range tr.lat {
		sum += l
	}
	for name, want := range map[string]float64{experiment.MetricErrorRate: errs / n, experiment.MetricMeanLatency: sum / n} {
		if got := val(t, values, name); !near(got, want, tol.ratio) {
			t.Errorf("%s: %s %v, want %v (± %v relative)", what, name, got, want, tol.ratio)
		}
	}
	for name, q := range quantiles {
		want, rel := tol.quantile(q, tr.lat)
		if got := val(t, values, name); !near(got, want, rel) {
			t.Errorf("%s: %s %v, want %v (± %v relative)", what, name, got, want, rel)
		}
	}
}

func near(got, want, rel float64) bool { return math.Abs(got-want) <= rel*math.Abs(want) }

func printable(v *float64) string {
	if v == nil {
		return "unavailable"
	}
	return fmt.Sprint(*v)
}

func val(t *testing.T, values map[string]*float64, name string) float64 {
	t.Helper()
	v, ok := values[name]
	if !ok || v == nil {
		t.Fatalf("%s unavailable in %v", name, values)
	}
	return *v
}

func equalValues(a, b map[string]*float64) bool {
	return maps.EqualFunc(a, b, func(x, y *float64) bool { return (x == nil) == (y == nil) && (x == nil || *x == *y) })
}

// testSource runs the contract suite against the source h drives. The
// cases run at once, each with experiments of its own: they mostly wait
// (for Prometheus' scrapes), so they are not held to -parallel, which is 2
// on a 2-core machine, as t.Parallel cases would be.
func testSource(t *testing.T, h sourceHarness) {
	var cases sync.WaitGroup
	defer cases.Wait()
	for _, c := range []struct {
		name string
		run  func(context.Context, *testing.T, sourceHarness)
	}{
		{"NothingServedIsUnavailable", testSourceNothingServed},
		{"ServedValues", testSourceServed},
		{"RolesAndExperimentsAreSeparate", testSourceSeparate},
		{"RepeatableAndCumulative", testSourceCumulative},
		{"RestartedInstanceMeasuresTheSame", testSourceRestart},
		{"UnknownRoleAndClosed", testSourceErrors},
	} {
		cases.Go(func() {
			t.Run(c.name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
				defer cancel()
				c.run(ctx, t, h)
			})
		})
	}
}

// openWindow opens a window on exp with a new instance of the source, closed when
// the test ends.
func openWindow(ctx context.Context, t *testing.T, h sourceHarness, exp *experiment.Experiment) Window {
	t.Helper()
	w, err := h.Source(t).Open(ctx, exp)
	if err != nil {
		t.Fatalf("open %s: %v", exp.Key(), err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

// measured is what w measures of role up to end; an error fails the test.
func measured(ctx context.Context, t *testing.T, w Window, role string, end time.Time) Measurement {
	t.Helper()
	m, err := w.Measure(ctx, role, end)
	if err != nil {
		t.Fatalf("measure %s up to %s: %v", role, end.Format(time.StampMilli), err)
	}
	return m
}

// testSourceNothingServed: a version nobody called has counts 0 and every
// ratio and latency unavailable, never 0; the snapshot the clock builds of
// it says why.
func testSourceNothingServed(ctx context.Context, t *testing.T, h sourceHarness) {
	start := h.Start(ctx, t)
	exp := h.Experiment(t, "silent", start)
	w := openWindow(ctx, t, h, exp)
	end := h.Measurable(ctx, t, start)
	r := &runner{cfg: Config{Source: "test"}}
	for _, role := range roles {
		m := measured(ctx, t, w, role, end)
		truth{}.check(t, h.Tolerance(), role, m.Values)
		snap := r.snapshot(exp, 1, role, start, end, m, nil)
		for name, v := range m.Values {
			if v == nil && snap.Errors[name] == "" {
				t.Errorf("%s: %s unavailable without a reason (source's: %q)", role, name, m.Reasons[name])
			}
		}
	}
}

// testSourceServed: the values agree with what was served to each version.
func testSourceServed(ctx context.Context, t *testing.T, h sourceHarness) {
	start := h.Start(ctx, t)
	exp := h.Experiment(t, "served", start)
	var live, dark truth
	serve := func(tr *truth, role string, lat []float64, failed int) {
		h.Serve(t, exp, role, lat, failed)
		tr.add(lat, failed)
	}
	// Two batches a version, as the proxy flushes or Prometheus scrapes
	// traffic spread over time; 5 % of dark's requests fail, 2 % of live's.
	serve(&dark, bus.RoleDark, spread(2, 1.5, 60), 3)
	serve(&live, bus.RoleLive, spread(5, 0.5, 30), 1)
	serve(&dark, bus.RoleDark, spread(3, 2, 40), 2)
	serve(&live, bus.RoleLive, spread(6, 0.5, 20), 0)
	end := h.Measurable(ctx, t, start)

	w := openWindow(ctx, t, h, exp)
	live.check(t, h.Tolerance(), "live", measured(ctx, t, w, bus.RoleLive, end).Values)
	dark.check(t, h.Tolerance(), "dark", measured(ctx, t, w, bus.RoleDark, end).Values)
}

// testSourceSeparate: what is served to one role is not counted for the
// other, nor what is served to another experiment's versions.
func testSourceSeparate(ctx context.Context, t *testing.T, h sourceHarness) {
	start := h.Start(ctx, t)
	liveOnly, darkOnly := h.Experiment(t, "live-only", start), h.Experiment(t, "dark-only", start)
	other := h.Experiment(t, "other", start)
	var live, dark truth
	h.Serve(t, liveOnly, bus.RoleLive, spread(10, 1, 50), 5)
	live.add(spread(10, 1, 50), 5)
	h.Serve(t, darkOnly, bus.RoleDark, spread(100, 2, 80), 4)
	dark.add(spread(100, 2, 80), 4)
	// Another experiment's slow failures, in both roles.
	for _, role := range roles {
		h.Serve(t, other, role, spread(4000, 10, 70), 70)
	}
	end := h.Measurable(ctx, t, start)

	tol := h.Tolerance()
	w := openWindow(ctx, t, h, liveOnly)
	live.check(t, tol, "live-only's live", measured(ctx, t, w, bus.RoleLive, end).Values)
	truth{}.check(t, tol, "live-only's dark", measured(ctx, t, w, bus.RoleDark, end).Values)
	w = openWindow(ctx, t, h, darkOnly)
	truth{}.check(t, tol, "dark-only's live", measured(ctx, t, w, bus.RoleLive, end).Values)
	dark.check(t, tol, "dark-only's dark", measured(ctx, t, w, bus.RoleDark, end).Values)
}

// servedInTwoPhases serves exp's versions, waits until that is measurable
// (end1), serves as many again and waits again (end2); it returns the truth
// of each role at each end. The second phase is no smaller than the first,
// so that a count at end2 above the one at end1 is beyond any tolerance.
func servedInTwoPhases(ctx context.Context, t *testing.T, h sourceHarness, exp *experiment.Experiment, start time.Time) (end1, end2 time.Time, at1, at2 map[string]truth) {
	t.Helper()
	at1, at2 = map[string]truth{}, map[string]truth{}
	serve := func(at map[string]truth, role string, lat []float64, failed int) {
		h.Serve(t, exp, role, lat, failed)
		tr := at[role]
		tr.add(lat, failed)
		at[role] = tr
	}
	serve(at1, bus.RoleLive, spread(10, 1, 40), 2)
	serve(at1, bus.RoleDark, spread(20, 3, 30), 3)
	end1 = h.Measurable(ctx, t, start)
	for role, tr := range at1 {
		at2[role] = truth{lat: append([]float64(nil), tr.lat...), errors: tr.errors}
	}
	serve(at2, bus.RoleLive, spread(50, 0.5, 40), 1)
	serve(at2, bus.RoleDark, spread(30, 5, 30), 0)
	end2 = h.Measurable(ctx, t, start)
	return end1, end2, at1, at2
}

// testSourceCumulative: each end measures everything served before it,
// whether it was served before or after the window opened; a later end
// never counts fewer requests; measuring the same end again gives the same
// values.
func testSourceCumulative(ctx context.Context, t *testing.T, h sourceHarness) {
	start := h.Start(ctx, t)
	exp := h.Experiment(t, "cumulative", start)
	w := openWindow(ctx, t, h, exp)
	end1, end2, at1, at2 := servedInTwoPhases(ctx, t, h, exp, start)
	tol := h.Tolerance()
	for _, role := range roles {
		m1 := measured(ctx, t, w, role, end1)
		at1[role].check(t, tol, role+" at end 1", m1.Values)
		m2 := measured(ctx, t, w, role, end2)
		at2[role].check(t, tol, role+" at end 2", m2.Values)
		if c1, c2 := val(t, m1.Values, experiment.MetricRequestCount), val(t, m2.Values, experiment.MetricRequestCount); c2 < c1 {
			t.Errorf("%s: request-count %v at end 2, fewer than %v at end 1", role, c2, c1)
		}
		if again := measured(ctx, t, w, role, end2); !equalValues(again.Values, m2.Values) {
			t.Errorf("%s: measuring end 2 again gives %v, first %v", role, again.Values, m2.Values)
		}
	}
}

// testSourceRestart: a new instance of the source (a restarted collector)
// measures the same values at the same ends.
func testSourceRestart(ctx context.Context, t *testing.T, h sourceHarness) {
	start := h.Start(ctx, t)
	exp := h.Experiment(t, "restart", start)
	w := openWindow(ctx, t, h, exp)
	end1, end2, _, at2 := servedInTwoPhases(ctx, t, h, exp, start)
	first := map[string]Measurement{}
	for _, role := range roles {
		first[role+"/1"] = measured(ctx, t, w, role, end1)
		first[role+"/2"] = measured(ctx, t, w, role, end2)
		at2[role].check(t, h.Tolerance(), role+" at end 2", first[role+"/2"].Values)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	restarted := openWindow(ctx, t, h, exp)
	for _, role := range roles {
		for i, end := range []time.Time{end1, end2} {
			key := fmt.Sprintf("%s/%d", role, i+1)
			if m := measured(ctx, t, restarted, role, end); !equalValues(m.Values, first[key].Values) {
				t.Errorf("%s at end %d: the restarted instance measures %v, the first %v", role, i+1, m.Values, first[key].Values)
			}
		}
	}
}

// testSourceErrors: a role the source does not know is an error; after
// Close, Measure fails with ErrClosed.
func testSourceErrors(ctx context.Context, t *testing.T, h sourceHarness) {
	start := time.Now().UTC()
	w := openWindow(ctx, t, h, h.Experiment(t, "closed", start))
	end := start.Add(time.Second)
	if _, err := w.Measure(ctx, "canary", end); err == nil || errors.Is(err, ErrClosed) {
		t.Errorf("unknown role: err = %v, want an error naming the roles", err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for _, role := range roles {
		if _, err := w.Measure(ctx, role, end); !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: err = %v, want ErrClosed", role, err)
		}
	}
}

// spread is n latencies from `from`, step apart.
func spread(from, step float64, n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = from + float64(i)*step
	}
	return out
}
