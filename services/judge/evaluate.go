package judge

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
	"github.com/darklaunch/darklaunch/shared/stats"
)

// Evaluate judges one version's metric values against the objectives, in
// their order, with Iter8's semantics: an objective is satisfied when its
// value is available and neither above upperLimit nor below lowerLimit (a
// value equal to a limit satisfies it). A value is unavailable when it is
// missing or nil; errs (metric → why it could not be measured) explains it
// when it can. Values are finite: the snapshot they come from is in its
// canonical form (bus.DecodeEvent, Snapshot.Canonicalize), where a NaN or
// an infinity is nil with "NaN" or "+Inf" in errs. Every result says why,
// with the value and the limit, so a verdict can be explained.
func Evaluate(objectives []experiment.Objective, values map[string]*float64, errs map[string]string) []experiment.ObjectiveResult {
	results := make([]experiment.ObjectiveResult, len(objectives))
	for i, o := range objectives {
		r := experiment.ObjectiveResult{Metric: o.Metric}
		var upper, lower float64
		if o.UpperLimit != nil {
			upper = o.UpperLimit.Float64()
			r.UpperLimit = &upper
		}
		if o.LowerLimit != nil {
			lower = o.LowerLimit.Float64()
			r.LowerLimit = &lower
		}
		v, why := lookup(values, errs, o.Metric)
		switch {
		case why != "":
			r.Reason = "unavailable: " + why
		case r.UpperLimit != nil && v > upper:
			a, b := formatPair(v, upper)
			r.Reason = fmt.Sprintf("value %s is above upperLimit %s", a, b)
		case r.LowerLimit != nil && v < lower:
			a, b := formatPair(v, lower)
			r.Reason = fmt.Sprintf("value %s is below lowerLimit %s", a, b)
		default:
			r.Satisfied = true
			switch {
			case r.UpperLimit != nil && r.LowerLimit != nil:
				a, b := formatPair(v, lower)
				_, c := formatPair(v, upper)
				r.Reason = fmt.Sprintf("value %s is between lowerLimit %s and upperLimit %s", a, b, c)
			case r.UpperLimit != nil:
				a, b := formatPair(v, upper)
				r.Reason = fmt.Sprintf("value %s is at most upperLimit %s", a, b)
			default:
				a, b := formatPair(v, lower)
				r.Reason = fmt.Sprintf("value %s is at least lowerLimit %s", a, b)
			}
		}
		if why == "" {
			r.Value = &v
		}
		results[i] = r
	}
	return results
}

// lookup finds the value of metric, or says why it is unavailable. Iter8
// v2alpha2 prefixes metric names with their definition's namespace
// ("iter8-knative/mean-latency"); values are measured under the plain name.
func lookup(values map[string]*float64, errs map[string]string, metric string) (float64, string) {
	name := metric
	if info, ok := experiment.LookupMetric(metric); ok {
		name = info.Name
	}
	p, present := values[metric]
	if !present {
		p, present = values[name]
	}
	switch {
	case p != nil && math.IsNaN(*p):
		// The bus decoder already makes such values unavailable
		// (DecodeEvent); Evaluate does not rely on it: a NaN compares false
		// with every limit and would pass.
		return 0, "NaN"
	case p != nil && math.IsInf(*p, 0):
		return 0, strconv.FormatFloat(*p, 'f', -1, 64)
	case p != nil:
		return *p, ""
	}
	if why := errs[metric]; why != "" {
		return 0, why
	}
	if why := errs[name]; why != "" {
		return 0, why
	}
	if n, ok := values[experiment.MetricRequestCount]; ok && n != nil && *n == 0 {
		return 0, "no requests"
	}
	if !present {
		return 0, "not measured"
	}
	return 0, "no value"
}

// formatPair writes a value and a limit with iter8ctl's 3 decimals, or with
// as many more as it takes to show that they differ (0.0104 is above 0.01,
// which "0.010 is above 0.010" would not explain).
func formatPair(v, limit float64) (string, string) {
	for prec := 3; ; prec++ {
		a, b := strconv.FormatFloat(v, 'f', prec, 64), strconv.FormatFloat(limit, 'f', prec, 64)
		if a != b || v == limit || prec >= 17 {
			return a, b
		}
	}
}

// Assessments is Iter8's versionAssessments entry: one bool per objective.
func Assessments(results []experiment.ObjectiveResult) []bool {
	out := make([]bool, len(results))
	for i, r := range results {
		out[i] = r.Satisfied
	}
	return out
}

// Satisfied reports whether every objective is satisfied: in a conformance
// experiment, whether the version is the winner.
func Satisfied(results []experiment.ObjectiveResult) bool {
	for _, r := range results {
		if !r.Satisfied {
			return false
		}
	}
	return len(results) > 0
}

// NewVerdict is the conclusion after the last iteration: values cover the
// whole experiment (Iter8 semantics), so the last iteration decides and an
// early failure followed by a recovery passes. Without a confidence level it
// is Iter8's, PASS or FAIL on the values; with one (spec.criteria.confidence)
// it is PASS when every objective is satisfied, FAIL when any is violated,
// and INCONCLUSIVE otherwise, with what each inconclusive objective needs.
func NewVerdict(version string, iterations int32, results []experiment.ObjectiveResult, confidence *float64) *bus.Verdict {
	v := &bus.Verdict{
		Outcome:    VerdictOutcome(results, confidence != nil),
		Version:    version,
		Iterations: iterations,
		Objectives: results,
		Confidence: confidence,
	}
	v.Passed = v.Outcome == experiment.VerdictPass
	at := ""
	if confidence != nil {
		at = " at " + percent(*confidence) + " confidence"
	}
	if v.Passed {
		v.Reason = fmt.Sprintf("all %d objectives satisfied%s after iteration %d", len(results), at, iterations)
		return v
	}
	var listed []string
	what := "not satisfied"
	for _, r := range results {
		switch {
		case confidence == nil && !r.Satisfied,
			v.Outcome == experiment.VerdictFail && r.Outcome == experiment.OutcomeViolated,
			v.Outcome == experiment.VerdictInconclusive && r.Outcome != experiment.OutcomeSatisfied:
			listed = append(listed, r.Metric+": "+r.Reason)
		}
	}
	switch {
	case confidence == nil:
	case v.Outcome == experiment.VerdictFail:
		what = "violated"
	default:
		what = "inconclusive"
	}
	v.Reason = fmt.Sprintf("%d of %d objectives %s%s after iteration %d: %s",
		len(listed), len(results), what, at, iterations, strings.Join(listed, "; "))
	return v
}

// VerdictOutcome is experiment.VerdictPass, VerdictFail or
// VerdictInconclusive: by the objectives' outcomes when judged with a
// confidence level (confident), else PASS or FAIL on Satisfied, as Iter8.
func VerdictOutcome(results []experiment.ObjectiveResult, confident bool) string {
	if !confident {
		if Satisfied(results) {
			return experiment.VerdictPass
		}
		return experiment.VerdictFail
	}
	outcomes := make([]stats.Outcome, len(results))
	for i, r := range results {
		switch r.Outcome {
		case experiment.OutcomeSatisfied:
			outcomes[i] = stats.Satisfied
		case experiment.OutcomeViolated:
			outcomes[i] = stats.Violated
		}
	}
	switch stats.Verdict(outcomes...) {
	case stats.Satisfied:
		return experiment.VerdictPass
	case stats.Violated:
		return experiment.VerdictFail
	}
	return experiment.VerdictInconclusive
}
