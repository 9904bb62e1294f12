package stats

import (
	"math"

	"gonum.org/v1/gonum/stat/distuv"
)

// Moments are the mergeable sums of a sample: N, Σx and Σx².
type Moments struct {
	N, Sum, SumSq float64
}

func (m Moments) check() error {
	switch {
	case !(m.N >= 0) || math.IsInf(m.N, 0):
		return invalid("count %v", m.N)
	case !finite(m.Sum) || !finite(m.SumSq) || m.SumSq < 0:
		return invalid("sums %v, %v are not finite (sum of squares ≥ 0)", m.Sum, m.SumSq)
	case m.N == 0:
		return ErrNoData
	}
	return nil
}

// StudentT is the textbook t interval, mean ± t·s/√n. It is here as the
// baseline of the calibration tables: on skewed latency it under-covers at
// small n (and misses a share of hanging requests it has not seen yet), so
// darklaunch does not judge with it.
func StudentT(m Moments, confidence float64) (Interval, error) {
	if err := m.check(); err != nil {
		return Interval{}, err
	}
	if err := checkConfidence(confidence); err != nil {
		return Interval{}, err
	}
	mean := m.Sum / m.N
	if m.N < 2 {
		return Interval{Estimate: mean, Lo: math.Inf(-1), Hi: math.Inf(1)}, nil
	}
	v := math.Max(0, (m.SumSq-m.N*mean*mean)/(m.N-1))
	t := distuv.StudentsT{Mu: 0, Sigma: 1, Nu: m.N - 1}.Quantile(1 - (1-confidence)/2)
	h := t * math.Sqrt(v/m.N)
	return Interval{Estimate: mean, Lo: mean - h, Hi: mean + h}, nil
}

// momentMix: the bets of the moment bound, as fractions of the range.
var momentMix = newMix(geometric(0.9, 0.5, 11), uniform(11))

// fanPsi is ψ(θ) = −log(1−θ) − θ of Fan, Grama & Liu ("Exponential
// inequalities for martingales with applications", EJP 2015):
// log(1 + θy) ≥ θy − ψ(θ)y² for every y ≥ −1 and θ in [0, 1).
func fanPsi(t float64) float64 { return -math.Log1p(-t) - t }

// MomentsInterval is the interval of the mean of values in rg from their
// moments alone (N, Σx, Σx²): the betting capital of MeanInterval bounded
// below with Fan's inequality, which needs only Σy and Σy² of the centred
// values y = (x − m)/(Max − Min). It is valid for every distribution on rg
// and every n (and anytime-valid), but wider than MeanInterval, which sees
// the whole distribution: use it where only sums can be merged, as for the
// paired differences.
func MomentsInterval(m Moments, rg Range, confidence float64) (Interval, error) {
	if err := m.check(); err != nil {
		return Interval{}, err
	}
	if err := checkConfidence(confidence); err != nil {
		return Interval{}, err
	}
	if err := rg.check(); err != nil {
		return Interval{}, err
	}
	mean := m.Sum / m.N
	if mean < rg.Min || mean > rg.Max || m.SumSq < m.Sum*m.Sum/m.N*(1-1e-9)-1e-9 {
		return Interval{}, invalid("moments (n %v, sum %v, sum of squares %v) do not fit values in [%v, %v]", m.N, m.Sum, m.SumSq, rg.Min, rg.Max)
	}
	return momentsInterval(m, rg, confidence), nil
}

func momentsInterval(m Moments, rg Range, confidence float64) Interval {
	limit := math.Log(2 / (1 - confidence))
	r := rg.Max - rg.Min
	mean := m.Sum / m.N
	scratch := make([]float64, len(momentMix.theta))
	// logCapital of the bets on the sign s (+1: above c, −1: below c).
	logCapital := func(c, s float64) float64 {
		// Σy = s(Σx − n c)/r, Σy² = (Σx² − 2cΣx + nc²)/r².
		sy := s * (m.Sum - m.N*c) / r
		sy2 := math.Max(0, m.SumSq-2*c*m.Sum+m.N*c*c) / (r * r)
		for j, t := range momentMix.theta {
			scratch[j] = momentMix.logw[j] + t*sy - fanPsi(t)*sy2
		}
		return logSumExp(scratch)
	}
	iv := Interval{Estimate: mean, Lo: rg.Min, Hi: rg.Max}
	if logCapital(rg.Min, 1) >= limit {
		iv.Lo = bisectTol(rg.Min, mean, func(c float64) bool { return logCapital(c, 1) < limit }, false, r)
	}
	if logCapital(rg.Max, -1) >= limit {
		iv.Hi = bisectTol(mean, rg.Max, func(c float64) bool { return logCapital(c, -1) < limit }, true, r)
	}
	return iv
}
