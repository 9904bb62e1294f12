package collector

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/internal/testenv"
	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
	"github.com/darklaunch/darklaunch/shared/sketch"
	"github.com/darklaunch/darklaunch/shared/stats"
)

// routerPairs plays one router's proxy: its dark recorder, on a slot grid
// of its own.
type routerPairs struct {
	name string
	rec  *sketch.Recorder
}

// TestCollectorMergesPairsOfTwoRouters: two routers publish dark batches
// with pairs, on slots of their own, across two iterations, with an older
// router's batch without pairs and a batch whose pairs do not hold together
// among them. Each dark snapshot's comparison holds exactly the sum of the
// pairs of the batches in its window (whole-ms latencies: every sum is
// exact), its intervals are stats' on those sums at spec.criteria.confidence,
// and a dark version 30 % slower is shown slower than live.
func TestCollectorMergesPairsOfTwoRouters(t *testing.T) {
	t.Parallel()
	e, exp, start := newRunning(t, "paired", 0, 1, 2)
	confidence := 0.9
	exp.Spec.Criteria = &experiment.Criteria{Confidence: &confidence}
	uid := exp.Metadata.UID
	const capMs = 1000
	routers := []routerPairs{
		{"router-a", sketch.NewRecorder(sketch.Grid{Origin: start, Width: 250 * time.Millisecond}, 0)},
		{"router-b", sketch.NewRecorder(sketch.Grid{Origin: start, Width: 100 * time.Millisecond}, 0)},
	}
	for _, r := range routers {
		r.rec.SetPairCap(capMs)
	}
	rng := rand.New(rand.NewPCG(8, 5))
	var want [3]bus.Pairs // cumulative, by iteration
	for i := range 3000 {
		r := routers[i%2]
		at := start.Add(time.Duration(rng.IntN(1990)) * time.Millisecond) // iteration 1 or 2
		live := float64(10 + rng.IntN(40))
		dark := math.Round(live*1.3) + float64(rng.IntN(5))
		lf, df := rng.IntN(100) == 0, rng.IntN(50) == 0
		if i%500 == 0 {
			dark = 2 * capMs // held to the cap
		}
		r.rec.Observe(at, dark, df)
		r.rec.ObservePair(at, live, dark, lf, df)
		for k := 1; k <= 2; k++ {
			if at.Before(start.Add(time.Duration(k) * time.Second)) {
				want[k].Observe(live, min(dark, capMs), lf, df)
			}
		}
	}
	for _, r := range routers {
		for _, s := range r.rec.Flush(time.Time{}) {
			b := s.Batch(uid, bus.RoleDark, r.name)
			if b.Pairs == nil {
				t.Fatalf("a slot of %d requests without pairs", b.Count)
			}
			e.publishObs(t, exp, b)
		}
	}
	e.publishObs(t, exp, observed(uid, bus.RoleDark, start.Add(100*time.Millisecond), []float64{20, 30}, 0)) // before pairs
	bad := observed(uid, bus.RoleDark, start.Add(200*time.Millisecond), []float64{20}, 0)
	bad.Pairs = &bus.Pairs{N: 1, SumDark: 5000, CapMs: capMs} // above its cap: refused whole
	e.publishObs(t, exp, bad)
	e.publishObs(t, exp, observed(uid, bus.RoleLive, start.Add(100*time.Millisecond), []float64{20}, 0))

	if _, err := e.Store.Create(t.Context(), exp); err != nil {
		t.Fatal(err)
	}
	svc := e.newService(t, Config{Grace: 300 * time.Millisecond})
	testenv.Run(t, svc)
	events := e.metricsEvents(t, exp, 4, svc)
	for i, me := range events {
		s := me.ev.Snapshot
		if s.Role == bus.RoleLive {
			if s.Paired != nil {
				t.Errorf("live snapshot %d has a comparison: %+v", s.Iteration, s.Paired)
			}
			continue
		}
		w := want[s.Iteration]
		w.CapMs = capMs
		c := s.Paired
		if c == nil || c.Method != bus.ComparisonPaired || c.Sums == nil {
			t.Fatalf("event %d: dark snapshot %d comparison %+v, want paired with sums", i, s.Iteration, c)
		}
		if c.Pairs != w.N || *c.Sums != w {
			t.Errorf("iteration %d: %d pairs, sums %+v; want exactly %+v", s.Iteration, c.Pairs, *c.Sums, w)
		}
		if n := *s.Values[experiment.MetricRequestCount]; n != float64(w.N)+2 {
			t.Errorf("iteration %d: %v dark requests, want the %d paired and 2 before pairs", s.Iteration, n, w.N)
		}
		rg := stats.Range{Min: 0, Max: capMs}
		sp := statsPairs(w)
		ratio, _ := stats.PairedRatio(sp, rg, confidence)
		diff, _ := stats.PairedDifference(sp, rg, confidence)
		errDiff, _ := stats.PairedErrorDifference(sp, confidence)
		for name, x := range map[string]struct {
			got    *bus.Relative
			want   stats.Interval
			method string
		}{
			"ratio":            {c.MeanLatencyRatio, ratio, "fieller"},
			"difference":       {c.MeanLatencyDifference, diff, "paired-betting"},
			"error difference": {c.ErrorRateDifference, errDiff, "mcnemar-betting"},
		} {
			if !sameRelative(x.got, x.want) || x.got.Interval.Confidence != confidence || x.got.Interval.Method != x.method {
				t.Errorf("iteration %d %s: %s, want %v at %v by %s", s.Iteration, name, relString(x.got), x.want, confidence, x.method)
			}
		}
		if r := c.MeanLatencyRatio; s.Iteration == 2 && (r.Interval.Lo == nil || *r.Interval.Lo <= 1) {
			t.Errorf("a dark version 30 %% slower: ratio %s, want it shown above 1", relString(r))
		}
		t.Logf("iteration %d: %d pairs; dark ÷ live %s; dark − live %s ms; error rates %s", s.Iteration, c.Pairs, relString(c.MeanLatencyRatio), relString(c.MeanLatencyDifference), relString(c.ErrorRateDifference))
	}
}

// sameRelative: r holds iv's estimate and ends, an infinite end as nil.
func sameRelative(r *bus.Relative, iv stats.Interval) bool {
	end := func(p *float64, x float64) bool {
		if math.IsInf(x, 0) {
			return p == nil
		}
		return p != nil && *p == x
	}
	return r != nil && r.Value != nil && *r.Value == iv.Estimate && r.Interval != nil && end(r.Interval.Lo, iv.Lo) && end(r.Interval.Hi, iv.Hi)
}

func relString(r *bus.Relative) string {
	if r == nil || r.Value == nil {
		return "unavailable"
	}
	if r.Interval == nil {
		return fmt.Sprintf("%.4g", *r.Value)
	}
	end := func(p *float64, inf string) string {
		if p == nil {
			return inf
		}
		return fmt.Sprintf("%.4g", *p)
	}
	return fmt.Sprintf("%.4g [%s, %s]", *r.Value, end(r.Interval.Lo, "-Inf"), end(r.Interval.Hi, "+Inf"))
}

// valuesSource measures fixed values per role, as Prometheus would: no
// pairs.
type valuesSource map[string]map[string]float64

func (s valuesSource) Open(context.Context, *experiment.Experiment) (Window, error) { return s, nil }
func (s valuesSource) Close() error                                                 { return nil }
func (s valuesSource) Measure(_ context.Context, role string, _ time.Time) (Measurement, error) {
	v := map[string]*float64{}
	for name, x := range s[role] {
		v[name] = &x
	}
	return Measurement{Values: v}, nil
}

// TestClockComparesUnpairedWithoutPairs: from a source without pairs the
// dark snapshot's comparison is unpaired, from the two versions' values of
// the same iteration: the error rates' difference with its Bonferroni
// interval, the latency ratio and difference without one (saying why).
func TestClockComparesUnpairedWithoutPairs(t *testing.T) {
	t.Parallel()
	e, exp, _ := newRunning(t, "unpaired", -1500*time.Millisecond, 1, 1)
	src := valuesSource{
		bus.RoleLive: {experiment.MetricRequestCount: 1000, experiment.MetricErrorCount: 10, experiment.MetricMeanLatency: 20},
		bus.RoleDark: {experiment.MetricRequestCount: 999.6, experiment.MetricErrorCount: 30.2, experiment.MetricMeanLatency: 26},
	}
	testRunner(e, src, Config{Grace: 10 * time.Millisecond}).clock(t.Context(), exp, exp.Status.CompletedIterations+1)
	events := e.metricsEvents(t, exp, 2, nil)
	if c := events[0].ev.Snapshot.Paired; c != nil {
		t.Errorf("live snapshot has a comparison: %+v", c)
	}
	c := events[1].ev.Snapshot.Paired
	if c == nil || c.Method != bus.ComparisonUnpaired || c.Pairs != 0 || c.Sums != nil {
		t.Fatalf("dark comparison %+v, want unpaired without pairs", c)
	}
	want, err := stats.UnpairedErrorDifference(30, 1000, 10, 1000, experiment.DefaultConfidence)
	if err != nil {
		t.Fatal(err)
	}
	if d := c.ErrorRateDifference; !sameRelative(d, want) || d.Interval.Method != "bonferroni-clopper-pearson" || d.Interval.Confidence != 0.95 {
		t.Errorf("error rate difference %s, want %v (Bonferroni, at 0.95)", relString(d), want)
	}
	if r := c.MeanLatencyRatio; r == nil || r.Value == nil || math.Abs(*r.Value-1.3) > 1e-12 || r.Interval != nil || !strings.Contains(c.Errors["meanLatencyRatio"], "unpaired") {
		t.Errorf("ratio %s (errors %v), want 1.3 without an interval, saying why", relString(r), c.Errors)
	}
	if d := c.MeanLatencyDifference; d == nil || d.Value == nil || *d.Value != 6 || d.Interval != nil {
		t.Errorf("latency difference %s, want 6 ms without an interval", relString(d))
	}
}

// TestPairedComparisonWithoutPairs: a bus source that has seen no pair yet
// says so, paired, with every value unavailable.
func TestPairedComparisonWithoutPairs(t *testing.T) {
	c := pairedComparison(bus.Pairs{}, 0.95)
	if c.Method != bus.ComparisonPaired || c.Pairs != 0 || len(c.Errors) != 3 {
		t.Fatalf("%+v", c)
	}
	for _, r := range []*bus.Relative{c.MeanLatencyRatio, c.MeanLatencyDifference, c.ErrorRateDifference} {
		if r == nil || r.Value != nil || r.Interval != nil {
			t.Errorf("a value without pairs: %s", relString(r))
		}
	}
	if !strings.Contains(c.Errors["errorRateDifference"], "no pairs") {
		t.Errorf("errors %v", c.Errors)
	}
}

// TestStatsPairsAgree: the wire form's sums are stats.Pairs' sums, pair by
// pair and merged.
func TestStatsPairsAgree(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var wire, half bus.Pairs
	var want stats.Pairs
	for i := range 200 {
		l, d := rng.Float64()*100, rng.Float64()*100
		lf, df := rng.IntN(3) == 0, rng.IntN(3) == 0
		want.Observe(l, d, lf, df)
		if i%2 == 0 {
			wire.Observe(l, d, lf, df)
		} else {
			half.Observe(l, d, lf, df)
		}
	}
	wire.Add(&half)
	got := statsPairs(wire)
	tol := func(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Abs(b) }
	if got.N != want.N || got.DarkFailed != want.DarkFailed || got.LiveFailed != want.LiveFailed || got.BothFailed != want.BothFailed ||
		!tol(got.SumLive, want.SumLive) || !tol(got.SumDark, want.SumDark) || !tol(got.SumLive2, want.SumLive2) || !tol(got.SumDark2, want.SumDark2) || !tol(got.SumCross, want.SumCross) {
		t.Errorf("wire %+v, stats %+v", got, want)
	}
}
