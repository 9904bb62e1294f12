package stats

import (
	"math"
	"slices"

	"gonum.org/v1/gonum/stat/distuv"
)

// RankReader gives the values of a sample by rank: the r-th smallest of
// Count() values, as bounds [lo, hi] on it. Exact samples give lo = hi; a
// sketch gives its bin, within its relative accuracy.
type RankReader interface {
	Count() int64
	AtRank(r int64) (lo, hi float64, err error)
}

// Sample is an exact sample, sorted (NewSample sorts a copy).
type Sample []float64

// NewSample returns a sorted copy of xs; NaN is refused.
func NewSample(xs []float64) (Sample, error) {
	s := slices.Clone(xs)
	for i, x := range s {
		if math.IsNaN(x) {
			return nil, invalid("sample value %d is NaN", i)
		}
	}
	slices.Sort(s)
	return Sample(s), nil
}

// Count is the sample size.
func (s Sample) Count() int64 { return int64(len(s)) }

// AtRank returns the r-th smallest value (1-based) twice.
func (s Sample) AtRank(r int64) (float64, float64, error) {
	if r < 1 || r > int64(len(s)) {
		return 0, 0, invalid("rank %d outside [1, %d]", r, len(s))
	}
	return s[r-1], s[r-1], nil
}

// QuantileSketch is what a latency sketch offers (shared/sketch.Sketch
// has these two methods): its count and its q-quantile, the value of the bin
// that holds rank q·(count−1) (0-based, DDSketch's convention).
type QuantileSketch interface {
	Count() float64
	Quantile(q float64) (float64, bool)
}

// SketchRanks reads ranks from a sketch whose values are within relAcc
// (0.01 for shared/sketch) of the true ones: the true r-th value lies in
// [v/(1+relAcc), v/(1−relAcc)] around the value v the sketch returns.
func SketchRanks(s QuantileSketch, relAcc float64) (RankReader, error) {
	if !(relAcc >= 0 && relAcc < 1) {
		return nil, invalid("relative accuracy %v outside [0, 1)", relAcc)
	}
	n := s.Count()
	if !(n >= 0) || n > float64(MaxRequests) || n != math.Trunc(n) {
		return nil, invalid("sketch count %v is not a count", n)
	}
	return sketchRanks{s: s, n: int64(n), acc: relAcc}, nil
}

type sketchRanks struct {
	s   QuantileSketch
	n   int64
	acc float64
}

func (s sketchRanks) Count() int64 { return s.n }

func (s sketchRanks) AtRank(r int64) (float64, float64, error) {
	if r < 1 || r > s.n {
		return 0, 0, invalid("rank %d outside [1, %d]", r, s.n)
	}
	q := 1.0
	if s.n > 1 {
		// Half a rank past r−1 (0-based): the bin whose cumulative count first
		// exceeds it holds the r-th value, whatever the rounding of q·(n−1).
		q = math.Min(1, (float64(r)-0.5)/float64(s.n-1))
	}
	v, ok := s.s.Quantile(q)
	if !ok || math.IsNaN(v) {
		return 0, 0, invalid("sketch has no value at rank %d", r)
	}
	if v <= 0 {
		return v, v, nil
	}
	return v / (1 + s.acc), v / (1 - s.acc), nil
}

// Range is what is known of every value before any is seen: latencies lie
// in [0, the request timeout]. A rank interval that reaches past the sample
// (p99 of 20 requests) ends at the range's edge, which is the honest bound.
type Range struct{ Min, Max float64 }

func (r Range) check() error {
	if !finite(r.Min) || !finite(r.Max) || r.Min >= r.Max {
		return invalid("range [%v, %v] is not a finite interval", r.Min, r.Max)
	}
	return nil
}

// QuantileRanks returns the ranks (1-based) of the distribution-free
// equal-tailed interval for the q-quantile of n values: with B ~ Bin(n, q),
// lo is the largest rank with P(B < lo) ≤ α/2 and hi the smallest with
// P(B ≥ hi) ≤ α/2, so that P(X_(lo) ≤ ξ_q ≤ X_(hi)) ≥ 1 − α for every
// distribution (e.g. David & Nagaraja, "Order Statistics", 3rd ed. 2003,
// on distribution-free confidence intervals for quantiles). lo = 0 means no order statistic
// is low enough (the bound is the range's minimum), hi = n+1 that none is
// high enough.
func QuantileRanks(n int64, q, confidence float64) (lo, hi int64, err error) {
	if err := checkQuantile(n, q, confidence); err != nil {
		return 0, 0, err
	}
	a := (1 - confidence) / 2
	b := distuv.Binomial{N: float64(n), P: q}
	// P(B ≤ k−1) ≤ a: the largest such k, by bisection on the CDF.
	lo = searchLast(0, n, func(k int64) bool { return k == 0 || b.CDF(float64(k-1)) <= a })
	// P(B ≥ k) = 1 − CDF(k−1) ≤ a: the smallest such k.
	hi = searchFirst(1, n+1, func(k int64) bool { return k == n+1 || b.Survival(float64(k-1)) <= a })
	return lo, hi, nil
}

func checkQuantile(n int64, q, confidence float64) error {
	if n < 0 {
		return invalid("count %d is negative", n)
	}
	if !(q > 0 && q < 1) {
		return invalid("quantile %v outside (0, 1)", q)
	}
	if err := checkConfidence(confidence); err != nil {
		return err
	}
	if n == 0 {
		return ErrNoData
	}
	return nil
}

// searchLast returns the largest k in [lo, hi] with ok(k), for ok true up to
// some k and false after (ok(lo) must hold).
func searchLast(lo, hi int64, ok func(int64) bool) int64 {
	for lo < hi {
		mid := lo + (hi-lo+1)/2
		if ok(mid) {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return lo
}

// searchFirst returns the smallest k in [lo, hi] with ok(k), for ok false up
// to some k and true after (ok(hi) must hold).
func searchFirst(lo, hi int64, ok func(int64) bool) int64 {
	for lo < hi {
		mid := lo + (hi-lo)/2
		if ok(mid) {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo
}

// QuantileInterval is the interval of the q-quantile read from r at the
// ranks of QuantileRanks, widened by r's own uncertainty (a sketch's 1 %),
// with the range's edges where a rank falls off the sample. The estimate is
// the value at rank ⌊q·(n−1)⌋+1, the one the sketch reports.
func QuantileInterval(r RankReader, q, confidence float64, rg Range) (Interval, error) {
	if err := rg.check(); err != nil {
		return Interval{}, err
	}
	n := r.Count()
	lo, hi, err := QuantileRanks(n, q, confidence)
	if err != nil {
		return Interval{}, err
	}
	return readRanks(r, q, lo, hi, rg)
}

func readRanks(r RankReader, q float64, lo, hi int64, rg Range) (Interval, error) {
	n := r.Count()
	elo, ehi, err := r.AtRank(int64(math.Floor(q*float64(n-1))) + 1)
	if err != nil {
		return Interval{}, err
	}
	iv := Interval{Estimate: (elo + ehi) / 2, Lo: rg.Min, Hi: rg.Max}
	if lo >= 1 {
		if iv.Lo, _, err = r.AtRank(lo); err != nil {
			return Interval{}, err
		}
	}
	if hi <= n {
		if _, iv.Hi, err = r.AtRank(hi); err != nil {
			return Interval{}, err
		}
	}
	iv.Lo, iv.Hi = clamp(iv.Lo, rg), clamp(iv.Hi, rg)
	iv.Estimate = clamp(iv.Estimate, rg)
	return iv, nil
}

func clamp(x float64, rg Range) float64 { return math.Min(rg.Max, math.Max(rg.Min, x)) }

// quantilePriors: Beta(κq, κ(1−q)) centred on the quantile's own level, at
// several scales κ.
var quantileScales = []float64{4, 32, 256, 2048, 16384, 131072}

// QuantileSequenceRanks is the anytime-valid counterpart of QuantileRanks:
// S = #{X_i ≤ ξ_q} is Bin(t, q) at every t, so the beta-binomial mixture
// martingale of ProportionSequence, with priors centred on q, bounds S at
// every t at once: lo is the smallest s and hi−1 the largest s with
// M_t(s) < 1/α (S ≥ lo puts X_(lo) at or below ξ_q; S ≤ hi−1 puts X_(hi)
// above it). Howard & Ramdas, "Sequential estimation of quantiles with
// applications to A/B-testing and best-arm identification", Bernoulli 28(3),
// 2022, build quantile sequences the same way.
func QuantileSequenceRanks(n int64, q, confidence float64) (lo, hi int64, err error) {
	if err := checkQuantile(n, q, confidence); err != nil {
		return 0, 0, err
	}
	priors := make([][2]float64, len(quantileScales))
	for i, k := range quantileScales {
		priors[i] = [2]float64{k * q, k * (1 - q)}
	}
	t := float64(n)
	limit := -math.Log(1 - confidence)
	// log M(s) is convex in s and smallest near t·q: the accepted s are an
	// interval around it.
	accepted := func(s int64) bool {
		x := float64(s)
		return logMarginal(x, t, priors)-logLik(q, x, t) < limit
	}
	mid := max(0, min(n, int64(math.Round(q*t))))
	if !accepted(mid) { // cannot happen for the mixtures above; stay honest
		return 0, n + 1, nil
	}
	lo = searchFirst(0, mid, accepted)
	hi = searchLast(mid, n, accepted) + 1
	return lo, hi, nil
}

// QuantileSequence is the anytime-valid counterpart of QuantileInterval.
func QuantileSequence(r RankReader, q, confidence float64, rg Range) (Interval, error) {
	if err := rg.check(); err != nil {
		return Interval{}, err
	}
	lo, hi, err := QuantileSequenceRanks(r.Count(), q, confidence)
	if err != nil {
		return Interval{}, err
	}
	return readRanks(r, q, lo, hi, rg)
}

// QuantileNeeded returns how many further requests would make a percentile
// objective conclusive if the observed distribution held: at N requests,
// rank k is read at rank ⌈k·n/N⌉ of the sample (with the interval, or with
// the sequence when sequence is true).
func QuantileNeeded(r RankReader, q, confidence float64, rg Range, l Limits, sequence bool) (int64, error) {
	if err := rg.check(); err != nil {
		return 0, err
	}
	if err := l.check(); err != nil {
		return 0, err
	}
	n := r.Count()
	if err := checkQuantile(n, q, confidence); err != nil {
		return 0, err
	}
	ranks := QuantileRanks
	if sequence {
		ranks = QuantileSequenceRanks
	}
	total, err := Needed(n, func(N int64) (bool, error) {
		lo, hi, err := ranks(N, q, confidence)
		if err != nil {
			return false, err
		}
		iv, err := readRanks(scaledRanks{r: r, n: N}, q, lo, hi, rg)
		if err != nil {
			return false, err
		}
		o, err := Judge(iv, l)
		return o != Inconclusive, err
	})
	return total - n, err
}

// scaledRanks is r seen as a sample of n values of the same distribution.
type scaledRanks struct {
	r RankReader
	n int64
}

func (s scaledRanks) Count() int64 { return s.n }

func (s scaledRanks) AtRank(k int64) (float64, float64, error) {
	m := s.r.Count()
	return s.r.AtRank(max(1, min(m, int64(math.Ceil(float64(k)*float64(m)/float64(s.n))))))
}
