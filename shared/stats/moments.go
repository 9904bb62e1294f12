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
