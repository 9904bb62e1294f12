package collector

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/darklaunch/darklaunch/shared/stats"
)

// The latency histogram of the prometheus source (HistogramMetric) and the
// latency intervals read from it.

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
	return ptr(h.edges[i])
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
	inf := h.inf()
	if len(h.edges) == 0 || h.edges[len(h.edges)-1] == 0 {
		// Only the +Inf bucket (nothing is known but that latencies are at
		// least 0), or every finite edge at 0.
		if inf > 0 {
			return 0, nil, nil
		}
		return 0, ptr(0.0), nil // every latency is 0
	}
	bins, rg := h.meanBins()
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
	return iv.Lo, ptr(iv.Hi), nil
}

// inf is the number of requests in the +Inf bucket, above the last finite
// edge (all of them without one).
func (h promHistogram) inf() int64 {
	if len(h.edges) == 0 {
		return h.total()
	}
	return h.total() - h.cum[len(h.edges)-1]
}

// meanBins are the buckets as bins, each from its lower to its upper edge,
// and the range of meanInterval: [0, last finite edge], or twice that edge
// (the +Inf bucket's upper end) when the +Inf bucket has counts. The last
// finite edge must be above 0.
func (h promHistogram) meanBins() ([]stats.Bin, stats.Range) {
	rg := stats.Range{Min: 0, Max: h.edges[len(h.edges)-1]}
	if h.inf() > 0 {
		rg.Max *= 2
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
	return bins, rg
}

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
