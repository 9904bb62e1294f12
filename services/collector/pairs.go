package collector

import (
	"fmt"
	"math"

	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
	"github.com/darklaunch/darklaunch/shared/sketch"
	"github.com/darklaunch/darklaunch/shared/stats"
)

// Interval methods of a Comparison (experiment.Interval.Method).
const (
	methodFieller        = "fieller"         // stats.PairedRatio
	methodPairedBetting  = "paired-betting"  // stats.PairedDifference
	methodMcNemarBetting = "mcnemar-betting" // stats.PairedErrorDifference
	methodBonferroniCP   = "bonferroni-clopper-pearson"
)

// Names of a Comparison's values, for its Errors.
const (
	cmpRatio     = "meanLatencyRatio"
	cmpLatDiff   = "meanLatencyDifference"
	cmpErrorDiff = "errorRateDifference"
)

// snapshotConfidence is the level of a snapshot's intervals:
// spec.criteria.confidence, or experiment.DefaultConfidence without one
// (or with one that validation would refuse).
func snapshotConfidence(exp *experiment.Experiment) float64 {
	if c := exp.Spec.Criteria; c != nil && c.Confidence != nil && *c.Confidence > 0 && *c.Confidence < 1 {
		return *c.Confidence
	}
	return experiment.DefaultConfidence
}

// measuredPairs is what a bus window reports of its pairs: the dark
// version's merged sums, zero before the first pair (the proxy pairs every
// copy answered); none for live.
func measuredPairs(role string, agg *sketch.Aggregate) *bus.Pairs {
	if role != bus.RoleDark {
		return nil
	}
	p := agg.Pairs
	return &p
}

// comparison is the dark snapshot's comparison with live: from pairs when
// the source has them, else unpaired from live's measurement of the same
// iteration (nil when that failed).
func comparison(exp *experiment.Experiment, dark Measurement, live *Measurement) *bus.Comparison {
	confidence := snapshotConfidence(exp)
	switch {
	case dark.Pairs != nil:
		return pairedComparison(*dark.Pairs, confidence)
	case live != nil:
		return unpairedComparison(*live, dark, confidence)
	}
	return nil
}

// pairedComparison compares dark with live on the pairs the proxies saw
// (the merged sums of every dark batch in the window), at confidence. Its
// intervals hold for every distribution of latencies in [0, CapMs], and,
// being betting intervals with bets fixed in advance, at every iteration at
// once (they are confidence sequences, fit for stopEarly).
func pairedComparison(p bus.Pairs, confidence float64) *bus.Comparison {
	sums := p
	c := &bus.Comparison{Method: bus.ComparisonPaired, Pairs: p.N, Sums: &sums}
	if p.N == 0 {
		const why = "no pairs: no mirrored request answered by both versions since the experiment started"
		c.MeanLatencyRatio, c.MeanLatencyDifference, c.ErrorRateDifference = &bus.Relative{}, &bus.Relative{}, &bus.Relative{}
		c.Errors = map[string]string{cmpRatio: why, cmpLatDiff: why, cmpErrorDiff: why}
		return c
	}
	sp, rg := statsPairs(p), stats.Range{Min: 0, Max: p.CapMs}
	iv, err := stats.PairedRatio(sp, rg, confidence)
	c.MeanLatencyRatio = relative(c, cmpRatio, iv, err, confidence, methodFieller)
	iv, err = stats.PairedDifference(sp, rg, confidence)
	c.MeanLatencyDifference = relative(c, cmpLatDiff, iv, err, confidence, methodPairedBetting)
	iv, err = stats.PairedErrorDifference(sp, confidence)
	c.ErrorRateDifference = relative(c, cmpErrorDiff, iv, err, confidence, methodMcNemarBetting)
	return c
}

// statsPairs is the wire form of pairs as stats reads them (the same sums).
func statsPairs(p bus.Pairs) stats.Pairs {
	return stats.Pairs{
		N: p.N, SumLive: p.SumLive, SumDark: p.SumDark, SumLive2: p.SumLive2, SumDark2: p.SumDark2, SumCross: p.SumCross,
		DarkFailed: p.DarkFailed, LiveFailed: p.LiveFailed, BothFailed: p.BothFailed,
	}
}

// unpairedComparison compares dark with live on the two versions' own
// values (a source without pairs: Prometheus). The error rates' difference
// has an interval from the counts (stats.UnpairedErrorDifference, each
// version's Clopper-Pearson interval at 1 − α/2, rounded counts: a
// Prometheus increase() is extrapolated); the latency ratio and difference
// are point values only, their intervals need the versions' own mean
// intervals, which this source does not give (yet).
func unpairedComparison(live, dark Measurement, confidence float64) *bus.Comparison {
	c := &bus.Comparison{Method: bus.ComparisonUnpaired}
	lm, dm := value(live.Values, experiment.MetricMeanLatency), value(dark.Values, experiment.MetricMeanLatency)
	const noInterval = "unpaired: no interval, the source gives no interval of each version's mean latency"
	switch {
	case lm == nil || dm == nil:
		c.MeanLatencyRatio, c.MeanLatencyDifference = &bus.Relative{}, &bus.Relative{}
		addError(c, cmpRatio, "mean latency of both versions needed")
		addError(c, cmpLatDiff, "mean latency of both versions needed")
	default:
		c.MeanLatencyDifference = &bus.Relative{Value: finitePtr(*dm - *lm)}
		addError(c, cmpLatDiff, noInterval)
		c.MeanLatencyRatio = &bus.Relative{}
		if *lm > 0 {
			c.MeanLatencyRatio.Value = finitePtr(*dm / *lm)
			addError(c, cmpRatio, noInterval)
		} else {
			addError(c, cmpRatio, "live's mean latency is 0")
		}
	}
	ln, le := count(live.Values, experiment.MetricRequestCount), count(live.Values, experiment.MetricErrorCount)
	dn, de := count(dark.Values, experiment.MetricRequestCount), count(dark.Values, experiment.MetricErrorCount)
	if ln < 0 || le < 0 || dn < 0 || de < 0 {
		c.ErrorRateDifference = &bus.Relative{}
		addError(c, cmpErrorDiff, "request and error counts of both versions needed")
		return c
	}
	iv, err := stats.UnpairedErrorDifference(de, dn, le, ln, confidence)
	c.ErrorRateDifference = relative(c, cmpErrorDiff, iv, err, confidence, methodBonferroniCP)
	return c
}

// relative turns one interval of stats into a Relative, or an unavailable
// one with why in c.Errors. An infinite end is unbounded (nil).
func relative(c *bus.Comparison, name string, iv stats.Interval, err error, confidence float64, method string) *bus.Relative {
	if err != nil {
		addError(c, name, err.Error())
		return &bus.Relative{}
	}
	r := &bus.Relative{Value: finitePtr(iv.Estimate), Interval: &experiment.Interval{
		Lo: finitePtr(iv.Lo), Hi: finitePtr(iv.Hi), Confidence: confidence, Method: method,
	}}
	if r.Value == nil {
		addError(c, name, fmt.Sprintf("not finite: %v", iv.Estimate))
	}
	return r
}

func addError(c *bus.Comparison, name, why string) {
	if c.Errors == nil {
		c.Errors = map[string]string{}
	}
	c.Errors[name] = why
}

// value is values[name], nil when absent or not finite.
func value(values map[string]*float64, name string) *float64 {
	v := values[name]
	if v == nil || math.IsNaN(*v) || math.IsInf(*v, 0) {
		return nil
	}
	return v
}

// count is values[name] rounded to a whole count, −1 when unavailable.
func count(values map[string]*float64, name string) int64 {
	v := value(values, name)
	if v == nil || *v < 0 || *v > float64(bus.MaxPairs) {
		return -1
	}
	return int64(math.Round(*v))
}

func finitePtr(f float64) *float64 {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil
	}
	return &f
}
