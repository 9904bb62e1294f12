package stats

import (
	"errors"
	"math"
)

// Outcome of one objective judged on an interval.
type Outcome int

const (
	// Inconclusive: the interval straddles a limit (or is unavailable).
	Inconclusive Outcome = iota
	// Satisfied: the whole interval meets the limits.
	Satisfied
	// Violated: the whole interval misses them.
	Violated
)

func (o Outcome) String() string {
	switch o {
	case Satisfied:
		return "satisfied"
	case Violated:
		return "violated"
	default:
		return "inconclusive"
	}
}

// Limits of an objective, as in Iter8: a value is acceptable when it is at
// most Upper and at least Lower. A nil limit is absent.
type Limits struct {
	Lower *float64
	Upper *float64
}

// Upper returns limits with only an upper limit.
func Upper(x float64) Limits { return Limits{Upper: &x} }

// Lower returns limits with only a lower limit.
func Lower(x float64) Limits { return Limits{Lower: &x} }

func (l Limits) check() error {
	switch {
	case l.Lower == nil && l.Upper == nil:
		return invalid("an objective needs an upper or a lower limit")
	case l.Lower != nil && math.IsNaN(*l.Lower), l.Upper != nil && math.IsNaN(*l.Upper):
		return invalid("limit is NaN")
	case l.Lower != nil && l.Upper != nil && *l.Lower > *l.Upper:
		return invalid("lower limit %v above upper limit %v", *l.Lower, *l.Upper)
	}
	return nil
}

// Judge says what an interval shows about the limits: Satisfied when all of
// [Lo, Hi] is within them, Violated when all of it is beyond one of them
// (above Upper or below Lower), Inconclusive otherwise. An interval with a
// NaN bound is Inconclusive; so are limits that cannot be right (with an
// error).
func Judge(iv Interval, l Limits) (Outcome, error) {
	if err := l.check(); err != nil {
		return Inconclusive, err
	}
	if math.IsNaN(iv.Lo) || math.IsNaN(iv.Hi) || iv.Lo > iv.Hi {
		return Inconclusive, invalid("interval [%v, %v]", iv.Lo, iv.Hi)
	}
	if (l.Upper != nil && iv.Lo > *l.Upper) || (l.Lower != nil && iv.Hi < *l.Lower) {
		return Violated, nil
	}
	if (l.Upper == nil || iv.Hi <= *l.Upper) && (l.Lower == nil || iv.Lo >= *l.Lower) {
		return Satisfied, nil
	}
	return Inconclusive, nil
}

// Verdict combines the outcomes of all objectives: Violated when any is
// violated (FAIL), Satisfied when all are satisfied (PASS), Inconclusive
// otherwise (and for no objective at all).
func Verdict(outcomes ...Outcome) Outcome {
	if len(outcomes) == 0 {
		return Inconclusive
	}
	all := true
	for _, o := range outcomes {
		if o == Violated {
			return Violated
		}
		all = all && o == Satisfied
	}
	if all {
		return Satisfied
	}
	return Inconclusive
}

// MaxRequests bounds the search of Needed: beyond it, an objective is
// reported as never conclusive at the observed value.
const MaxRequests int64 = 1 << 40

// ErrNeverConclusive says that no number of further requests up to
// MaxRequests would make the objective conclusive if the observed value
// held: the value sits on the limit.
var ErrNeverConclusive = errors.New("not conclusive at any sample size: the observed value is on the limit")

// Needed returns the smallest total sample size N ≥ n at which conclusive(N)
// is true, by doubling then bisection (the interval methods shrink with N,
// so conclusiveness is monotone in N). conclusive(N) judges the objective on
// the interval the observed value would give at N requests. The further
// requests needed are N − n; N = n when it is already conclusive.
func Needed(n int64, conclusive func(N int64) (bool, error)) (int64, error) {
	if n < 1 {
		n = 1
	}
	ok, err := conclusive(n)
	if err != nil || ok {
		return n, err
	}
	lo, hi := n, n
	for {
		if hi >= MaxRequests {
			return 0, ErrNeverConclusive
		}
		lo, hi = hi, min(2*hi, MaxRequests)
		if ok, err = conclusive(hi); err != nil {
			return 0, err
		} else if ok {
			break
		}
	}
	for hi-lo > 1 && hi-lo > lo/1000 { // 0.1 % is precise enough for "about N more"
		mid := lo + (hi-lo)/2
		if ok, err = conclusive(mid); err != nil {
			return 0, err
		} else if ok {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi, nil
}
