package report

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/darklaunch/darklaunch/shared/experiment"
)

func f(v float64) *float64 { return &v }

func seedCompleted(t *testing.T) *experiment.Experiment {
	t.Helper()
	doc, err := os.ReadFile("../../examples/mirroring/experiment.yaml")
	if err != nil {
		t.Fatal(err)
	}
	e, err := experiment.Parse(doc)
	if err != nil {
		t.Fatal(err)
	}
	e.Status = experiment.Status{
		Stage:               experiment.StageCompleted,
		CompletedIterations: 7,
		RecommendedBaseline: "current",
		Message:             "ExperimentCompleted: Experiment completed successfully",
		Analysis: &experiment.Analysis{
			AggregatedMetrics: map[string]map[string]*float64{
				"request-count":                {"current": f(136.084), "live": f(340)},
				"mean-latency":                 {"current": f(0.879), "live": f(0.9)},
				"95th-percentile-tail-latency": {"current": f(4.835), "live": nil},
				"error-rate":                   {"current": f(0), "live": f(0)},
			},
			VersionAssessments: map[string][]bool{"current": {true, true, true}},
			WinnerAssessment:   experiment.WinnerAssessment{WinnerFound: true, Winner: "current"},
			Objectives: []experiment.ObjectiveResult{
				{Metric: "mean-latency", Satisfied: true}, {Metric: "95th-percentile-tail-latency", Satisfied: true}, {Metric: "error-rate", Satisfied: true},
			},
		},
	}
	return e
}

func TestDescribeMatchesIter8ctlLayout(t *testing.T) {
	var b bytes.Buffer
	Describe(&b, seedCompleted(t))
	out := b.String()
	// Lines as the seed's iter8ctl output shows them.
	for _, want := range []string{
		"****** Overview ******\nExperiment name: mirroring\nExperiment namespace: default\nTarget: default/sample-app\nTesting pattern: Conformance\nDeployment pattern: Progressive\n",
		"\n****** Progress Summary ******\nExperiment stage: Completed\nNumber of completed iterations: 7\n",
		"Recommended baseline: current",
		"|           OBJECTIVE            | CURRENT |",
		"| mean-latency <= 50.000         | true    |",
		"| 95th-percentile-tail-latency   | true    |\n| <= 100.000                     |         |",
		"| error-rate <= 0.010            | true    |",
		"| request-count                  | 136.084 |",
		"| mean-latency (milliseconds)    |   0.879 |",
		"unavailable",
		"PASS: the dark version current meets all 3 objectives",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("describe output lacks %q:\n%s", want, out)
		}
	}
}

func TestDescribeBeforeFirstIteration(t *testing.T) {
	e := seedCompleted(t)
	e.Status = experiment.Status{Stage: experiment.StageRunning}
	var b bytes.Buffer
	Describe(&b, e)
	if strings.Contains(b.String(), "Objective Assessment") {
		t.Errorf("assessment shown before any iteration:\n%s", b.String())
	}
}

func TestVerdictLineNamesMissedObjectives(t *testing.T) {
	e := seedCompleted(t)
	a := e.Status.Analysis
	a.WinnerAssessment = experiment.WinnerAssessment{}
	a.Objectives[0] = experiment.ObjectiveResult{Metric: "mean-latency", Reason: "value 85.000 is above upperLimit 50.000"}
	got := VerdictLine(e)
	if !strings.HasPrefix(got, "FAIL") || !strings.Contains(got, "mean-latency: value 85.000 is above upperLimit 50.000") {
		t.Errorf("verdict = %q", got)
	}
}

func TestWatchLine(t *testing.T) {
	e := seedCompleted(t)
	e.Status.Stage, e.Status.CompletedIterations, e.Status.Message = experiment.StageRunning, 3, "IterationUpdate: Completed Iteration 3"
	f := NewWatchFormat(e)
	got := f.Line(e)
	if h := f.Header(); !strings.HasPrefix(h, "NAME        TYPE          TARGET               STAGE") {
		t.Errorf("header %q", h)
	}
	for _, want := range []string{"mirroring", "Conformance", "default/sample-app", "Running", " 3 ", "IterationUpdate: Completed Iteration 3"} {
		if !strings.Contains(got, want) {
			t.Errorf("line %q lacks %q", got, want)
		}
	}
}
