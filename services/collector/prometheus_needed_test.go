package collector

import (
	"log/slog"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
	"github.com/darklaunch/darklaunch/shared/stats"
)

// neededWindow is a prometheus window of an experiment with objectives,
// enough to compute intervals and needed estimates without a Prometheus.
func neededWindow(confidence float64, stopEarly bool, objectives ...experiment.Objective) *promWindow {
	exp := &experiment.Experiment{}
	exp.Spec.Criteria = &experiment.Criteria{Confidence: &confidence, StopEarly: stopEarly, Objectives: objectives}
	return &promWindow{log: slog.New(slog.DiscardHandler), levels: newPromLevels(exp)}
}

// measureNeeded is what Measure does with the answers: the dark version's
// intervals, then its needed estimates.
func measureNeeded(w *promWindow, values map[string]*float64, h *promHistogram) (map[string]*experiment.Interval, []bus.Needed) {
	ivs := w.intervals(bus.RoleDark, values, histogramResult{hist: h})
	return ivs, w.levels.needed(values, ivs, h)
}

func neededOf(needed []bus.Needed, objective int) *bus.Needed {
	for i := range needed {
		if needed[i].Objective == objective {
			return &needed[i]
		}
	}
	return nil
}

// TestPromNeededErrorRate: an inconclusive error-rate objective needs what
// stats.ProportionNeeded (ProportionSequenceNeeded with stopEarly) says on
// the rounded counts, at the split level, under its own index; a satisfied
// one needs nothing.
func TestPromNeededErrorRate(t *testing.T) {
	t.Parallel()
	values := map[string]*float64{
		experiment.MetricRequestCount: ptr(48.3), // increase() is rarely whole
		experiment.MetricErrorCount:   ptr(0.2),
		experiment.MetricErrorRate:    ptr(0.2 / 48.3),
	}
	for _, stopEarly := range []bool{false, true} {
		w := neededWindow(0.95, stopEarly,
			experiment.Objective{Metric: experiment.MetricRequestCount, LowerLimit: experiment.NewLimit("10")},
			experiment.Objective{Metric: experiment.MetricErrorRate, UpperLimit: experiment.NewLimit("0.01")},
			experiment.Objective{Metric: experiment.MetricErrorRate, UpperLimit: experiment.NewLimit("0.5")},
		)
		split, _ := stats.Split(0.95, 3)
		want, err := stats.ProportionNeeded(0, 48, split, stats.ClopperPearson, stats.Upper(0.01))
		if stopEarly {
			want, err = stats.ProportionSequenceNeeded(0, 48, split, stats.Upper(0.01))
		}
		if err != nil || want <= 0 {
			t.Fatalf("stopEarly %v: the statistics say %d, %v", stopEarly, want, err)
		}
		ivs, needed := measureNeeded(w, values, nil)
		t.Logf("stopEarly %v: error-rate [%s, %s]; needed %+v", stopEarly, fmtBound(ivs[experiment.MetricErrorRate].Lo), fmtBound(ivs[experiment.MetricErrorRate].Hi), needed)
		if n := neededOf(needed, 1); n == nil || n.Requests != want || n.Reason != "" {
			t.Errorf("stopEarly %v: objective 1 (error-rate <= 0.01, 0 errors in 48): needed %+v, want %d requests", stopEarly, n, want)
		}
		if n := neededOf(needed, 2); n != nil {
			t.Errorf("stopEarly %v: objective 2 (error-rate <= 0.5) is satisfied, but needs %+v", stopEarly, n)
		}
		if n := neededOf(needed, 0); n != nil {
			t.Errorf("stopEarly %v: objective 0 (a count) needs %+v", stopEarly, n)
		}
	}

	// Without the counts there is no interval, hence no estimate.
	w := neededWindow(0.95, false, experiment.Objective{Metric: experiment.MetricErrorRate, UpperLimit: experiment.NewLimit("0.01")})
	if _, needed := measureNeeded(w, map[string]*float64{experiment.MetricErrorRate: ptr(0.0)}, nil); len(needed) != 0 {
		t.Errorf("no counts: needed %+v, want none", needed)
	}
}

// TestPromNeededMeanLatency: an inconclusive mean needs what stats.MeanNeeded
// says on the buckets as bins in [0, last edge]; with a request in the +Inf
// bucket nothing bounds it, and the reason says so.
func TestPromNeededMeanLatency(t *testing.T) {
	t.Parallel()
	edges := []float64{10, 20, 50, 100}
	w := neededWindow(0.9, false, experiment.Objective{Metric: experiment.MetricMeanLatency, UpperLimit: experiment.NewLimit("40")})
	values := map[string]*float64{experiment.MetricMeanLatency: ptr(20.0)}

	h := mustHistogram(t, histogramOf(edges, 10, 60, 90, 100, 100))
	bins := []stats.Bin{{Lo: 0, Hi: 10, Count: 10}, {Lo: 10, Hi: 20, Count: 50}, {Lo: 20, Hi: 50, Count: 30}, {Lo: 50, Hi: 100, Count: 10}}
	want, err := stats.MeanNeeded(bins, stats.Range{Min: 0, Max: 100}, 0.9, stats.Upper(40))
	if err != nil || want <= 0 {
		t.Fatalf("the statistics say %d, %v", want, err)
	}
	ivs, needed := measureNeeded(w, values, &h)
	t.Logf("mean [%s, %s]; needed %+v", fmtBound(ivs[experiment.MetricMeanLatency].Lo), fmtBound(ivs[experiment.MetricMeanLatency].Hi), needed)
	if n := neededOf(needed, 0); n == nil || n.Requests != want || n.Reason != "" {
		t.Errorf("mean <= 40 on 100 requests in [0, 100]: needed %+v, want %d requests", n, want)
	}

	// One request above the last edge.
	h = mustHistogram(t, histogramOf(edges, 10, 60, 90, 100, 101))
	ivs, needed = measureNeeded(w, values, &h)
	if iv := ivs[experiment.MetricMeanLatency]; iv == nil || iv.Hi != nil {
		t.Fatalf("mean with the +Inf bucket: %+v, want an interval unbounded above", iv)
	}
	n := neededOf(needed, 0)
	if n == nil || n.Requests != 0 || !strings.Contains(n.Reason, "+Inf bucket") || !strings.Contains(n.Reason, "100 ms") {
		t.Errorf("mean with the +Inf bucket: needed %+v, want a reason naming the +Inf bucket above 100 ms", n)
	} else {
		t.Logf("reason: %s", n.Reason)
	}

	// A satisfied mean needs nothing.
	w = neededWindow(0.9, false, experiment.Objective{Metric: experiment.MetricMeanLatency, UpperLimit: experiment.NewLimit("100")})
	h = mustHistogram(t, histogramOf(edges, 10, 60, 90, 100, 100))
	if _, needed := measureNeeded(w, values, &h); len(needed) != 0 {
		t.Errorf("mean <= 100 within [0, 100]: needed %+v, want none", needed)
	}
}

// TestHistogramRanks: stats.QuantileInterval (and QuantileSequence) on
// histogramRanks, in [0, unboundedLatency], read the same bucket edges as
// promHistogram.quantileInterval, on random histograms.
func TestHistogramRanks(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(8, 3))
	edges := []float64{1, 5, 10, 25, 50, 100, 250}
	rg := stats.Range{Min: 0, Max: unboundedLatency}
	for range 300 {
		cum := make([]float64, len(edges)+1)
		c := 0.0
		for i := range cum {
			if rng.IntN(3) > 0 {
				c += float64(rng.IntN(40))
			}
			cum[i] = c
		}
		if c == 0 {
			continue
		}
		h := mustHistogram(t, histogramOf(edges, cum...))
		for _, q := range []float64{0.5, 0.95, 0.99} {
			for _, seq := range []bool{false, true} {
				lo, hi, err := h.quantileInterval(q, 0.95, seq)
				if err != nil {
					t.Fatal(err)
				}
				read := stats.QuantileInterval
				if seq {
					read = stats.QuantileSequence
				}
				iv, err := read(histogramRanks{h}, q, 0.95, rg)
				if err != nil {
					t.Fatal(err)
				}
				wantHi := unboundedLatency
				if hi != nil {
					wantHi = *hi
				}
				if iv.Lo != lo || iv.Hi != wantHi {
					t.Fatalf("cum %v q %v seq %v: ranks read [%v, %v], the interval is [%v, %s]", cum, q, seq, iv.Lo, iv.Hi, lo, fmtBound(hi))
				}
			}
		}
	}
	if _, _, err := (histogramRanks{mustHistogram(t, histogramOf(edges, 1, 1, 1, 1, 1, 1, 1, 1))}).AtRank(2); err == nil {
		t.Error("rank 2 of 1: no error")
	}
}

// TestPromNeededPercentile: an inconclusive percentile needs what
// stats.QuantileNeeded says on histogramRanks, and then is conclusive on a
// histogram of that many requests in the same proportions; one whose bucket
// holds the limit, or is the +Inf bucket, is never conclusive, and the
// reason says why.
func TestPromNeededPercentile(t *testing.T) {
	t.Parallel()
	edges := []float64{10, 20, 50, 100}
	cum := []float64{10, 60, 90, 100, 100} // p95 in [50, 100]
	h := mustHistogram(t, histogramOf(edges, cum...))
	values := map[string]*float64{experiment.MetricP95Latency: ptr(75.0)}
	for _, stopEarly := range []bool{false, true} {
		// p95 <= 40: shown violated once the low rank reaches the bucket
		// [50, 100].
		w := neededWindow(0.95, stopEarly, experiment.Objective{Metric: experiment.MetricP95Latency, UpperLimit: experiment.NewLimit("40")})
		ivs, needed := measureNeeded(w, values, &h)
		iv := ivs[experiment.MetricP95Latency]
		n := neededOf(needed, 0)
		t.Logf("stopEarly %v: p95 [%s, %s]; needed %+v", stopEarly, fmtBound(iv.Lo), fmtBound(iv.Hi), n)
		want, err := stats.QuantileNeeded(histogramRanks{h}, 0.95, iv.Confidence, stats.Range{Min: 0, Max: unboundedLatency}, stats.Upper(40), stopEarly)
		if err != nil || want <= 0 {
			t.Fatalf("the statistics say %d, %v", want, err)
		}
		if n == nil || n.Requests != want {
			t.Fatalf("stopEarly %v: p95 <= 40: needed %+v, want %d requests", stopEarly, n, want)
		}
		// The estimate scales each request to N/100 of them (stats'
		// scaledRanks); a histogram of whole copies a little beyond it
		// (rounding to whole requests moves the ranks a little) shows it.
		k := (100+want+99)/100 + 1
		scaled := make([]float64, len(cum))
		for i, c := range cum {
			scaled[i] = c * float64(k)
		}
		lo, _, err := mustHistogram(t, histogramOf(edges, scaled...)).quantileInterval(0.95, iv.Confidence, stopEarly)
		if err != nil || lo <= 40 {
			t.Errorf("stopEarly %v: at %d requests p95's low end is %v (%v), want above 40", stopEarly, 100*k, lo, err)
		}
	}

	for _, c := range []struct {
		name, limit string
		cum         []float64
		reason      string
	}{
		{"limit in the bucket", "75", cum, "bucket [50 ms, 100 ms], which holds the limit"},
		{"+Inf bucket", "200", []float64{10, 60, 80, 90, 100}, "+Inf bucket (above 100 ms)"},
	} {
		h := mustHistogram(t, histogramOf(edges, c.cum...))
		w := neededWindow(0.95, false, experiment.Objective{Metric: experiment.MetricP95Latency, UpperLimit: experiment.NewLimit(c.limit)})
		_, needed := measureNeeded(w, values, &h)
		if n := neededOf(needed, 0); n == nil || n.Requests != 0 || !strings.Contains(n.Reason, c.reason) {
			t.Errorf("%s: needed %+v, want a reason with %q", c.name, n, c.reason)
		} else {
			t.Logf("%s: %s", c.name, n.Reason)
		}
	}

	// Satisfied: p95 <= 100, every request within 100 ms and the high rank
	// in the sample.
	w := neededWindow(0.95, false, experiment.Objective{Metric: experiment.MetricP95Latency, UpperLimit: experiment.NewLimit("100")})
	if ivs, needed := measureNeeded(w, values, &h); len(needed) != 0 {
		t.Errorf("p95 <= 100 on [%s, %s]: needed %+v, want none", fmtBound(ivs[experiment.MetricP95Latency].Lo), fmtBound(ivs[experiment.MetricP95Latency].Hi), needed)
	}
}
