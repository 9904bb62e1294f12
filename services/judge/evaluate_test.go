package judge

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

// evalCase is one file of testdata/cases: objectives, the dark version's
// values after each iteration, and what the judge must conclude. Anyone can
// add a case by adding a file.
type evalCase struct {
	Description string                 `json:"description"`
	Objectives  []experiment.Objective `json:"objectives"`
	// Confidence is spec.criteria.confidence (absent: Iter8's verdict).
	Confidence *float64        `json:"confidence"`
	Iterations []caseIteration `json:"iterations"`
	Verdict    struct {
		Passed bool `json:"passed"`
		// Outcome: PASS, FAIL or INCONCLUSIVE, when given.
		Outcome string `json:"outcome"`
		Reason  string `json:"reason"`
		// ReasonContains: parts of the reason, when the whole is too long.
		ReasonContains []string `json:"reasonContains"`
	} `json:"verdict"`
}

type caseIteration struct {
	// Values: a number, null (unavailable), or "NaN", "+Inf", "-Inf".
	Values      map[string]caseValue `json:"values"`
	Errors      map[string]string    `json:"errors"`
	Assessments []bool               `json:"assessments"`
	// Reasons, one per objective, when given.
	Reasons []string `json:"reasons"`
	// Intervals and Needed are the snapshot's (docs/statistics.md);
	// Seconds is the window's length, which sets the dark version's rate.
	Intervals map[string]*experiment.Interval `json:"intervals"`
	// Paired is the dark snapshot's comparison with live (its sums).
	Paired  *bus.Comparison `json:"paired"`
	Needed  []bus.Needed    `json:"needed"`
	Seconds float64         `json:"seconds"`
	// Outcomes, one per objective, when given: satisfied, violated or
	// inconclusive; NeededRequests likewise (0: none).
	Outcomes       []string `json:"outcomes"`
	NeededRequests []int64  `json:"neededRequests"`
}

// caseValue is a snapshot value as a case file writes it; JSON (which YAML
// becomes) has no NaN or infinity, so those are strings.
type caseValue struct{ v *float64 }

func (c *caseValue) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	var s string
	if json.Unmarshal(b, &s) == nil {
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || !(math.IsNaN(f) || math.IsInf(f, 0)) {
			return fmt.Errorf("value %s: want a number, null, NaN, +Inf or -Inf", b)
		}
		c.v = &f
		return nil
	}
	var f float64
	if err := json.Unmarshal(b, &f); err != nil {
		return err
	}
	c.v = &f
	return nil
}

func (it caseIteration) values() map[string]*float64 {
	out := make(map[string]*float64, len(it.Values))
	for k, v := range it.Values {
		out[k] = v.v
	}
	return out
}

// judged is the iteration's values and errors as the judge gets them: in
// the canonical form bus.DecodeEvent gives a snapshot (a NaN is nil, and
// "NaN" is why).
func (it caseIteration) judged() (map[string]*float64, map[string]string) {
	snap := it.snapshot()
	return snap.Values, snap.Errors
}

// snapshot is the iteration's snapshot as the judge gets it, and the dark
// version's rate over its window.
func (it caseIteration) snapshot() *bus.Snapshot {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	snap := &bus.Snapshot{Values: it.values(), Errors: maps.Clone(it.Errors), Intervals: it.Intervals, Needed: it.Needed, Paired: it.Paired,
		Start: start, End: start.Add(time.Duration(it.Seconds * float64(time.Second)))}
	snap.Canonicalize()
	return snap
}

func (it caseIteration) rate() float64 {
	if n := it.values()[experiment.MetricRequestCount]; n != nil && it.Seconds > 0 {
		return *n / it.Seconds
	}
	return 0
}

func loadCases(t *testing.T) map[string]*evalCase {
	t.Helper()
	files, err := filepath.Glob("testdata/cases/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no cases in testdata/cases: %v", err)
	}
	cases := map[string]*evalCase{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var c evalCase
		if err := yaml.UnmarshalStrict(b, &c); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if len(c.Objectives) == 0 || len(c.Iterations) == 0 {
			t.Fatalf("%s: a case needs objectives and iterations", f)
		}
		for i, it := range c.Iterations {
			if len(it.Assessments) != len(c.Objectives) || (it.Reasons != nil && len(it.Reasons) != len(c.Objectives)) ||
				(it.Outcomes != nil && len(it.Outcomes) != len(c.Objectives)) || (it.NeededRequests != nil && len(it.NeededRequests) != len(c.Objectives)) {
				t.Fatalf("%s: iteration %d: want one assessment (and reason, if any) per objective", f, i+1)
			}
		}
		cases[filepath.Base(f)] = &c
	}
	return cases
}

// TestEvaluateCases runs every case through Assess (which is Evaluate
// without a confidence level), iteration by iteration, and the last
// iteration through NewVerdict.
func TestEvaluateCases(t *testing.T) {
	for name, c := range loadCases(t) {
		t.Run(name, func(t *testing.T) {
			var results []experiment.ObjectiveResult
			crit := &experiment.Criteria{Objectives: c.Objectives, Confidence: c.Confidence}
			for i, it := range c.Iterations {
				results = Assess(crit, it.snapshot(), it.rate(), liveView{})
				if c.Confidence == nil {
					values, errs := it.judged()
					if plain := Evaluate(c.Objectives, values, errs); !slices.Equal(Assessments(plain), Assessments(results)) {
						t.Errorf("iteration %d: without a confidence level Assess %v and Evaluate %v differ", i+1, Assessments(results), Assessments(plain))
					}
				}
				for j, want := range it.Outcomes {
					if got := results[j].Outcome; got != want {
						t.Errorf("iteration %d, objective %d: outcome %q, want %q (%s)", i+1, j, got, want, results[j].Reason)
					}
				}
				for j, want := range it.NeededRequests {
					var got int64
					if n := results[j].Needed; n != nil {
						got = n.Requests
					}
					if got != want {
						t.Errorf("iteration %d, objective %d: needed %d, want %d", i+1, j, got, want)
					}
				}
				if got := Assessments(results); !slices.Equal(got, it.Assessments) {
					t.Errorf("iteration %d: assessments %v, want %v (%s)", i+1, got, it.Assessments, reasons(results))
				}
				for j, want := range it.Reasons {
					if got := results[j].Reason; got != want {
						t.Errorf("iteration %d, objective %d: reason %q, want %q", i+1, j, got, want)
					}
				}
				for j, r := range results {
					checkResult(t, c.Objectives[j], r)
				}
			}
			n := int32(len(c.Iterations))
			v := NewVerdict("current", n, results, c.Confidence)
			if v.Passed != c.Verdict.Passed {
				t.Errorf("verdict passed=%v, want %v: %s", v.Passed, c.Verdict.Passed, v.Reason)
			}
			if c.Verdict.Outcome != "" && v.Outcome != c.Verdict.Outcome {
				t.Errorf("verdict outcome %s, want %s: %s", v.Outcome, c.Verdict.Outcome, v.Reason)
			}
			if v.Passed != (v.Outcome == experiment.VerdictPass) {
				t.Errorf("verdict passed=%v but outcome %s", v.Passed, v.Outcome)
			}
			if c.Verdict.Reason != "" && v.Reason != c.Verdict.Reason {
				t.Errorf("verdict reason %q, want %q", v.Reason, c.Verdict.Reason)
			}
			for _, part := range c.Verdict.ReasonContains {
				if !strings.Contains(v.Reason, part) {
					t.Errorf("verdict reason %q does not contain %q", v.Reason, part)
				}
			}
			if v.Version != "current" || v.Iterations != n || len(v.Objectives) != len(c.Objectives) {
				t.Errorf("verdict %+v does not describe the last iteration", v)
			}
		})
	}
}

// checkResult checks what every result must hold, whatever the case.
func checkResult(t *testing.T, o experiment.Objective, r experiment.ObjectiveResult) {
	t.Helper()
	if r.Metric != o.Metric {
		t.Errorf("result metric %q, want %q", r.Metric, o.Metric)
	}
	if (o.UpperLimit == nil) != (r.UpperLimit == nil) || (o.LowerLimit == nil) != (r.LowerLimit == nil) {
		t.Errorf("%s: limits not reported as written", o.Metric)
	}
	if r.Value != nil && (math.IsNaN(*r.Value) || math.IsInf(*r.Value, 0)) {
		t.Errorf("%s: value %v must be reported as unavailable (nil)", o.Metric, *r.Value)
	}
	if r.Satisfied && r.Value == nil {
		t.Errorf("%s: satisfied without a value", o.Metric)
	}
	if r.Reason == "" {
		t.Errorf("%s: no reason", o.Metric)
	}
}

func reasons(rs []experiment.ObjectiveResult) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Metric+": "+r.Reason)
	}
	return out
}

func TestFormatPair(t *testing.T) {
	for _, c := range []struct {
		v, l         float64
		wantV, wantL string
	}{
		{62.1, 50, "62.100", "50.000"},
		{0.0104, 0.01, "0.0104", "0.0100"},
		{0.01, 0.01, "0.010", "0.010"},
		{0.01000000001, 0.01, "0.01000000001", "0.01000000000"},
	} {
		a, b := formatPair(c.v, c.l)
		if a != c.wantV || b != c.wantL {
			t.Errorf("formatPair(%v, %v) = %s, %s; want %s, %s", c.v, c.l, a, b, c.wantV, c.wantL)
		}
	}
}

// TestEvaluateNonFiniteIsUnavailable: Evaluate does not rely on the bus
// decoder: a NaN or an infinity given to it directly is unavailable, never
// a value that passes every limit.
func TestEvaluateNonFiniteIsUnavailable(t *testing.T) {
	limit := experiment.Objective{Metric: experiment.MetricMeanLatency, UpperLimit: experiment.NewLimit("50")}
	for _, v := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		r := Evaluate([]experiment.Objective{limit}, map[string]*float64{experiment.MetricMeanLatency: &v}, nil)[0]
		if r.Satisfied || r.Value != nil || !strings.HasPrefix(r.Reason, "unavailable: ") {
			t.Errorf("%v: %+v, want unsatisfied and unavailable", v, r)
		}
	}
}
