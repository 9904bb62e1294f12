package stats

import (
	"errors"
	"fmt"
	"math"
)

var (
	// ErrNoData marks a statistic asked of an empty sample (no request
	// yet): the value is unavailable, not zero.
	ErrNoData = errors.New("no data")
	// ErrInvalid marks an input that cannot be right: a negative count, a
	// confidence outside (0, 1), NaN.
	ErrInvalid = errors.New("invalid input")
)

// Interval is a point estimate and the confidence interval [Lo, Hi] around
// it.
type Interval struct {
	Estimate float64 `json:"estimate"`
	Lo       float64 `json:"lo"`
	Hi       float64 `json:"hi"`
}

// Contains reports whether x lies in [Lo, Hi].
func (iv Interval) Contains(x float64) bool { return iv.Lo <= x && x <= iv.Hi }

// Width is Hi − Lo.
func (iv Interval) Width() float64 { return iv.Hi - iv.Lo }

// String prints the interval as the report shows it: 0.879 [0.712, 1.051].
func (iv Interval) String() string {
	return fmt.Sprintf("%.3f [%.3f, %.3f]", iv.Estimate, iv.Lo, iv.Hi)
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// checkConfidence refuses a confidence level outside (0, 1).
func checkConfidence(c float64) error {
	if !(c > 0 && c < 1) {
		return invalid("confidence %v outside (0, 1)", c)
	}
	return nil
}

// checkCounts refuses counts that do not hold together; n = 0 is ErrNoData.
func checkCounts(x, n int64) error {
	switch {
	case n < 0:
		return invalid("count %d is negative", n)
	case x < 0 || x > n:
		return invalid("%d events outside [0, count %d]", x, n)
	case n == 0:
		return ErrNoData
	}
	return nil
}

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

// Split returns the confidence at which each of k objectives must be judged
// so that the chance of any wrong conclusion among them is at most
// 1 − confidence (Bonferroni): 1 − (1 − confidence)/k. A FAIL verdict needs
// only one violated objective, so without it three objectives at 95 % could
// give a wrong FAIL in up to 7.5 % of experiments.
func Split(confidence float64, k int) (float64, error) {
	if err := checkConfidence(confidence); err != nil {
		return 0, err
	}
	if k < 1 {
		return 0, invalid("%d objectives: need at least 1", k)
	}
	return 1 - (1-confidence)/float64(k), nil
}
