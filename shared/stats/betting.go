package stats

import (
	"math"
)

// The mean of values bounded in [0, R] (latencies capped at the request
// timeout), by betting: Waudby-Smith & Ramdas, "Estimating means of bounded
// random variables by betting", JRSS-B 86(1), 2024 (arXiv 2010.09686).
//
// For a candidate mean m, a gambler who bets a fixed fraction λ on each
// value holds the capital K(m, λ) = Π_i (1 + λ(X_i − m)). If the true mean is
// m, K is a non-negative martingale starting at 1 for every λ in
// [−1/(R−m), 1/m], and so is the average over a fixed grid of bets (their
// "grid Kelly" and diversified-Kelly capital processes, §5.6 and
// Appendix). By Ville's inequality the capital ever reaches 2/α with
// probability at most α/2: the candidate means it never reaches are a
// confidence set, at every n at once.
//
// With bets that are fixed in advance — rather than WSR's predictable bets,
// which depend on the order of the requests — the capital depends only on
// the multiset of values, so it is computed exactly from the merged latency
// sketch, after any merge of batches in any order. Each bin enters with the
// edge that is worst for the gambler (its lower edge when betting that the
// mean is above m, its upper edge otherwise), so the sketch's 1 % never
// makes the interval too short.
//
// Bets that the mean is above m are λ = θ/m (θ in the grid); below m,
// λ = −θ/(R−m). The second kind is capped by the timeout: a value at the
// timeout costs the gambler a share θ of the capital. This is the honest
// price of a cap far above the typical latency: after n requests none of
// which hung, a share of about log(2/α)/n of hanging requests is still
// possible, and it would add about R·log(2/α)/n to the mean; the upper bound
// pays that, the t interval does not.

// betGrid is the grid of bet fractions θ: geometric from 0.95 down to
// about 1e-3 (the best fixed bet is about (m/σ)·√(2·log(2/α)/n), so this
// grid serves n from tens to millions).
var betGrid = func() []float64 {
	g := make([]float64, 12)
	for i := range g {
		g[i] = 0.95 * math.Pow(0.54, float64(i))
	}
	return g
}()

// fixedGrid returns the bets for an interval at one sample size n: the grid
// without the bets far too small to matter at n (θ below a tenth of the
// best bet for a coefficient of variation of 10), which makes it shorter
// than the sequence's.
func fixedGrid(n float64, logThreshold float64) []float64 {
	floor := 0.01 * math.Sqrt(2*logThreshold/n)
	var g []float64
	for _, t := range betGrid {
		if t >= floor || len(g) < 4 {
			g = append(g, t)
		}
	}
	return g
}

// logCapitalAbove is log of the grid-averaged capital of the bets that the
// mean is above m (0 < m < R).
func (b *binned) logCapitalAbove(m float64, grid []float64, scratch []float64) float64 {
	for j := range grid {
		scratch[j] = 0
	}
	for i, c := range b.c {
		r := b.lo[i]/m - 1 // ≥ −1
		for j, t := range grid {
			scratch[j] += c * math.Log1p(t*r)
		}
	}
	return logMeanExp(scratch[:len(grid)])
}

// logCapitalBelow is the same for the bets that the mean is below m.
func (b *binned) logCapitalBelow(m float64, grid []float64, scratch []float64) float64 {
	for j := range grid {
		scratch[j] = 0
	}
	for i, c := range b.c {
		r := (m - b.hi[i]) / (b.r - m) // ≥ −1
		for j, t := range grid {
			scratch[j] += c * math.Log1p(t*r)
		}
	}
	return logMeanExp(scratch[:len(grid)])
}

// MeanInterval is the interval of the mean of values in rg (latencies in
// [0, timeout]) described by bins, at one look: valid at the given
// confidence for every distribution on rg and every n, with no assumption
// of normality. The estimate is the bins' midpoint mean; where the exact
// sum is known (the collector's SumMs), use Sum/Count instead.
func MeanInterval(bins []Bin, rg Range, confidence float64) (Interval, error) {
	return meanBetting(bins, rg, confidence, false)
}

// MeanSequence is the anytime-valid counterpart of MeanInterval: it covers
// the mean at every n at once, so stopEarly may look after every iteration.
func MeanSequence(bins []Bin, rg Range, confidence float64) (Interval, error) {
	return meanBetting(bins, rg, confidence, true)
}

func meanBetting(bins []Bin, rg Range, confidence float64, sequence bool) (Interval, error) {
	if err := checkConfidence(confidence); err != nil {
		return Interval{}, err
	}
	b, err := newBinned(bins, rg)
	if err != nil {
		return Interval{}, err
	}
	return b.meanInterval(confidence, sequence), nil
}

func (b *binned) grid(confidence float64, sequence bool) []float64 {
	if sequence {
		return betGrid
	}
	return fixedGrid(b.n, math.Log(2/(1-confidence)))
}

func (b *binned) meanInterval(confidence float64, sequence bool) Interval {
	limit := math.Log(2 / (1 - confidence))
	grid := b.grid(confidence, sequence)
	scratch := make([]float64, len(grid))
	mlo, mid, mhi := b.means()
	iv := Interval{Estimate: mid, Lo: 0, Hi: b.r}
	// Lower bound: the capital betting on "above m" falls as m rises and is
	// below 1 at the mean of the lower edges; the bound is where it crosses
	// 2/α.
	if mlo > 0 {
		above := func(m float64) bool { return m > 0 && b.logCapitalAbove(m, grid, scratch) < limit }
		iv.Lo = bisectTol(0, mlo, above, false, b.r)
	}
	if mhi < b.r {
		below := func(m float64) bool { return m < b.r && b.logCapitalBelow(m, grid, scratch) < limit }
		iv.Hi = bisectTol(mhi, b.r, below, true, b.r)
	}
	iv.Estimate += b.min
	iv.Lo += b.min
	iv.Hi += b.min
	return iv
}

// bisectTol is bisect to an absolute tolerance of 1e-7 of the range.
func bisectTol(lo, hi float64, inside func(float64) bool, insideAtLo bool, scale float64) float64 {
	for hi-lo > 1e-7*scale {
		mid := lo + (hi-lo)/2
		if inside(mid) == insideAtLo {
			lo = mid
		} else {
			hi = mid
		}
	}
	if insideAtLo {
		return hi
	}
	return lo
}

// MeanNeeded returns how many further requests would make a mean objective
// conclusive if the observed distribution held (the bins scaled to N
// requests), with the interval (sequence false) or the sequence.
func MeanNeeded(bins []Bin, rg Range, confidence float64, l Limits, sequence bool) (int64, error) {
	if err := checkConfidence(confidence); err != nil {
		return 0, err
	}
	if err := l.check(); err != nil {
		return 0, err
	}
	b, err := newBinned(bins, rg)
	if err != nil {
		return 0, err
	}
	n := int64(math.Ceil(b.n))
	total, err := Needed(n, func(N int64) (bool, error) {
		s := *b
		s.c = make([]float64, len(b.c))
		for i, c := range b.c {
			s.c[i] = c * float64(N) / b.n
		}
		s.n = float64(N)
		o, err := Judge(s.meanInterval(confidence, sequence), l)
		return o != Inconclusive, err
	})
	return total - n, err
}
