package experiment

import "math"

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
