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

// Assess judges the dark version's snapshot against the objectives: Iter8's
// assessment on the values (Evaluate), and the outcome of each objective's
// confidence interval (docs/statistics.md), with how many more requests an
// inconclusive one needs at rate (the dark version's requests per second;
// 0 when unknown). With spec.criteria.confidence set, Satisfied is the
// outcome's (satisfied, and nothing less), and the reason explains the
// interval; without it, both stay Iter8's and the outcome is only reported.
func Assess(crit *experiment.Criteria, snap *bus.Snapshot, rate float64, live liveView) []experiment.ObjectiveResult {
	var objectives []experiment.Objective
	if crit != nil {
		objectives = crit.Objectives
	}
	results := Evaluate(objectives, snap.Values, snap.Errors)
	base, confident := experiment.DefaultConfidence, crit != nil && crit.Confidence != nil
	if confident {
		base = *crit.Confidence
	}
	level := base
	if len(objectives) > 0 {
		level, _ = stats.Split(base, len(objectives))
	}
	for i, o := range objectives {
		r := &results[i]
		r.Reference = o.Reference
		if o.Reference != "" {
			*r = relativeResult(o, *r, snap, level, live, confident)
			continue
		}
		info, _ := experiment.LookupMetric(o.Metric)
		outcome, iv, why := intervalOutcome(info.Name, o, *r, snap, level)
		r.Outcome, r.Interval = outcome.String(), iv
		if outcome == stats.Inconclusive && r.Value != nil {
			r.Needed = needed(i, info.Name, o, *r, snap, rate)
		}
		if confident {
			r.Satisfied = outcome == stats.Satisfied
			r.Reason = confidentReason(info.Name, *r, snap, why)
		}
	}
	return results
}

// intervalOutcome is the objective's outcome on its interval, and the
// interval; why says what is missing when there is none.
func intervalOutcome(metric string, o experiment.Objective, r experiment.ObjectiveResult, snap *bus.Snapshot, level float64) (stats.Outcome, *experiment.Interval, string) {
	if r.Value == nil {
		return stats.Inconclusive, nil, strings.TrimPrefix(r.Reason, "unavailable: ")
	}
	limits := stats.Limits{Upper: r.UpperLimit, Lower: r.LowerLimit}
	if metric == experiment.MetricRequestCount || metric == experiment.MetricErrorCount {
		// A count is exact: its value is its interval. Too few requests,
		// though, is what more requests mend: inconclusive, not violated.
		if metric == experiment.MetricRequestCount && r.LowerLimit != nil && *r.Value < *r.LowerLimit {
			return stats.Inconclusive, nil, ""
		}
		out, _ := stats.Judge(stats.Interval{Estimate: *r.Value, Lo: *r.Value, Hi: *r.Value}, limits)
		return out, nil, ""
	}
	iv := snap.Intervals[metric]
	switch {
	case iv == nil:
		return stats.Inconclusive, nil, "no confidence interval measured"
	case iv.Confidence < level-1e-9:
		return stats.Inconclusive, iv, fmt.Sprintf("the interval is at %s, below the %s each objective needs", percent(iv.Confidence), percent(level))
	}
	lo, hi := iv.Bounds()
	out, err := stats.Judge(stats.Interval{Estimate: *r.Value, Lo: lo, Hi: hi}, limits)
	if err != nil {
		return stats.Inconclusive, iv, err.Error()
	}
	return out, iv, ""
}

// needed is the collector's estimate of the further requests for objective
// i, with the time they take at rate; for a count's lower limit, the
// difference.
func needed(i int, metric string, o experiment.Objective, r experiment.ObjectiveResult, snap *bus.Snapshot, rate float64) *experiment.Needed {
	var n *experiment.Needed
	if metric == experiment.MetricRequestCount && r.LowerLimit != nil && *r.Value < *r.LowerLimit {
		n = &experiment.Needed{Requests: int64(math.Ceil(*r.LowerLimit - *r.Value))}
	}
	for _, x := range snap.Needed {
		if x.Objective == i && x.Requests >= 0 {
			n = &experiment.Needed{Requests: x.Requests, Reason: x.Reason}
		}
	}
	if n != nil && n.Requests > 0 && rate > 0 && !math.IsInf(rate, 0) {
		n.Rate = rate
		n.Seconds = float64(n.Requests) / rate
	}
	return n
}

// confidentReason explains an outcome on the interval:
// "0 errors in 48 requests: 0.000 [0.000, 0.096] at 98.3 % straddles
// upperLimit 0.010; about 419 more requests with no error are needed to show
// it at 98.3 % — about 9 more minutes at 0.8 req/s".
func confidentReason(metric string, r experiment.ObjectiveResult, snap *bus.Snapshot, why string) string {
	if r.Value == nil {
		return "inconclusive: unavailable: " + why
	}
	var b strings.Builder
	if metric == experiment.MetricErrorRate {
		if n, ok := count(snap, experiment.MetricRequestCount); ok {
			e, _ := count(snap, experiment.MetricErrorCount)
			fmt.Fprintf(&b, "%s in %s: ", plural(e, "error"), plural(n, "request"))
		}
	}
	if r.Interval == nil {
		fmt.Fprintf(&b, "value %s (exact)", strconv.FormatFloat(*r.Value, 'f', 3, 64))
	} else {
		fmt.Fprintf(&b, "%s at %s", FormatInterval(r.Value, r.Interval), percent(r.Interval.Confidence))
	}
	limits := limitText(r)
	switch r.Outcome {
	case experiment.OutcomeSatisfied:
		fmt.Fprintf(&b, " meets %s", limits)
	case experiment.OutcomeViolated:
		fmt.Fprintf(&b, " misses %s", limits)
	default:
		if why != "" {
			fmt.Fprintf(&b, ": inconclusive: %s", why)
			break
		}
		if r.Interval == nil {
			fmt.Fprintf(&b, " is below %s", limits)
		} else {
			fmt.Fprintf(&b, " straddles %s", limits)
		}
		if r.Needed != nil {
			b.WriteString("; " + NeededText(metric, r))
		}
	}
	return b.String()
}

// NeededText says what an inconclusive objective needs: "about 419 more
// requests with no error are needed to show <= 0.010 at 98.3 % — about 9
// more minutes at 0.8 req/s".
func NeededText(metric string, r experiment.ObjectiveResult) string {
	n := r.Needed
	if n == nil {
		return ""
	}
	if n.Requests == 0 {
		return n.Reason
	}
	what := "requests"
	if metric == experiment.MetricErrorRate && r.Value != nil {
		what = "requests at the same error rate"
		if *r.Value == 0 {
			what = "requests with no error"
		}
	}
	s := fmt.Sprintf("about %d more %s are needed", n.Requests, what)
	if r.Interval != nil {
		s += fmt.Sprintf(" to show %s at %s", showText(r), percent(r.Interval.Confidence))
	}
	if n.Seconds > 0 {
		s += fmt.Sprintf(" — %s at %s req/s", aboutDuration(n.Seconds), strconv.FormatFloat(n.Rate, 'f', 1, 64))
	}
	return s
}

// showText is the side of the limits the value is on: what more requests
// would show if it held.
func showText(r experiment.ObjectiveResult) string {
	v := *r.Value
	switch {
	case r.UpperLimit != nil && v > *r.UpperLimit:
		return "> " + fmtNum(*r.UpperLimit)
	case r.LowerLimit != nil && v < *r.LowerLimit:
		return "< " + fmtNum(*r.LowerLimit)
	case r.UpperLimit != nil && r.LowerLimit != nil:
		return "within [" + fmtNum(*r.LowerLimit) + ", " + fmtNum(*r.UpperLimit) + "]"
	case r.UpperLimit != nil:
		return "<= " + fmtNum(*r.UpperLimit)
	default:
		return ">= " + fmtNum(*r.LowerLimit)
	}
}

func limitText(r experiment.ObjectiveResult) string {
	switch {
	case r.UpperLimit != nil && r.LowerLimit != nil:
		return fmt.Sprintf("lowerLimit %s and upperLimit %s", fmtNum(*r.LowerLimit), fmtNum(*r.UpperLimit))
	case r.UpperLimit != nil:
		return "upperLimit " + fmtNum(*r.UpperLimit)
	case r.LowerLimit != nil:
		return "lowerLimit " + fmtNum(*r.LowerLimit)
	}
	return "no limit"
}

// FormatInterval writes a value and its interval: 0.879 [0.712, 1.051].
func FormatInterval(v *float64, iv *experiment.Interval) string { return iv.Format(v) }

func fmtNum(x float64) string { return strconv.FormatFloat(x, 'f', 3, 64) }

func percent(c float64) string { return experiment.Percent(c) }

func plural(n int64, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

func count(snap *bus.Snapshot, metric string) (int64, bool) {
	if v := snap.Values[metric]; v != nil && *v >= 0 {
		return int64(*v), true
	}
	return 0, false
}

func aboutDuration(seconds float64) string { return experiment.AboutDuration(seconds) }
