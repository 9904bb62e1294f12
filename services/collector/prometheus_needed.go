package collector

import (
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
	"github.com/darklaunch/darklaunch/shared/stats"
)

// How many more requests the prometheus source's inconclusive objectives
// need (docs/statistics.md, "The Prometheus source"): the same estimates as
// the bus source's (intervalPlan.needed), from the same data as the
// source's intervals, each at its interval's level:
//
//   - error-rate: stats.ProportionNeeded (ProportionSequenceNeeded with
//     stopEarly) on the rounded counts;
//   - mean-latency: stats.MeanNeeded on the buckets as bins, in the range of
//     the interval; with counts in the +Inf bucket nothing bounds the mean
//     from above, and the reason says so;
//   - percentiles: stats.QuantileNeeded on histogramRanks, which reads a
//     rank as the edges of the bucket holding it, as the interval does.

// histogramRanks reads the r-th smallest latency of a histogram as the
// edges of the bucket holding it: [lower edge, upper edge], +Inf in the
// +Inf bucket (stats' readers clamp it to the range). With the range
// [0, unboundedLatency], stats.QuantileInterval on it gives exactly
// promHistogram.quantileInterval, unboundedLatency where that is unbounded.
type histogramRanks struct{ h promHistogram }

var _ stats.RankReader = histogramRanks{}

func (r histogramRanks) Count() int64 { return r.h.total() }

func (r histogramRanks) AtRank(k int64) (lo, hi float64, err error) {
	if n := r.h.total(); k < 1 || k > n {
		return 0, 0, fmt.Errorf("rank %d outside [1, %d]", k, n)
	}
	i := r.h.bucketOf(k)
	hi = math.Inf(1)
	if u := r.h.upperEdge(i); u != nil {
		hi = *u
	}
	return r.h.lowerEdge(i), hi, nil
}

// unboundedLatency stands for "no upper bound" in the range of a
// percentile read from histogramRanks: a rank past the sample or in the
// +Inf bucket reads it, and no finite limit is above it.
const unboundedLatency = math.MaxFloat64

// needed estimates, for each absolute objective of the dark version whose
// interval (in intervals, as the snapshot carries it) is inconclusive, the
// further requests that would make it conclusive if the observed values
// held, at the interval's level. hist is nil without a histogram.
func (p promLevels) needed(values map[string]*float64, intervals map[string]*experiment.Interval, hist *promHistogram) []bus.Needed {
	var out []bus.Needed
	for _, o := range p.plan.objectives {
		iv := intervals[o.metric]
		if iv == nil {
			continue // a count (exact), or no interval
		}
		lo, hi := iv.Bounds()
		if outcome, err := stats.Judge(stats.Interval{Lo: lo, Hi: hi}, o.limits); err != nil || outcome != stats.Inconclusive {
			continue
		}
		c := iv.Confidence
		var n int64
		var err error
		switch q, isQuantile := percentileLevels[o.metric]; {
		case o.metric == experiment.MetricErrorRate:
			requests, rok := promCount(values[experiment.MetricRequestCount])
			errs, eok := promCount(values[experiment.MetricErrorCount])
			if !rok || !eok {
				continue // no interval either
			}
			errs = min(errs, requests)
			if p.sequence {
				n, err = stats.ProportionSequenceNeeded(errs, requests, c, o.limits)
			} else {
				n, err = stats.ProportionNeeded(errs, requests, c, stats.ClopperPearson, o.limits)
			}
		case hist == nil:
			continue
		case o.metric == experiment.MetricMeanLatency:
			if inf := hist.inf(); inf > 0 {
				out = append(out, bus.Needed{Objective: o.index, Reason: unboundedMeanReason(*hist, inf)})
				continue
			}
			bins, rg := hist.meanBins()
			n, err = stats.MeanNeeded(bins, rg, c, o.limits)
		case isQuantile:
			rg := stats.Range{Min: 0, Max: unboundedLatency}
			n, err = stats.QuantileNeeded(histogramRanks{*hist}, q, c, rg, o.limits, p.sequence)
			if errors.Is(err, stats.ErrNeverConclusive) {
				out = append(out, bus.Needed{Objective: o.index, Reason: bucketReason(*hist, o.metric, q)})
				continue
			}
		default:
			continue
		}
		out = append(out, neededFrom(o.index, n, err))
	}
	return out
}

// unboundedMeanReason says why no sample size bounds the mean when inf of
// the histogram's requests are in its +Inf bucket.
func unboundedMeanReason(h promHistogram, inf int64) string {
	where := "the histogram has no finite bucket edge"
	if len(h.edges) > 0 {
		where = "above the last bucket edge, " + fmtMs(h.edges[len(h.edges)-1])
	}
	return fmt.Sprintf("%d of %d requests are in the +Inf bucket (%s), so nothing bounds the %s from above: no sample size would bound it", inf, h.total(), where, experiment.MetricMeanLatency)
}

// bucketReason says why a percentile is never conclusive: the bucket that
// holds it holds the limit too (or is the +Inf bucket), and bucket edges
// cannot tell on which side of the limit it lies.
func bucketReason(h promHistogram, metric string, q float64) string {
	n := h.total()
	i := h.bucketOf(max(1, min(n, int64(math.Ceil(q*float64(n))))))
	if u := h.upperEdge(i); u != nil {
		return fmt.Sprintf("not conclusive at any sample size: the observed %s lies in the bucket [%s, %s], which holds the limit, and bucket edges cannot show on which side of it", metric, fmtMs(h.lowerEdge(i)), fmtMs(*u))
	}
	return fmt.Sprintf("not conclusive at any sample size: the observed %s lies in the +Inf bucket (above %s), so nothing bounds it from above", metric, fmtMs(h.lowerEdge(i)))
}

func fmtMs(x float64) string { return strconv.FormatFloat(x, 'g', -1, 64) + " ms" }
