package judge

import (
	"fmt"
	"math"

	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
	"github.com/darklaunch/darklaunch/shared/stats"
)

// Methods of the relative intervals (docs/statistics.md).
const (
	methodFieller        = "fieller"
	methodMcNemarBetting = "mcnemar-betting"
	methodUnpaired       = "unpaired-bonferroni"
)

// liveView is what the judge holds of the live version for the iteration
// being judged: its values and intervals, recorded from its snapshot.
type liveView struct {
	values    map[string]*float64
	intervals map[string]*experiment.Interval
}

// liveOf reads the live version's values and intervals from the analysis.
func liveOf(an *experiment.Analysis) liveView {
	lv := liveView{values: map[string]*float64{}, intervals: map[string]*experiment.Interval{}}
	if an == nil {
		return lv
	}
	for metric, byVersion := range an.AggregatedMetrics {
		lv.values[metric] = byVersion[liveVersion]
	}
	for metric, byVersion := range an.AggregatedIntervals {
		lv.intervals[metric] = byVersion[liveVersion]
	}
	return lv
}

// relativeResult judges an objective relative to live (reference: live): its
// limit bounds the ratio dark ÷ live of a latency, or the difference
// dark − live of error-rate.
//
//   - With the proxy (the snapshot's comparison is paired), mean-latency and
//     error-rate come from the pairs, the live and the dark answer to the
//     same mirrored requests, recomputed from their sums at level: Fieller's
//     ratio and the exact paired error difference, both anytime-valid, so
//     they hold for stopEarly too.
//   - Otherwise (Prometheus, or a percentile) from the two versions' own
//     values, unpaired: the ratio of the two intervals, each at least at
//     1 − (1 − level)/2 (Bonferroni: the collector computes them so), and
//     the difference of the error rates from the two versions' counts.
//
// Without spec.criteria.confidence it is satisfied on the value, as every
// objective is; the outcome on the interval is reported all the same.
func relativeResult(o experiment.Objective, r experiment.ObjectiveResult, snap *bus.Snapshot, level float64, live liveView, confident bool) experiment.ObjectiveResult {
	info, _ := experiment.LookupMetric(o.Metric)
	rel := relativeValue(info.Name, snap, level, live)
	values, errs := map[string]*float64{o.Metric: rel.value}, map[string]string{}
	if rel.value == nil {
		errs[o.Metric] = rel.why
	}
	out := Evaluate([]experiment.Objective{o}, values, errs)[0]
	out.Reference = o.Reference
	out.Outcome = experiment.OutcomeInconclusive
	what := "dark ÷ live"
	if info.Name == experiment.MetricErrorRate {
		what = "dark − live"
	}
	if out.Value != nil {
		out.Reason = what + " " + out.Reason + " (" + rel.how + ")"
	}
	if rel.iv != nil {
		out.Interval = rel.iv
		lo, hi := rel.iv.Bounds()
		if outcome, err := stats.Judge(stats.Interval{Estimate: *rel.value, Lo: lo, Hi: hi}, stats.Limits{Upper: r.UpperLimit, Lower: r.LowerLimit}); err == nil {
			out.Outcome = outcome.String()
		}
	}
	if !confident {
		return out
	}
	out.Satisfied = out.Outcome == experiment.OutcomeSatisfied
	switch {
	case rel.value == nil:
		out.Reason = "inconclusive: unavailable: " + rel.why
	case rel.iv == nil:
		out.Reason = fmt.Sprintf("%s %s (%s): inconclusive: %s", what, fmtNum(*rel.value), rel.how, rel.why)
	default:
		verb := map[string]string{experiment.OutcomeSatisfied: "meets", experiment.OutcomeViolated: "misses"}[out.Outcome]
		if verb == "" {
			verb = "straddles"
		}
		out.Reason = fmt.Sprintf("%s %s at %s (%s) %s %s", what, rel.iv.Format(rel.value), percent(rel.iv.Confidence), rel.how, verb, limitText(out))
	}
	return out
}

// relative is a relative value, its interval (nil: none, why says so) and
// how it was computed.
type relative struct {
	value *float64
	iv    *experiment.Interval
	how   string
	why   string
}

func relativeValue(metric string, snap *bus.Snapshot, level float64, live liveView) relative {
	c := snap.Paired
	if c != nil && c.Method == bus.ComparisonPaired && c.Sums != nil && c.Sums.N > 0 {
		sp := stats.Pairs{
			N: c.Sums.N, SumLive: c.Sums.SumLive, SumDark: c.Sums.SumDark, SumLive2: c.Sums.SumLive2,
			SumDark2: c.Sums.SumDark2, SumCross: c.Sums.SumCross,
			DarkFailed: c.Sums.DarkFailed, LiveFailed: c.Sums.LiveFailed, BothFailed: c.Sums.BothFailed,
		}
		how := fmt.Sprintf("paired, %d pairs", sp.N)
		switch metric {
		case experiment.MetricMeanLatency:
			iv, err := stats.PairedRatio(sp, stats.Range{Min: 0, Max: c.Sums.CapMs}, level)
			return fromStats(iv, err, level, methodFieller, how)
		case experiment.MetricErrorRate:
			iv, err := stats.PairedErrorDifference(sp, level)
			return fromStats(iv, err, level, methodMcNemarBetting, how)
		}
	}
	const how = "unpaired"
	if metric == experiment.MetricErrorRate {
		dn, dok := count(snap, experiment.MetricRequestCount)
		de, _ := count(snap, experiment.MetricErrorCount)
		ln, lok := liveCount(live, experiment.MetricRequestCount)
		le, _ := liveCount(live, experiment.MetricErrorCount)
		if !dok || !lok || dn == 0 || ln == 0 {
			return relative{why: "the request counts of both versions are needed"}
		}
		iv, err := stats.UnpairedErrorDifference(de, dn, le, ln, level)
		return fromStats(iv, err, level, methodUnpaired, how)
	}
	d, l := snap.Values[metric], live.values[metric]
	if d == nil || l == nil || *l <= 0 {
		return relative{why: "the " + metric + " of both versions is needed"}
	}
	ratio := *d / *l
	r := relative{value: &ratio, how: how}
	div, liv := snap.Intervals[metric], live.intervals[metric]
	need := 1 - (1-level)/2
	switch {
	case div == nil || liv == nil:
		r.why = "no interval of both versions' " + metric
		return r
	case div.Confidence < need-1e-9 || liv.Confidence < need-1e-9:
		r.why = fmt.Sprintf("the versions' intervals are at %s and %s, below the %s an unpaired ratio needs", percent(div.Confidence), percent(liv.Confidence), percent(need))
		return r
	}
	dl, dh := div.Bounds()
	ll, lh := liv.Bounds()
	iv, err := stats.UnpairedRatio(stats.Interval{Estimate: *d, Lo: max(dl, 0), Hi: dh}, stats.Interval{Estimate: *l, Lo: max(ll, 0), Hi: lh})
	out := fromStats(iv, err, level, methodUnpaired, how)
	out.value = &ratio
	return out
}

func fromStats(iv stats.Interval, err error, level float64, method, how string) relative {
	if err != nil {
		return relative{why: err.Error(), how: how}
	}
	v := iv.Estimate
	r := relative{how: how, iv: &experiment.Interval{Confidence: level, Method: method}}
	if !math.IsInf(v, 0) && !math.IsNaN(v) {
		r.value = &v
	} else {
		return relative{why: "live's value is 0", how: how}
	}
	if !math.IsInf(iv.Lo, 0) {
		r.iv.Lo = &iv.Lo
	}
	if !math.IsInf(iv.Hi, 0) {
		r.iv.Hi = &iv.Hi
	}
	return r
}

func liveCount(live liveView, metric string) (int64, bool) {
	if v := live.values[metric]; v != nil && *v >= 0 {
		return int64(*v), true
	}
	return 0, false
}
