package collector

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"strings"

	"github.com/darklaunch/darklaunch/shared/experiment"
	"github.com/darklaunch/darklaunch/shared/stats"
)

// Confidence intervals of the prometheus source (docs/statistics.md, "The
// Prometheus source"). Prometheus gives counts and histogram buckets, no
// latency sample: each interval is as wide as those allow (only the
// extrapolation of increase(), which no answer shows, can make one narrower).
//
//   - error-rate: Clopper-Pearson on the source's own request-count and
//     error-count, rounded to whole requests (increase() extrapolates to the
//     window's edges, so its counts are rarely whole);
//   - percentiles: the order-statistic ranks read as bucket edges, from the
//     optional HistogramMetric definition;
//   - mean-latency: betting on the same buckets as bins.

// HistogramMetric is the reserved name of the optional metric definition
// whose query returns the version's latency histogram over the window: a
// vector of cumulative counts by `le` (bucket upper edge, milliseconds), as
// sum(increase(..._bucket{...}[${elapsedTime}s])) by (le) gives. It is not a
// metric of the snapshot: it only feeds the latency intervals.
const HistogramMetric = "latency-histogram"

// With stopEarly the prometheus source's method names (MethodClopperPearson,
// MethodBucketEdges, MethodBetting) end in promSequenceSuffix.
const promSequenceSuffix = "-sequence"

// leToken finds `le` as a word in a query: a histogram query that does not
// mention it cannot keep the buckets apart.
var leToken = regexp.MustCompile(`\ble\b`)

// validateHistogramDefinition checks the HistogramMetric definition d at
// entry at; the query itself is checked when it is sent (its answer must be
// a vector by le).
func validateHistogramDefinition(at string, d MetricDefinition) []error {
	var errs []error
	if d.Units != "" && d.Units != "milliseconds" {
		errs = append(errs, fmt.Errorf("%s.units: %q, but the bucket edges of %s are in \"milliseconds\": scale the query instead", at, d.Units, HistogramMetric))
	}
	if q := strings.TrimSpace(d.Query); q != "" && !leToken.MatchString(q) {
		errs = append(errs, fmt.Errorf("%s.query: %s must return cumulative counts by bucket, e.g. sum(increase(..._bucket{...}[${elapsedTime}s])) by (le); this query never names le", at, HistogramMetric))
	}
	return errs
}

// splitHistogram takes the HistogramMetric definition out of defs.
func splitHistogram(defs []MetricDefinition) ([]MetricDefinition, *MetricDefinition) {
	var hist *MetricDefinition
	out := make([]MetricDefinition, 0, len(defs))
	for _, d := range defs {
		if d.Name == HistogramMetric {
			hist = &d
			continue
		}
		out = append(out, d)
	}
	return out, hist
}

// promLevels says at which level, and by which kind of method, the
// intervals of one experiment are computed: at spec.criteria.confidence (or
// experiment.DefaultConfidence), except the dark version's metrics that
// absolute objectives judge, which are at stats.Split(confidence,
// objectives), so that the chance of any wrong conclusion among all
// objectives stays at most 1 − confidence. With stopEarly, every interval is
// a confidence sequence (the judge looks after every iteration).
type promLevels struct {
	plan     *intervalPlan // the bus source's levels: one rule for both sources
	sequence bool
}

func newPromLevels(exp *experiment.Experiment) promLevels {
	p := promLevels{plan: newIntervalPlan(exp)}
	p.sequence = p.plan.sequence
	return p
}

// level is the confidence of metric's interval for role (intervalPlan.level:
// a relative objective's latency, judged unpaired here, raises both roles to
// 1 − (1 − split)/2).
func (p promLevels) level(role, metric string) float64 { return p.plan.level(role, metric) }

func (p promLevels) method(m string) string {
	if p.sequence {
		return m + promSequenceSuffix
	}
	return m
}

// promErrorRate is the Clopper-Pearson interval (or, for a sequence, the
// beta-binomial confidence sequence) of the error rate from the source's own
// request-count and error-count, each rounded to whole requests. An error
// count above the request count (two extrapolations apart) is taken as the
// request count.
func promErrorRate(values map[string]*float64, confidence float64, sequence bool) (lo, hi float64, err error) {
	n, nok := promCount(values[experiment.MetricRequestCount])
	x, xok := promCount(values[experiment.MetricErrorCount])
	if !nok || !xok {
		return 0, 0, fmt.Errorf("%w: request-count and error-count are needed", stats.ErrNoData)
	}
	x = min(x, n)
	var iv stats.Interval
	if sequence {
		iv, err = stats.ProportionSequence(x, n, confidence)
	} else {
		iv, err = stats.Proportion(x, n, confidence, stats.ClopperPearson)
	}
	return iv.Lo, iv.Hi, err
}

// promCount is v rounded to a whole count; false when unavailable or not a
// count.
func promCount(v *float64) (int64, bool) {
	if v == nil || !(*v >= 0) || *v > float64(stats.MaxRequests) {
		return 0, false
	}
	return int64(math.Round(*v)), true
}

// intervals computes the intervals of role's values: error-rate from the
// counts, mean-latency and the percentiles from the histogram (none without
// a HistogramMetric definition, or when its query gave no histogram). A
// metric whose value is unavailable, or whose interval cannot be computed
// (no request yet), has none; nil when no metric has one.
func (w *promWindow) intervals(role string, values map[string]*float64, hist histogramResult) map[string]*experiment.Interval {
	out := map[string]*experiment.Interval{}
	p := w.levels
	add := func(metric, method string, lo float64, hi *float64, err error) {
		if err != nil {
			if !errors.Is(err, stats.ErrNoData) {
				w.log.Debug("no interval", "role", role, "metric", metric, "err", err)
			}
			return
		}
		if values[metric] == nil {
			return // no value, no interval around it
		}
		out[metric] = &experiment.Interval{Lo: ptr(lo), Hi: hi, Confidence: p.level(role, metric), Method: p.method(method)}
	}
	lo, hi, err := promErrorRate(values, p.level(role, experiment.MetricErrorRate), p.sequence)
	add(experiment.MetricErrorRate, MethodClopperPearson, lo, ptr(hi), err)
	if hist.err != nil {
		w.log.Debug("no latency intervals", "role", role, "err", hist.err)
	}
	if h := hist.hist; h != nil {
		lo, hi, err := h.meanInterval(p.level(role, experiment.MetricMeanLatency), p.sequence)
		add(experiment.MetricMeanLatency, MethodBetting, lo, hi, err)
		for metric, q := range percentileLevels {
			lo, hi, err := h.quantileInterval(q, p.level(role, metric), p.sequence)
			add(metric, MethodBucketEdges, lo, hi, err)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}
