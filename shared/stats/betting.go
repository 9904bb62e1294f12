package stats

import (
	"math"

	"gonum.org/v1/gonum/floats"
)

// The mean of values bounded in [0, R] (latencies capped at the request
// timeout), by betting: Waudby-Smith & Ramdas, "Estimating means of bounded
// random variables by betting", JRSS-B 86(1), 2024 (arXiv 2010.09686).
//
// For a candidate mean m, a gambler who bets a fixed fraction λ on each
// value holds the capital K(m, λ) = Π_i (1 + λ(X_i − m)). If the true mean is
// m, K is a non-negative martingale starting at 1 for every λ in
// [−1/(R−m), 1/m], and so is the average over a fixed grid of bets (their
// "grid Kelly" capital process). By Ville's inequality the capital ever reaches 2/α with
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

// betMix is a mixture of fixed bets: fractions θ_j with weights w_j (Σ w = 1),
// fixed before any data is seen.
type betMix struct {
	theta []float64
	logw  []float64
}

func newMix(theta, w []float64) betMix {
	m := betMix{theta: theta, logw: make([]float64, len(w))}
	s := 0.0
	for _, x := range w {
		s += x
	}
	for i, x := range w {
		m.logw[i] = math.Log(x / s)
	}
	return m
}

// geometric returns k fractions from top down by the ratio r.
func geometric(top, r float64, k int) []float64 {
	g := make([]float64, k)
	for i := range g {
		g[i] = top * math.Pow(r, float64(i))
	}
	return g
}

func uniform(k int) []float64 {
	w := make([]float64, k)
	for i := range w {
		w[i] = 1
	}
	return w
}

var (
	// aboveMix: the bets that the mean is above m, λ = θ/m. The best fixed
	// bet is about (m/σ)·√(2·log(2/α)/n): from 1 at tens of requests down to
	// 1e-3 at millions, so the grid spans that range, evenly weighted.
	aboveMix = newMix(geometric(0.95, 0.54, 12), uniform(12))
	// belowMix: the bets that the mean is below m, λ = −θ/(R−m). Against a
	// cap R far above the latencies the best bet is the largest (it is
	// (m − mean)(R − m)/σ², capped at 1, for all but millions of requests),
	// so most of the weight is there; the smaller bets keep the capital
	// growing when some requests do reach the cap.
	belowMix = newMix(
		[]float64{0.99, 0.9, 0.7, 0.5, 0.3, 0.15, 0.07, 0.03, 0.01, 0.003},
		[]float64{8, 4, 2, 1, 1, 1, 1, 1, 1, 1})
)

// logCapitalAbove is log of the mixture's capital betting that the mean is
// above m (0 < m < R).
func (b *binned) logCapitalAbove(m float64, mix betMix, scratch []float64) float64 {
	r := scratch[:len(b.c)]
	for i, lo := range b.lo {
		r[i] = lo/m - 1 // ≥ −1
	}
	return b.logCapital(r, mix)
}

// logCapitalBelow is the same for the bets that the mean is below m.
func (b *binned) logCapitalBelow(m float64, mix betMix, scratch []float64) float64 {
	r := scratch[:len(b.c)]
	for i, hi := range b.hi {
		r[i] = (m - hi) / (b.r - m) // ≥ −1
	}
	return b.logCapital(r, mix)
}

// logCapital is log Σ_j w_j Π_i (1 + θ_j r_i)^c_i.
func (b *binned) logCapital(r []float64, mix betMix) float64 {
	var logs [16]float64
	for j, t := range mix.theta {
		s := mix.logw[j]
		for i, c := range b.c {
			s += c * math.Log1p(t*r[i])
		}
		logs[j] = s
	}
	return logSumExp(logs[:len(mix.theta)])
}

// rejectsAbove reports whether the capital betting that the mean is above m
// reaches e^limit, i.e. whether the lower bound is above m. Since
// log(1 + θr) ≤ θr, the capital is at most Σ_j w_j exp(θ_j·Σ c_i r_i): when
// even that stays below the threshold, the bins need not be read (most looks
// of a run are far from a conclusion).
func (b *binned) rejectsAbove(m, limit float64, scratch []float64) bool {
	sum := 0.0
	for i, lo := range b.lo {
		sum += b.c[i] * (lo/m - 1)
	}
	if b.firstOrder(sum, aboveMix) < limit {
		return false
	}
	return b.logCapitalAbove(m, aboveMix, scratch) >= limit
}

// rejectsBelow is the same for the upper bound being below m.
func (b *binned) rejectsBelow(m, limit float64, scratch []float64) bool {
	sum := 0.0
	for i, hi := range b.hi {
		sum += b.c[i] * (m - hi) / (b.r - m)
	}
	if b.firstOrder(sum, belowMix) < limit {
		return false
	}
	return b.logCapitalBelow(m, belowMix, scratch) >= limit
}

// firstOrder is log Σ_j w_j exp(θ_j·sum), a bound on the log capital.
func (b *binned) firstOrder(sum float64, mix betMix) float64 {
	var logs [16]float64
	for j, t := range mix.theta {
		logs[j] = mix.logw[j] + t*sum
	}
	return logSumExp(logs[:len(mix.theta)])
}

// logSumExp is gonum's, with log 0 = −Inf for no terms instead of a
// panic.
func logSumExp(v []float64) float64 {
	if len(v) == 0 {
		return math.Inf(-1)
	}
	return floats.LogSumExp(v)
}

// MeanInterval is the interval of the mean of values in rg (latencies in
// [0, timeout]) described by bins, at one look: valid at the given
// confidence for every distribution on rg and every n, with no assumption
// of normality. The estimate is the bins' midpoint mean; where the exact
// sum is known (the collector's SumMs), use Sum/Count instead.
func MeanInterval(bins []Bin, rg Range, confidence float64) (Interval, error) {
	return meanBetting(bins, rg, confidence)
}

// MeanSequence is the anytime-valid counterpart of MeanInterval, and the
// same interval: the betting interval is already a confidence sequence (its
// bets are fixed in advance, so Ville's inequality holds at every n at
// once). A tighter interval for one fixed n would need the variance in
// advance; the measured cost of this one against the best fixed bet is in
// docs/statistics.md.
func MeanSequence(bins []Bin, rg Range, confidence float64) (Interval, error) {
	return MeanInterval(bins, rg, confidence)
}

func meanBetting(bins []Bin, rg Range, confidence float64) (Interval, error) {
	if err := checkConfidence(confidence); err != nil {
		return Interval{}, err
	}
	b, err := newBinned(bins, rg)
	if err != nil {
		return Interval{}, err
	}
	return b.meanInterval(confidence), nil
}

// MeanOutcome judges a mean objective directly, with one look at the
// capital at each limit instead of the search for the interval's ends: the
// same outcome as Judge(MeanInterval(...)), since the capital is monotone in
// the candidate mean. For a limit on the edge of the range nothing can be
// shown beyond it.
func MeanOutcome(bins []Bin, rg Range, confidence float64, l Limits) (Outcome, error) {
	if err := checkConfidence(confidence); err != nil {
		return Inconclusive, err
	}
	if err := l.check(); err != nil {
		return Inconclusive, err
	}
	b, err := newBinned(bins, rg)
	if err != nil {
		return Inconclusive, err
	}
	return b.outcome(confidence, l), nil
}

func (b *binned) outcome(confidence float64, l Limits) Outcome {
	limit := math.Log(2 / (1 - confidence))
	scratch := make([]float64, len(b.c))
	mlo, _, mhi := b.means()
	// shown above m: the lower bound is above m.
	above := func(m float64) bool {
		return m < mlo && (m <= 0 || b.rejectsAbove(m, limit, scratch))
	}
	// shown below m: the upper bound is below m.
	below := func(m float64) bool {
		return m > mhi && (m >= b.r || b.rejectsBelow(m, limit, scratch))
	}
	var up, lo float64
	if l.Upper != nil {
		up = *l.Upper - b.min
	}
	if l.Lower != nil {
		lo = *l.Lower - b.min
	}
	switch {
	case l.Upper != nil && up < b.r && above(up), l.Lower != nil && lo > 0 && below(lo):
		return Violated
	case (l.Upper == nil || up >= b.r || below(up)) && (l.Lower == nil || lo <= 0 || above(lo)):
		return Satisfied
	}
	return Inconclusive
}

func (b *binned) meanInterval(confidence float64) Interval {
	limit := math.Log(2 / (1 - confidence))
	scratch := make([]float64, len(b.c))
	mlo, mid, mhi := b.means()
	iv := Interval{Estimate: mid, Lo: 0, Hi: b.r}
	// Lower bound: the capital betting on "above m" falls as m rises and is
	// below 1 at the mean of the lower edges; the bound is where it crosses
	// 2/α.
	if mlo > 0 {
		above := func(m float64) bool { return m > 0 && !b.rejectsAbove(m, limit, scratch) }
		iv.Lo = bisectTol(0, mlo, above, false, b.r)
	}
	if mhi < b.r {
		below := func(m float64) bool { return m < b.r && !b.rejectsBelow(m, limit, scratch) }
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
// requests); it holds for MeanInterval and MeanSequence alike.
func MeanNeeded(bins []Bin, rg Range, confidence float64, l Limits) (int64, error) {
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
		return s.outcome(confidence, l) != Inconclusive, nil
	})
	return total - n, err
}
