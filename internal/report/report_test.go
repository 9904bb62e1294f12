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

// confidentSeed is the seed's run judged at confidence 0.95 after 48
// requests: every objective inconclusive, with its interval and what it
// needs (the figures of the judge's testdata case
// seed-confidence-inconclusive.yaml).
func confidentSeed(t *testing.T, confidence bool) *experiment.Experiment {
	e := seedCompleted(t)
	if confidence {
		c := 0.95
		e.Spec.Criteria.Confidence = &c
	}
	a := e.Status.Analysis
	level := 1 - 0.05/3
	iv := func(lo, hi float64, method string) *experiment.Interval {
		return &experiment.Interval{Lo: f(lo), Hi: f(hi), Confidence: level, Method: method}
	}
	a.AggregatedIntervals = map[string]map[string]*experiment.Interval{
		"mean-latency": {"current": iv(0.712, 1.051, "betting"), "live": {Lo: f(0.8), Confidence: 0.95, Method: "betting"}},
	}
	a.Objectives = []experiment.ObjectiveResult{
		{Metric: "mean-latency", Value: f(0.879), Satisfied: !confidence, Outcome: "satisfied", Interval: iv(0.712, 1.051, "betting"), Reason: "meets"},
		{Metric: "95th-percentile-tail-latency", Value: f(4.835), Satisfied: !confidence, Outcome: "inconclusive", Interval: iv(4.1, 5000, "order-statistic"),
			Needed: &experiment.Needed{Requests: 46, Seconds: 57.5, Rate: 0.8}, Reason: "p95 straddles"},
		{Metric: "error-rate", Value: f(0), Satisfied: !confidence, Outcome: "inconclusive", Interval: iv(0, 0.085, "clopper-pearson"),
			Needed: &experiment.Needed{Requests: 429, Seconds: 536, Rate: 0.8}, Reason: "error-rate straddles"},
	}
	if confidence {
		a.VersionAssessments["current"] = []bool{true, false, false}
		a.Outcome = experiment.VerdictInconclusive
		a.WinnerAssessment = experiment.WinnerAssessment{}
	} else {
		a.Outcome = experiment.VerdictPass
	}
	return e
}

// TestDescribeIntervalsAndOutcomes: with a confidence level the Objective
// Assessment says true, false or inconclusive, with the interval judged and
// what is needed in added columns; each metric shows its interval; the
// verdict is INCONCLUSIVE and names what is needed.
func TestDescribeIntervalsAndOutcomes(t *testing.T) {
	var b bytes.Buffer
	Describe(&b, confidentSeed(t, true))
	out := b.String()
	for _, want := range []string{
		"|           OBJECTIVE            |   CURRENT    |   INTERVAL AT 98.33 %   |",
		"| mean-latency <= 50.000         | true         | 0.879 [0.712, 1.051]",
		"| error-rate <= 0.010            | inconclusive | 0.000 [0.000, 0.085]",
		"429 more requests, about 9 ",
		"| mean-latency (milliseconds)    | 0.879 [0.712, 1.051] | 0.900 [0.800, ∞] |",
		"INCONCLUSIVE: 2 of 3 objectives of the dark version current are not shown either way at 95 % confidence: 95th-percentile-tail-latency: p95 straddles; error-rate: error-rate straddles",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("describe output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "PASS") {
		t.Errorf("an inconclusive run reads as a PASS:\n%s", out)
	}
}

// TestDescribePassNotBacked: without a confidence level the verdict is
// Iter8's PASS, and the report says that the intervals do not back it.
func TestDescribePassNotBacked(t *testing.T) {
	var b bytes.Buffer
	Describe(&b, confidentSeed(t, false))
	out := b.String()
	for _, want := range []string{
		"| mean-latency <= 50.000         | true    | 0.879 [0.712, 1.051]",
		"| error-rate <= 0.010            | true    | 0.000 [0.000, 0.085]",
		"PASS: the dark version current meets all 3 objectives\n",
		"This PASS is on the values alone, not backed at 95 % confidence: 95th-percentile-tail-latency inconclusive (46 more requests, about 58 more seconds at 0.8 req/s); error-rate inconclusive (429 more requests, about 9 more minutes at 0.8 req/s). With --confidence 0.95 the verdict would be INCONCLUSIVE.",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("describe output lacks %q:\n%s", want, out)
		}
	}
}

// TestObjectiveLabelNamesTheReference: a relative objective's label says
// what its limit bounds, a ratio for a latency, a difference for error-rate.
func TestObjectiveLabelNamesTheReference(t *testing.T) {
	for _, tc := range []struct {
		o    experiment.Objective
		want string
	}{
		{experiment.Objective{Metric: "mean-latency", UpperLimit: experiment.NewLimit("1.10"), Reference: "live"}, "mean-latency ÷ live <= 1.100"},
		{experiment.Objective{Metric: "error-rate", UpperLimit: experiment.NewLimit("0.005"), Reference: "live"}, "error-rate − live <= 0.005"},
		{experiment.Objective{Metric: "mean-latency", UpperLimit: experiment.NewLimit("50")}, "mean-latency <= 50.000"},
	} {
		if got := ObjectiveLabel(tc.o); got != tc.want {
			t.Errorf("ObjectiveLabel(%+v) = %q, want %q", tc.o, got, tc.want)
		}
	}
}
