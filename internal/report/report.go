// Package report renders experiments for people: the iter8ctl `describe`
// layout users of Iter8 know, and the one-line-per-update progress of
// `kubectl get experiment --watch`.
package report

import (
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strings"

	"github.com/olekukonko/tablewriter"

	"github.com/darklaunch/darklaunch/shared/experiment"
)

// Describe writes e in iter8ctl's describe layout: Overview, Progress
// Summary and, once an iteration completed, Winner, Objective and Metrics
// Assessment; darklaunch adds the mirroring figures and a one-line verdict.
func Describe(w io.Writer, e *experiment.Experiment) {
	st := &e.Status
	section(w, "Overview", true)
	fmt.Fprintf(w, "Experiment name: %s\n", e.Metadata.Name)
	fmt.Fprintf(w, "Experiment namespace: %s\n", e.Metadata.Namespace)
	fmt.Fprintf(w, "Target: %s\n", e.Spec.Target)
	fmt.Fprintf(w, "Testing pattern: %s\n", e.Spec.Strategy.TestingPattern)
	fmt.Fprintf(w, "Deployment pattern: %s\n", orDefault(e.Spec.Strategy.DeploymentPattern, "Progressive"))

	section(w, "Progress Summary", false)
	fmt.Fprintf(w, "Experiment stage: %s\n", orDefault(string(st.Stage), string(experiment.StageWaiting)))
	fmt.Fprintf(w, "Number of completed iterations: %d\n", st.CompletedIterations)
	if a := st.Analysis; a != nil && a.StoppedEarly {
		fmt.Fprintf(w, "Stopped early: the verdict was conclusive after iteration %d of %d (spec.criteria.stopEarly)\n", st.CompletedIterations, e.TotalIterations())
	}
	if st.Failed() {
		fmt.Fprintf(w, "Experiment failed: %s\n", st.Condition(experiment.ConditionFailed).Message)
	}

	a := st.Analysis
	if st.CompletedIterations == 0 || a == nil {
		return
	}
	baseline := e.BaselineName()

	section(w, "Winner Assessment", false)
	winner := "not found"
	if a.WinnerAssessment.WinnerFound {
		winner = a.WinnerAssessment.Winner
	}
	fmt.Fprintf(w, "Winning version: %s\n", winner)
	if st.RecommendedBaseline != "" {
		fmt.Fprintf(w, "Recommended baseline: %s\n", st.RecommendedBaseline)
	}

	section(w, "Objective Assessment", false)
	objectiveTable(w, e, baseline)

	section(w, "Metrics Assessment", false)
	versions := []string{baseline}
	if hasVersion(a, experiment.LiveVersion) && baseline != experiment.LiveVersion {
		versions = append(versions, experiment.LiveVersion)
	}
	t := newTable(w, append([]string{"Metric"}, versions...), true)
	for _, m := range experiment.Metrics {
		vals, ok := a.AggregatedMetrics[m.Name]
		if !ok {
			continue
		}
		row := []string{MetricLabel(m)}
		for _, v := range versions {
			row = append(row, a.AggregatedIntervals[m.Name][v].Format(vals[v]))
		}
		t.Append(row)
	}
	t.Render()

	if ms := a.Mirror; ms != nil {
		section(w, "Mirroring", false)
		fmt.Fprintf(w, "Requests mirrored to %s: %d\n", baseline, ms.Mirrored)
		if s := experiment.SampleOf(a, st.Routing); s != nil {
			fmt.Fprintf(w, "Mirrored share: %s\n", s)
			if s.Skewed() {
				fmt.Fprintf(w, "Warning: more than 5 %% of the copies meant for %s were dropped: it saw a different traffic than the one asked for\n", baseline)
			}
		}
		if len(ms.Dropped) == 0 {
			fmt.Fprintln(w, "Copies dropped: 0")
		} else {
			var parts []string
			for _, reason := range sortedKeys(ms.Dropped) {
				parts = append(parts, fmt.Sprintf("%s %d", reason, ms.Dropped[reason]))
			}
			fmt.Fprintf(w, "Copies dropped: %s\n", strings.Join(parts, ", "))
		}
	}

	if st.Loss.Lost() {
		section(w, "Lost Observations", false)
		fmt.Fprintln(w, st.Loss.String())
	}

	if st.Terminal() && !st.Failed() {
		section(w, "Verdict", false)
		fmt.Fprintln(w, VerdictLine(e))
		if line := BackingLine(e); line != "" {
			fmt.Fprintln(w, line)
		}
	}
}

// VerdictLine says in one line whether the dark version passed and, if not,
// which objectives it missed and why.
func VerdictLine(e *experiment.Experiment) string {
	st := &e.Status
	baseline := e.BaselineName()
	if st.Failed() {
		return fmt.Sprintf("FAILED: the experiment could not judge %s: %s", baseline, st.Condition(experiment.ConditionFailed).Message)
	}
	if st.Analysis == nil {
		return fmt.Sprintf("PENDING: no iteration of %s completed yet", baseline)
	}
	if line, ok := confidentVerdictLine(e); ok {
		if st.Analysis.StoppedEarly && st.Terminal() {
			line += fmt.Sprintf(" (stopped early after iteration %d of %d)", st.CompletedIterations, e.TotalIterations())
		}
		return line
	}
	n := len(criteria(e))
	var missed []string
	for _, r := range st.Analysis.Objectives {
		if !r.Satisfied {
			missed = append(missed, r.Metric+": "+r.Reason)
		}
	}
	prefix := "PASS"
	if !st.Terminal() {
		prefix = "SO FAR"
	}
	if len(missed) == 0 && (st.Analysis.WinnerAssessment.WinnerFound || !st.Terminal()) {
		return fmt.Sprintf("%s: the dark version %s meets all %d objectives", prefix, baseline, n)
	}
	if !st.Terminal() {
		prefix = "SO FAR FAILING"
	} else {
		prefix = "FAIL"
	}
	return fmt.Sprintf("%s: the dark version %s misses %d of %d objectives: %s", prefix, baseline, len(missed), n, strings.Join(missed, "; "))
}

// ObjectiveLabel writes an objective as iter8ctl does: "[lower <= ]metric[ <= upper]".
//
// A relative objective names what its limit bounds: "mean-latency ÷ live <=
// 1.100" (a latency's ratio), "error-rate − live <= 0.005" (a difference).
func ObjectiveLabel(o experiment.Objective) string {
	s := o.Metric
	if o.Reference != "" {
		op := " ÷ "
		if info, _ := experiment.LookupMetric(o.Metric); info.Name == experiment.MetricErrorRate {
			op = " − "
		}
		s += op + o.Reference
	}
	if o.LowerLimit != nil {
		s = fmt.Sprintf("%.3f <= %s", o.LowerLimit.Float64(), s)
	}
	if o.UpperLimit != nil {
		s = fmt.Sprintf("%s <= %.3f", s, o.UpperLimit.Float64())
	}
	return s
}

// MetricLabel is the metric's name with its units in brackets.
func MetricLabel(m experiment.MetricInfo) string {
	if m.Units != "" {
		return fmt.Sprintf("%s (%s)", m.Name, m.Units)
	}
	return m.Name
}

// FormatValue writes a value with 3 decimals, or "unavailable".
func FormatValue(v *float64) string {
	if v == nil || math.IsNaN(*v) || math.IsInf(*v, 0) {
		return "unavailable"
	}
	return fmt.Sprintf("%.3f", *v)
}

// WatchFormat lays out progress lines like `kubectl get experiment
// --watch`: NAME TYPE TARGET STAGE COMPLETED ITERATIONS MESSAGE, the columns
// as wide as the experiments it is made for.
type WatchFormat struct{ format string }

// NewWatchFormat sizes the columns for the given experiments.
func NewWatchFormat(exps ...*experiment.Experiment) WatchFormat {
	name, target := len("NAME"), len("TARGET")
	for _, e := range exps {
		name = max(name, len(e.Metadata.Name))
		target = max(target, len(e.Spec.Target))
	}
	return WatchFormat{format: fmt.Sprintf("%%-%ds   %%-11s   %%-%ds   %%-12s   %%-20s   %%s", name, target)}
}

// Header is the header line.
func (f WatchFormat) Header() string {
	return strings.TrimRight(fmt.Sprintf(f.format, "NAME", "TYPE", "TARGET", "STAGE", "COMPLETED ITERATIONS", "MESSAGE"), " ")
}

// Line is one experiment's line.
func (f WatchFormat) Line(e *experiment.Experiment) string {
	return strings.TrimRight(fmt.Sprintf(f.format, e.Metadata.Name, e.Spec.Strategy.TestingPattern, e.Spec.Target,
		orDefault(string(e.Status.Stage), string(experiment.StageWaiting)), fmt.Sprint(e.Status.CompletedIterations), e.Status.Message), " ")
}

func section(w io.Writer, name string, first bool) {
	if !first {
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "****** %s ******\n", name)
}

func newTable(w io.Writer, header []string, numeric bool) *tablewriter.Table {
	t := tablewriter.NewWriter(w)
	t.SetHeader(header)
	t.SetRowLine(true)
	t.SetAutoWrapText(true)
	t.SetColWidth(30)
	t.SetReflowDuringAutoWrap(true)
	cols := make([]int, len(header))
	cols[0] = tablewriter.ALIGN_LEFT
	for i := 1; i < len(cols); i++ {
		cols[i] = tablewriter.ALIGN_LEFT
		if numeric {
			cols[i] = tablewriter.ALIGN_RIGHT
		}
	}
	t.SetColumnAlignment(cols)
	return t
}

func criteria(e *experiment.Experiment) []experiment.Objective {
	if e.Spec.Criteria == nil {
		return nil
	}
	return e.Spec.Criteria.Objectives
}

func hasVersion(a *experiment.Analysis, v string) bool {
	for _, vals := range a.AggregatedMetrics {
		if _, ok := vals[v]; ok {
			return true
		}
	}
	return false
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func sortedKeys(m map[string]int64) []string { return slices.Sorted(maps.Keys(m)) }
