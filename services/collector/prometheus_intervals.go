package collector

import (
	"context"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
	"github.com/darklaunch/darklaunch/shared/stats"
)

// Confidence intervals of the prometheus source (docs/statistics.md, "The
// Prometheus source"). Prometheus gives counts and histogram buckets, no
// latency sample: each interval is as wide as those allow, never narrower.
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

// Interval methods of the prometheus source; with stopEarly the method
// names end in promSequenceSuffix.
const (
	promMethodClopperPearson = "clopper-pearson"
	promMethodBucketEdges    = "bucket-edges"
	promMethodBetting        = "betting"
	promSequenceSuffix       = "-sequence"
)

// promPercentiles are the percentile metrics and their levels.
var promPercentiles = map[string]float64{
	experiment.MetricP50Latency: 0.50,
	experiment.MetricP95Latency: 0.95,
	experiment.MetricP99Latency: 0.99,
}

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
	confidence float64
	split      float64
	judged     map[string]bool
	sequence   bool
}

func newPromLevels(exp *experiment.Experiment) promLevels {
	p := promLevels{confidence: experiment.DefaultConfidence, judged: map[string]bool{}}
	c := exp.Spec.Criteria
	if c != nil && c.Confidence != nil && *c.Confidence > 0 && *c.Confidence < 1 {
		p.confidence = *c.Confidence
	}
	p.split = p.confidence
	if c == nil {
		return p
	}
	p.sequence = c.StopEarly
	if s, err := stats.Split(p.confidence, len(c.Objectives)); err == nil {
		p.split = s
	}
	for _, o := range c.Objectives {
		// A relative objective (reference: live) is judged on the two
		// versions together; it still counts in the split above.
		if info, ok := experiment.LookupMetric(o.Metric); ok && o.Reference == "" {
			p.judged[info.Name] = true
		}
	}
	return p
}

// level is the confidence of metric's interval for role.
func (p promLevels) level(role, metric string) float64 {
	if role == bus.RoleDark && p.judged[metric] {
		return p.split
	}
	return p.confidence
}

func (p promLevels) method(m string) string {
	if p.sequence {
		return m + promSequenceSuffix
	}
	return m
}

// promHistogram is a latency histogram over the window: finite bucket upper
// edges (ms, ascending, the first at least 0) and the cumulative counts at
// each, then the total (the +Inf bucket), rounded to whole requests.
type promHistogram struct {
	edges []float64
	cum   []int64 // len(edges)+1; cum[len(edges)] is the total
}

// total is the number of requests in the histogram.
func (h promHistogram) total() int64 { return h.cum[len(h.cum)-1] }

// bucketOf is the bucket holding the r-th smallest latency (1 ≤ r ≤ total).
func (h promHistogram) bucketOf(r int64) int {
	i, _ := slices.BinarySearch(h.cum, r)
	return i
}

// lowerEdge is bucket i's lower edge: the previous edge, 0 for the first
// (latencies are at least 0).
func (h promHistogram) lowerEdge(i int) float64 {
	if i == 0 {
		return 0
	}
	return h.edges[i-1]
}

// upperEdge is bucket i's upper edge, nil for the +Inf bucket.
func (h promHistogram) upperEdge(i int) *float64 {
	if i >= len(h.edges) {
		return nil
	}
	return promPtr(h.edges[i])
}

// parseHistogram reads a histogram query's answer, or says why it is none.
func parseHistogram(v model.Value) (promHistogram, error) {
	vec, ok := v.(model.Vector)
	if !ok {
		if v == nil {
			return promHistogram{}, errors.New("empty result")
		}
		return promHistogram{}, fmt.Errorf("a %s where a vector of cumulative counts by le is wanted", v.Type())
	}
	if len(vec) == 0 {
		return promHistogram{}, errors.New("empty result (no series matched)")
	}
	type bucket struct{ le, count float64 }
	buckets := make([]bucket, 0, len(vec))
	seen := map[float64]string{}
	for _, s := range vec {
		raw, ok := s.Metric[model.BucketLabel]
		if !ok {
			return promHistogram{}, fmt.Errorf("series %s has no le label: aggregate by le, e.g. sum(...) by (le)", s.Metric)
		}
		le, err := strconv.ParseFloat(string(raw), 64)
		switch {
		case err != nil || math.IsNaN(le):
			return promHistogram{}, fmt.Errorf("series %s: le=%q is not a number", s.Metric, raw)
		case le < 0:
			return promHistogram{}, fmt.Errorf("series %s: bucket edge le=%q is negative, but latencies are at least 0", s.Metric, raw)
		}
		if other, dup := seen[le]; dup {
			return promHistogram{}, fmt.Errorf("series %s and %s have the same le: aggregate by le only, e.g. sum(...) by (le)", other, s.Metric)
		}
		seen[le] = s.Metric.String()
		c := float64(s.Value)
		if !(c >= 0) || math.IsInf(c, 0) || c > float64(stats.MaxRequests) {
			return promHistogram{}, fmt.Errorf("series %s: count %v is not a count", s.Metric, c)
		}
		buckets = append(buckets, bucket{le, c})
	}
	slices.SortFunc(buckets, func(a, b bucket) int { return compareFloat(a.le, b.le) })
	if last := buckets[len(buckets)-1]; !math.IsInf(last.le, 1) {
		return promHistogram{}, fmt.Errorf("no le=\"+Inf\" bucket (the total): the query must keep every bucket")
	}
	h := promHistogram{cum: make([]int64, len(buckets))}
	running := 0.0
	for i, b := range buckets {
		// increase() extrapolates each bucket's series on its own, which can
		// make the cumulative counts dip; they cannot, so take the running
		// maximum (histogram_quantile does the same), then whole requests.
		running = math.Max(running, b.count)
		h.cum[i] = int64(math.Round(running))
		if !math.IsInf(b.le, 1) {
			h.edges = append(h.edges, b.le)
		}
	}
	return h, nil
}

func compareFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// quantileInterval is the interval of the q-quantile: the order-statistic
// ranks of stats.QuantileRanks (or, for a sequence, QuantileSequenceRanks)
// give [lower edge of the bucket holding the low rank, upper edge of the
// bucket holding the high rank]. A low rank of 0 gives 0; a high rank past
// the sample, or in the +Inf bucket, an unbounded upper side.
func (h promHistogram) quantileInterval(q, confidence float64, sequence bool) (lo float64, hi *float64, err error) {
	ranks := stats.QuantileRanks
	if sequence {
		ranks = stats.QuantileSequenceRanks
	}
	n := h.total()
	rlo, rhi, err := ranks(n, q, confidence)
	if err != nil {
		return 0, nil, err
	}
	if rlo >= 1 {
		lo = h.lowerEdge(h.bucketOf(rlo))
	}
	if rhi <= n {
		hi = h.upperEdge(h.bucketOf(rhi))
	}
	return lo, hi, nil
}

// meanInterval is the betting interval of the mean latency on the buckets as
// bins (each from its lower to its upper edge). With the +Inf bucket empty,
// the range is [0, last finite edge]: the latencies are taken to lie below
// it, as the histogram's own layout says. With counts in the +Inf bucket
// nothing bounds the mean from above (nil), but the lower side still holds:
// the bets that the mean is above m use each bin's lower edge only (the
// +Inf bucket's is the last finite edge) and are valid for any latency at
// least 0, so a stand-in range twice the last edge, which clips no bin,
// gives the same lower bound as any larger one.
func (h promHistogram) meanInterval(confidence float64, sequence bool) (lo float64, hi *float64, err error) {
	if h.total() == 0 {
		return 0, nil, stats.ErrNoData
	}
	if len(h.edges) == 0 {
		// Only the +Inf bucket: nothing is known but that latencies are at
		// least 0.
		return 0, nil, nil
	}
	top := h.edges[len(h.edges)-1]
	inf := h.total() - h.cum[len(h.edges)-1] // requests above the last finite edge
	if top == 0 && inf > 0 {
		return 0, nil, nil
	}
	rg := stats.Range{Min: 0, Max: top}
	if inf > 0 {
		rg.Max = 2 * top
	} else if top == 0 {
		return 0, promPtr(0), nil // every latency is 0
	}
	bins := make([]stats.Bin, 0, len(h.cum))
	prev := int64(0)
	for i, c := range h.cum {
		if d := c - prev; d > 0 {
			b := stats.Bin{Lo: h.lowerEdge(i), Hi: rg.Max, Count: float64(d)}
			if i < len(h.edges) {
				b.Hi = h.edges[i]
			}
			bins = append(bins, b)
		}
		prev = c
	}
	mean := stats.MeanInterval
	if sequence {
		mean = stats.MeanSequence
	}
	iv, err := mean(bins, rg, confidence)
	if err != nil {
		return 0, nil, err
	}
	if inf > 0 {
		return iv.Lo, nil, nil
	}
	return iv.Lo, promPtr(iv.Hi), nil
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

func promPtr(x float64) *float64 { return &x }

// histogramResult is the outcome of the histogram query: the histogram, or
// why there is none.
type histogramResult struct {
	hist *promHistogram
	err  error
}

// queryHistogram expands and runs the histogram definition's query at end.
func (w *promWindow) queryHistogram(ctx context.Context, vars queryVars, end time.Time) histogramResult {
	query, err := expandQuery(w.src.histogram.Query, vars)
	if err != nil {
		return histogramResult{err: err}
	}
	qctx, cancel := context.WithTimeout(ctx, w.src.timeout)
	defer cancel()
	val, _, _, err := w.src.api.Query(qctx, query, end, v1.WithTimeout(w.src.timeout))
	if err != nil {
		return histogramResult{err: fmt.Errorf("query failed: %w; query: %s", err, query)}
	}
	h, err := parseHistogram(val)
	if err != nil {
		return histogramResult{err: fmt.Errorf("%s: %w; query: %s", HistogramMetric, err, query)}
	}
	return histogramResult{hist: &h}
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
		out[metric] = &experiment.Interval{Lo: promPtr(lo), Hi: hi, Confidence: p.level(role, metric), Method: p.method(method)}
	}
	lo, hi, err := promErrorRate(values, p.level(role, experiment.MetricErrorRate), p.sequence)
	add(experiment.MetricErrorRate, promMethodClopperPearson, lo, promPtr(hi), err)
	if hist.err != nil {
		w.log.Debug("no latency intervals", "role", role, "err", hist.err)
	}
	if h := hist.hist; h != nil {
		lo, hi, err := h.meanInterval(p.level(role, experiment.MetricMeanLatency), p.sequence)
		add(experiment.MetricMeanLatency, promMethodBetting, lo, hi, err)
		for metric, q := range promPercentiles {
			lo, hi, err := h.quantileInterval(q, p.level(role, metric), p.sequence)
			add(metric, promMethodBucketEdges, lo, hi, err)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}
