package report

import (
	"fmt"
	"io"
	"strings"

	"github.com/darklaunch/darklaunch/shared/experiment"
)

// objectiveTable is iter8ctl's Objective Assessment (objective, then the
// baseline's true or false), with darklaunch's columns after it once the
// judge reports intervals: the interval judged, at its level, and what an
// inconclusive objective still needs. With spec.criteria.confidence the
// baseline's cell is true, false or inconclusive: the objective's outcome.
func objectiveTable(w io.Writer, e *experiment.Experiment, baseline string) {
	a := e.Status.Analysis
	_, confident := e.Confidence()
	withIntervals := false
	for _, r := range a.Objectives {
		withIntervals = withIntervals || r.Outcome != ""
	}
	header := []string{"Objective", baseline}
	if withIntervals {
		// Every objective is judged at the same level: say it once.
		title := "Interval"
		for _, r := range a.Objectives {
			if r.Interval != nil {
				title = "Interval at " + experiment.Percent(r.Interval.Confidence)
				break
			}
		}
		header = append(header, title, "Needed")
	}
	t := newTable(w, header, false)
	assess := a.VersionAssessments[baseline]
	for i, o := range criteria(e) {
		cell := "unavailable"
		if i < len(assess) {
			cell = fmt.Sprint(assess[i])
		}
		var r experiment.ObjectiveResult
		if i < len(a.Objectives) {
			r = a.Objectives[i]
		}
		if confident && r.Outcome != "" {
			cell = outcomeCell(r.Outcome)
		}
		row := []string{ObjectiveLabel(o), cell}
		if withIntervals {
			iv := ""
			if r.Interval != nil {
				iv = r.Interval.Format(r.Value)
			}
			row = append(row, iv, r.Needed.Short())
		}
		t.Append(row)
	}
	t.Render()
}

func outcomeCell(outcome string) string {
	switch outcome {
	case experiment.OutcomeSatisfied:
		return "true"
	case experiment.OutcomeViolated:
		return "false"
	}
	return "inconclusive"
}

// confidentVerdictLine is the verdict judged at spec.criteria.confidence,
// when it is set and the judge reported outcomes: PASS, FAIL naming the
// violated objectives, or INCONCLUSIVE naming what each inconclusive one
// still needs.
func confidentVerdictLine(e *experiment.Experiment) (string, bool) {
	c, confident := e.Confidence()
	st := &e.Status
	a := st.Analysis
	if !confident || a == nil || a.Outcome == "" {
		return "", false
	}
	baseline, n, at := e.BaselineName(), len(criteria(e)), experiment.Percent(c)
	var listed []string
	want := experiment.OutcomeViolated
	if a.Outcome == experiment.VerdictInconclusive {
		want = experiment.OutcomeInconclusive
	}
	for _, r := range a.Objectives {
		if r.Outcome == want {
			listed = append(listed, r.Metric+": "+r.Reason)
		}
	}
	prefix := func(final string) string {
		if st.Terminal() {
			return final
		}
		return "SO FAR " + final
	}
	switch a.Outcome {
	case experiment.VerdictPass:
		return fmt.Sprintf("%s: the dark version %s meets all %d objectives at %s confidence", prefix("PASS"), baseline, n, at), true
	case experiment.VerdictFail:
		return fmt.Sprintf("%s: the dark version %s misses %d of %d objectives at %s confidence: %s", prefix("FAIL"), baseline, len(listed), n, at, strings.Join(listed, "; ")), true
	}
	return fmt.Sprintf("%s: %d of %d objectives of the dark version %s are not shown either way at %s confidence: %s",
		prefix("INCONCLUSIVE"), len(listed), n, baseline, at, strings.Join(listed, "; ")), true
}

// BackingLine says, for a PASS judged on the values alone (no
// spec.criteria.confidence), whether the intervals back it at
// experiment.DefaultConfidence; "" when there is nothing to say.
func BackingLine(e *experiment.Experiment) string {
	a := e.Status.Analysis
	if _, confident := e.Confidence(); confident || a == nil || !e.Passed() {
		return ""
	}
	var weak []string
	reported, would := false, experiment.VerdictInconclusive
	for _, r := range a.Objectives {
		reported = reported || r.Outcome != ""
		if r.Outcome == experiment.OutcomeViolated {
			would = experiment.VerdictFail
		}
		if r.Outcome != "" && r.Outcome != experiment.OutcomeSatisfied {
			s := r.Metric + " " + r.Outcome
			if r.Needed != nil && r.Needed.Requests > 0 {
				s += " (" + r.Needed.Short() + ")"
			}
			weak = append(weak, s)
		}
	}
	at := experiment.Percent(experiment.DefaultConfidence)
	switch {
	case !reported:
		return ""
	case len(weak) == 0:
		return fmt.Sprintf("This PASS is backed at %s confidence: every objective's interval meets its limits.", at)
	}
	return fmt.Sprintf("This PASS is on the values alone, not backed at %s confidence: %s. With --confidence %g the verdict would be %s.",
		at, strings.Join(weak, "; "), experiment.DefaultConfidence, would)
}
