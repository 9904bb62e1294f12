package experiment

import (
	"fmt"
	"math"
	"strconv"
	"time"
)

// ObjectiveResult explains one objective's assessment: the value, the limits
// and why it holds or not. Satisfied is Iter8's assessment: on the value
// alone without spec.criteria.confidence, the same as Outcome ==
// OutcomeSatisfied with it. Outcome, Interval and Needed (darklaunch) say
// what the confidence interval shows, with or without a confidence level set.
type ObjectiveResult struct {
	Metric     string   `json:"metric"`
	Value      *float64 `json:"value"`
	UpperLimit *float64 `json:"upperLimit,omitempty"`
	LowerLimit *float64 `json:"lowerLimit,omitempty"`
	Satisfied  bool     `json:"satisfied"`
	Reason     string   `json:"reason,omitempty"`
	// Reference is the objective's (ReferenceLive for a relative one).
	Reference string `json:"reference,omitempty"`
	// Outcome is OutcomeSatisfied when the whole interval meets the
	// limits, OutcomeViolated when the whole interval misses them, and
	// OutcomeInconclusive otherwise (or without an interval).
	Outcome string `json:"outcome,omitempty"`
	// Interval is the one judged: at stats.Split(confidence, objectives).
	Interval *Interval `json:"interval,omitempty"`
	// Needed, for an inconclusive objective, is how much more it needs.
	Needed *Needed `json:"needed,omitempty"`
}

// Outcomes of an objective judged on its interval.
const (
	OutcomeSatisfied    = "satisfied"
	OutcomeViolated     = "violated"
	OutcomeInconclusive = "inconclusive"
)

// Verdicts: with spec.criteria.confidence, PASS when every objective is
// satisfied, FAIL when any is violated, INCONCLUSIVE otherwise; without it,
// PASS or FAIL on the values, as Iter8 judges.
const (
	VerdictPass         = "PASS"
	VerdictFail         = "FAIL"
	VerdictInconclusive = "INCONCLUSIVE"
)

// Needed is how many further requests of the dark version would make an
// inconclusive objective conclusive if the observed values held, and how
// long that is at the mirrored rate observed so far. Requests is 0 with a
// Reason when no number of requests would do (the value sits on the limit)
// or none could be computed.
type Needed struct {
	Requests int64 `json:"requests,omitempty"`
	// Seconds at Rate, the dark version's requests per second so far.
	Seconds float64 `json:"seconds,omitempty"`
	Rate    float64 `json:"rate,omitempty"`
	Reason  string  `json:"reason,omitempty"`
}

// Interval is a confidence interval around a metric's value. A nil bound is
// unbounded on its side: the data cannot exclude any value there (a 99th
// percentile of 20 requests has no upper bound). Method names how it was
// computed (docs/statistics.md): "clopper-pearson", "betting",
// "order-statistic", "bucket-edges", "fieller", ...
type Interval struct {
	Lo         *float64 `json:"lo"`
	Hi         *float64 `json:"hi"`
	Confidence float64  `json:"confidence"`
	Method     string   `json:"method"`
}

// Valid reports whether iv can be an interval: finite bounds, lo ≤ hi, a
// confidence in (0, 1). A nil interval is not valid.
func (iv *Interval) Valid() bool {
	if iv == nil || !(iv.Confidence > 0 && iv.Confidence < 1) {
		return false
	}
	for _, b := range []*float64{iv.Lo, iv.Hi} {
		if b != nil && (math.IsNaN(*b) || math.IsInf(*b, 0)) {
			return false
		}
	}
	return iv.Lo == nil || iv.Hi == nil || *iv.Lo <= *iv.Hi
}

// Bounds returns the interval's ends, −Inf and +Inf where unbounded.
func (iv *Interval) Bounds() (lo, hi float64) {
	lo, hi = math.Inf(-1), math.Inf(1)
	if iv.Lo != nil {
		lo = *iv.Lo
	}
	if iv.Hi != nil {
		hi = *iv.Hi
	}
	return lo, hi
}

// Confidence returns spec.criteria.confidence, or DefaultConfidence and
// false when it is absent (objectives are then judged on their values).
func (e *Experiment) Confidence() (float64, bool) {
	if c := e.Spec.Criteria; c != nil && c.Confidence != nil {
		return *c.Confidence, true
	}
	return DefaultConfidence, false
}

// Format writes a value and the interval as reports show them:
// 0.879 [0.712, 1.051], with ∞ for an unbounded side; the value alone when
// iv is nil, "unavailable" for no value.
func (iv *Interval) Format(v *float64) string {
	num := func(x float64) string { return strconv.FormatFloat(x, 'f', 3, 64) }
	val := "unavailable"
	if v != nil && !math.IsNaN(*v) && !math.IsInf(*v, 0) {
		val = num(*v)
	}
	if iv == nil {
		return val
	}
	lo, hi := "-∞", "∞"
	if iv.Lo != nil {
		lo = num(*iv.Lo)
	}
	if iv.Hi != nil {
		hi = num(*iv.Hi)
	}
	return fmt.Sprintf("%s [%s, %s]", val, lo, hi)
}

// Percent writes a confidence level with at most 4 significant digits:
// 95 %, 98.33 %, 99.95 %.
func Percent(c float64) string { return strconv.FormatFloat(c*100, 'g', 4, 64) + " %" }

// AboutDuration rounds a wait for people: about 40 more seconds, about 5
// more minutes, about 3 more hours, about 2 more days.
func AboutDuration(seconds float64) string {
	d := time.Duration(seconds * float64(time.Second))
	unit := func(n float64, word string) string {
		k := int64(math.Max(1, math.Round(n)))
		if k == 1 {
			return "about 1 more " + word
		}
		return fmt.Sprintf("about %d more %ss", k, word)
	}
	switch {
	case seconds > 1e9:
		return "more than 30 years"
	case d < 90*time.Second:
		return unit(d.Seconds(), "second")
	case d < 90*time.Minute:
		return unit(d.Minutes(), "minute")
	case d < 36*time.Hour:
		return unit(d.Hours(), "hour")
	default:
		return unit(d.Hours()/24, "day")
	}
}

// Short says what an objective needs in a few words: "429 more requests,
// about 9 more minutes at 0.8 req/s", or the reason there is no number.
func (n *Needed) Short() string {
	switch {
	case n == nil:
		return ""
	case n.Requests == 0:
		return n.Reason
	case n.Seconds > 0:
		return fmt.Sprintf("%d more requests, %s at %s req/s", n.Requests, AboutDuration(n.Seconds), strconv.FormatFloat(n.Rate, 'f', 1, 64))
	}
	return fmt.Sprintf("%d more requests", n.Requests)
}
