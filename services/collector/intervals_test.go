package collector

import (
	"math"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/internal/testenv"
	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
	"github.com/darklaunch/darklaunch/shared/sketch"
	"github.com/darklaunch/darklaunch/shared/stats"
)

// seedRunning is the seed's experiment (mean ≤ 50, p95 ≤ 100, error-rate ≤
// 0.01), running since start, with confidence c when c > 0.
func seedRunning(t *testing.T, name string, start time.Time, c float64) *experiment.Experiment {
	t.Helper()
	exp := testenv.Seed(t)
	exp.Metadata.Name, exp.Metadata.UID = name, name+"-uid"
	if c > 0 {
		exp.Spec.Criteria.Confidence = &c
	}
	testenv.Running(start)(exp)
	return exp
}

// aggregateOf is the aggregate of one batch of the given latencies, the
// first failed of them failures, with timeoutMs as its latency bound.
func aggregateOf(t *testing.T, role string, lat []float64, failed int, timeoutMs float64) *sketch.Aggregate {
	t.Helper()
	b := observed("u", role, time.Now(), lat, failed)
	b.TimeoutMs = timeoutMs
	a := sketch.NewAggregate()
	if err := a.Add(b); err != nil {
		t.Fatal(err)
	}
	return a
}

func latencies(n int, ms float64) []float64 {
	lat := make([]float64, n)
	for i := range lat {
		lat[i] = ms + float64(i%7) // 33..39 ms around 36
	}
	return lat
}

// TestIntervalLevels: the dark version's metrics that objectives judge are
// at stats.Split(confidence, objectives), every other interval at the
// confidence itself (experiment.DefaultConfidence when absent), and each
// says its level.
func TestIntervalLevels(t *testing.T) {
	for _, c := range []float64{0, 0.9} {
		p := newIntervalPlan(seedRunning(t, "levels", time.Now(), c))
		base := c
		if c == 0 {
			base = experiment.DefaultConfidence
		}
		split := 1 - (1-base)/3
		agg := aggregateOf(t, bus.RoleDark, latencies(48, 33), 0, 5000)
		dark, _ := p.intervals(agg, bus.RoleDark)
		live, _ := p.intervals(agg, bus.RoleLive)
		for metric, want := range map[string]float64{
			experiment.MetricMeanLatency: split,
			experiment.MetricP95Latency:  split,
			experiment.MetricErrorRate:   split,
			experiment.MetricP50Latency:  base,
			experiment.MetricP99Latency:  base,
		} {
			if iv := dark[metric]; iv == nil || math.Abs(iv.Confidence-want) > 1e-12 {
				t.Errorf("confidence %v: dark %s interval %+v, want confidence %v", c, metric, iv, want)
			}
			if iv := live[metric]; iv == nil || math.Abs(iv.Confidence-base) > 1e-12 {
				t.Errorf("confidence %v: live %s interval %+v, want confidence %v", c, metric, iv, base)
			}
		}
		for _, count := range []string{experiment.MetricRequestCount, experiment.MetricErrorCount} {
			if dark[count] != nil {
				t.Errorf("%s has an interval: counts are exact", count)
			}
		}
	}
}

// TestIntervalsFromTheSketch: each interval is the statistics core's on the
// aggregate: Clopper-Pearson on the counts, betting on the sketch's bins in
// [0, timeout], order statistics from the sketch; without a latency bound
// (live) the latencies' upper ends are unbounded (nil), their lower ends
// still hold.
func TestIntervalsFromTheSketch(t *testing.T) {
	p := newIntervalPlan(seedRunning(t, "sketch", time.Now(), 0.95))
	lat := latencies(200, 33)
	agg := aggregateOf(t, bus.RoleDark, lat, 3, 5000)
	ivs, _ := p.intervals(agg, bus.RoleDark)

	c := p.split
	wantErr, err := stats.Proportion(3, 200, c, stats.ClopperPearson)
	if err != nil {
		t.Fatal(err)
	}
	checkInterval(t, "error-rate", ivs[experiment.MetricErrorRate], wantErr.Lo, wantErr.Hi, MethodClopperPearson)

	bins, _ := stats.SketchBins(agg.Sketch, sketch.RelativeAccuracy)
	wantMean, err := stats.MeanInterval(bins, stats.Range{Min: 0, Max: 5000}, c)
	if err != nil {
		t.Fatal(err)
	}
	checkInterval(t, "mean-latency", ivs[experiment.MetricMeanLatency], wantMean.Lo, wantMean.Hi, MethodBetting)
	if !(wantMean.Lo < 36 && 36 < wantMean.Hi && wantMean.Hi < 5000) {
		t.Errorf("mean interval %v does not hold the mean 36 within [0, 5000]", wantMean)
	}

	ranks, _ := stats.SketchRanks(agg.Sketch, sketch.RelativeAccuracy)
	wantP95, err := stats.QuantileInterval(ranks, 0.95, c, stats.Range{Min: 0, Max: 5000})
	if err != nil {
		t.Fatal(err)
	}
	checkInterval(t, "p95", ivs[experiment.MetricP95Latency], wantP95.Lo, wantP95.Hi, MethodOrderStatistic)
	if !(wantP95.Lo >= 33*0.99/1.01 && wantP95.Hi <= 39*1.01/0.99) {
		t.Errorf("p95 interval %v outside the sample's range widened by 1 %%", wantP95)
	}

	// Live: no bound known.
	live := aggregateOf(t, bus.RoleLive, latencies(20, 33), 0, 0)
	ivs, needed := p.intervals(live, bus.RoleLive)
	if needed != nil {
		t.Errorf("needed for live: %+v", needed)
	}
	mean := ivs[experiment.MetricMeanLatency]
	if mean == nil || mean.Hi != nil || mean.Lo == nil || !(*mean.Lo > 0 && *mean.Lo < 36) {
		t.Errorf("live mean interval %+v, want a positive lower bound and no upper one", mean)
	}
	if p99 := ivs[experiment.MetricP99Latency]; p99 == nil || p99.Hi != nil {
		t.Errorf("live p99 of 20 requests %+v: want no upper bound", p99)
	}
	if p50 := ivs[experiment.MetricP50Latency]; p50 == nil || p50.Hi == nil || p50.Lo == nil {
		t.Errorf("live p50 of 20 requests %+v: want both bounds", p50)
	}

	if ivs, needed := p.intervals(sketch.NewAggregate(), bus.RoleDark); ivs != nil || needed != nil {
		t.Errorf("no request: intervals %v, needed %v; want none", ivs, needed)
	}
}

func checkInterval(t *testing.T, what string, iv *experiment.Interval, lo, hi float64, method string) {
	t.Helper()
	switch {
	case iv == nil:
		t.Errorf("%s: no interval", what)
	case iv.Lo == nil || iv.Hi == nil || *iv.Lo != lo || *iv.Hi != hi || iv.Method != method:
		t.Errorf("%s: interval %+v, want [%v, %v] by %s", what, iv, lo, hi, method)
	case !iv.Valid():
		t.Errorf("%s: interval %+v not valid", what, iv)
	}
}

// TestNeeded: for each inconclusive objective of the dark version, the
// further requests the statistics core says it needs at the objective's
// level; none for a conclusive one, none for live.
func TestNeeded(t *testing.T) {
	p := newIntervalPlan(seedRunning(t, "needed", time.Now(), 0.95))
	agg := aggregateOf(t, bus.RoleDark, latencies(48, 33), 0, 5000)
	_, needed := p.intervals(agg, bus.RoleDark)
	byObjective := map[int]bus.Needed{}
	for _, n := range needed {
		byObjective[n.Objective] = n
	}
	wantErr, err := stats.ProportionNeeded(0, 48, p.split, stats.ClopperPearson, stats.Upper(0.01))
	if err != nil {
		t.Fatal(err)
	}
	if got := byObjective[2]; got.Requests != wantErr || got.Requests < 320 {
		t.Errorf("error-rate needed %+v, want %d (more than the 320 of one objective at 95 %%)", got, wantErr)
	}
	bins, _ := stats.SketchBins(agg.Sketch, sketch.RelativeAccuracy)
	wantMean, err := stats.MeanNeeded(bins, stats.Range{Min: 0, Max: 5000}, p.split, stats.Upper(50))
	if err != nil {
		t.Fatal(err)
	}
	if got := byObjective[0]; got.Requests != wantMean || got.Requests == 0 {
		t.Errorf("mean-latency needed %+v, want %d", got, wantMean)
	}
	// p95 of 48 requests at 98.3 %: P(all 48 below the p95) = 0.95^48 =
	// 8.5 % > 0.83 %, so the upper rank falls off the sample and the upper
	// bound is the timeout; the p95 needs more requests too.
	ranks, _ := stats.SketchRanks(agg.Sketch, sketch.RelativeAccuracy)
	wantP95, err := stats.QuantileNeeded(ranks, 0.95, p.split, stats.Range{Min: 0, Max: 5000}, stats.Upper(100), false)
	if err != nil {
		t.Fatal(err)
	}
	if got := byObjective[1]; got.Requests != wantP95 || got.Requests == 0 {
		t.Errorf("p95 needed %+v, want %d", got, wantP95)
	}
	// 200 requests: the p95 is satisfied and needs nothing.
	_, needed = p.intervals(aggregateOf(t, bus.RoleDark, latencies(200, 33), 0, 5000), bus.RoleDark)
	for _, n := range needed {
		if n.Objective == 1 {
			t.Errorf("p95 of 200 requests near 36 ms needs %+v, want nothing (satisfied)", n)
		}
	}

	// On the limit: 1 error in 100 against ≤ 0.01 is never conclusive.
	agg = aggregateOf(t, bus.RoleDark, latencies(100, 33), 1, 5000)
	_, needed = p.intervals(agg, bus.RoleDark)
	found := false
	for _, n := range needed {
		if n.Objective == 2 {
			found = n.Requests == 0 && n.Reason != ""
		}
	}
	if !found {
		t.Errorf("1 error in 100 against 0.01: needed %+v, want a reason and no number", needed)
	}
}

// TestBusSourceIntervals: the snapshot's measurement carries the intervals
// and the needed requests, from batches published on a real nats-server
// with the proxy's latency bound.
func TestBusSourceIntervals(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	start := time.Now()
	exp := seedRunning(t, "busiv", start, 0.95)
	b := observed(exp.Metadata.UID, bus.RoleDark, start.Add(100*time.Millisecond), latencies(48, 33), 0)
	b.TimeoutMs = 5000
	e.publishObs(t, exp, b)
	w, err := (&BusSource{Stream: e.Obs}).Open(t.Context(), exp)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	m, err := w.Measure(t.Context(), bus.RoleDark, start.Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	mean := m.Intervals[experiment.MetricMeanLatency]
	if mean == nil || mean.Hi == nil || *mean.Hi > 5000 || mean.Method != MethodBetting {
		t.Errorf("mean-latency interval %+v, want a betting interval within the 5 s bound", mean)
	}
	if len(m.Needed) != 3 {
		t.Errorf("needed %+v, want one per objective (48 requests show none)", m.Needed)
	}
	snap := (&runner{cfg: Config{Source: "bus"}}).snapshot(exp, 1, bus.RoleDark, start, start.Add(time.Second), m, nil)
	if snap.Intervals[experiment.MetricErrorRate] == nil || len(snap.Needed) != 3 {
		t.Errorf("snapshot intervals %v, needed %v: want them from the measurement", snap.Intervals, snap.Needed)
	}
}

// TestStopEarlyUsesSequences: with spec.criteria.stopEarly the rates and
// percentiles get the anytime-valid confidence sequences, wider than the
// one-look intervals at the same level; the mean's betting interval is
// already one, and the same.
func TestStopEarlyUsesSequences(t *testing.T) {
	exp := seedRunning(t, "early", time.Now(), 0.95)
	agg := aggregateOf(t, bus.RoleDark, latencies(300, 30), 6, 5000)
	once, _ := newIntervalPlan(exp).intervals(agg, bus.RoleDark)
	exp.Spec.Criteria.StopEarly = true
	seq, _ := newIntervalPlan(exp).intervals(agg, bus.RoleDark)
	for metric, method := range map[string]string{
		experiment.MetricErrorRate:   MethodBetaBinomialSequence,
		experiment.MetricP95Latency:  MethodOrderStatisticSequence,
		experiment.MetricMeanLatency: MethodBetting,
	} {
		s, o := seq[metric], once[metric]
		if s == nil || o == nil {
			t.Fatalf("%s: no interval (sequence %v, once %v)", metric, s, o)
		}
		if s.Method != method || s.Confidence != o.Confidence {
			t.Errorf("%s: method %s at %v, want %s at %v", metric, s.Method, s.Confidence, method, o.Confidence)
		}
		sl, sh := s.Bounds()
		ol, oh := o.Bounds()
		if sl > ol || sh < oh {
			t.Errorf("%s: sequence [%v, %v] narrower than the one-look interval [%v, %v]", metric, sl, sh, ol, oh)
		}
	}
}
