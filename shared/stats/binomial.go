package stats

import (
	"math"

	"gonum.org/v1/gonum/stat/distuv"
)

// ProportionMethod picks the interval for a binomial proportion.
type ProportionMethod int

const (
	// ClopperPearson is the exact interval (Clopper & Pearson, Biometrika
	// 1934): the set of p whose binomial test does not reject at α/2 on
	// either side, from the beta quantiles. It never covers less than its
	// level, whatever p and n; it is darklaunch's default for error rates.
	ClopperPearson ProportionMethod = iota
	// Wilson is the score interval (Wilson, JASA 1927): shorter, and close to
	// its level on average, but below it near 0 at small n (at p = 0.5 % and
	// n = 20 it covers only about 90 % of the time at 95 %).
	Wilson
)

func (m ProportionMethod) String() string {
	if m == Wilson {
		return "wilson"
	}
	return "clopper-pearson"
}

// Proportion is the two-sided interval at the given confidence for the
// share of events (errors) among n trials (requests), by method m.
func Proportion(events, n int64, confidence float64, m ProportionMethod) (Interval, error) {
	if err := checkCounts(events, n); err != nil {
		return Interval{}, err
	}
	if err := checkConfidence(confidence); err != nil {
		return Interval{}, err
	}
	return proportion(float64(events), float64(n), confidence, m), nil
}

// proportion takes real counts, so that Needed can scale an observed rate to
// any n. It assumes 0 ≤ x ≤ n, n > 0.
func proportion(x, n, confidence float64, m ProportionMethod) Interval {
	if m == Wilson {
		return wilson(x, n, confidence)
	}
	return clopperPearson(x, n, confidence)
}

func clopperPearson(x, n, confidence float64) Interval {
	a := (1 - confidence) / 2
	iv := Interval{Estimate: x / n, Lo: 0, Hi: 1}
	if x > 0 {
		iv.Lo = distuv.Beta{Alpha: x, Beta: n - x + 1}.Quantile(a)
	}
	if x < n {
		iv.Hi = distuv.Beta{Alpha: x + 1, Beta: n - x}.Quantile(1 - a)
	}
	return iv
}

func wilson(x, n, confidence float64) Interval {
	z := distuv.UnitNormal.Quantile(1 - (1-confidence)/2)
	p := x / n
	z2 := z * z
	centre := (p + z2/(2*n)) / (1 + z2/n)
	half := z / (1 + z2/n) * math.Sqrt(p*(1-p)/n+z2/(4*n*n))
	iv := Interval{Estimate: p, Lo: math.Max(0, centre-half), Hi: math.Min(1, centre+half)}
	if x == 0 { // exactly, not by a rounding error above 0
		iv.Lo = 0
	}
	if x == n {
		iv.Hi = 1
	}
	return iv
}

// ProportionNeeded returns how many further requests would make an error-
// rate objective conclusive if the observed rate held (0 errors stay 0): the
// search on n of Needed, with the same interval method. 0 errors in 48
// requests, upper limit 0.01 at 95 %: about 320 more (367 in all).
func ProportionNeeded(events, n int64, confidence float64, m ProportionMethod, l Limits) (int64, error) {
	return proportionNeeded(events, n, confidence, l, func(x, n float64) Interval { return proportion(x, n, confidence, m) })
}

func proportionNeeded(events, n int64, confidence float64, l Limits, interval func(x, n float64) Interval) (int64, error) {
	if err := checkCounts(events, n); err != nil && err != ErrNoData {
		return 0, err
	}
	if err := checkConfidence(confidence); err != nil {
		return 0, err
	}
	if err := l.check(); err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, ErrNoData // no observed rate to extrapolate
	}
	p := float64(events) / float64(n)
	total, err := Needed(n, func(N int64) (bool, error) {
		o, err := Judge(interval(p*float64(N), float64(N)), l)
		return o != Inconclusive, err
	})
	return total - n, err
}
