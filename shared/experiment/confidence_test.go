package experiment_test

import (
	"strings"
	"testing"

	"github.com/darklaunch/darklaunch/shared/experiment"
)

// TestConfidenceValidation: spec.criteria.confidence, stopEarly and an
// objective's reference are checked with their field paths (issue 8).
func TestConfidenceValidation(t *testing.T) {
	for _, tc := range []struct {
		name, criteria string
		want           string // "" when valid
	}{
		{"absent", `{objectives: [{metric: error-rate, upperLimit: "0.01"}]}`, ""},
		{"0.95", `{confidence: 0.95, objectives: [{metric: error-rate, upperLimit: "0.01"}]}`, ""},
		{"stopEarly with confidence", `{confidence: 0.99, stopEarly: true, objectives: [{metric: error-rate, upperLimit: "0.01"}]}`, ""},
		{"0.5", `{confidence: 0.5, objectives: [{metric: error-rate, upperLimit: "0.01"}]}`, "spec.criteria.confidence: Invalid value: 0.5"},
		{"1", `{confidence: 1, objectives: [{metric: error-rate, upperLimit: "0.01"}]}`, "spec.criteria.confidence: Invalid value: 1"},
		{"95", `{confidence: 95, objectives: [{metric: error-rate, upperLimit: "0.01"}]}`, "spec.criteria.confidence: Invalid value: 95"},
		{"negative", `{confidence: -0.9, objectives: [{metric: error-rate, upperLimit: "0.01"}]}`, "spec.criteria.confidence: Invalid value: -0.9"},
		{"stopEarly alone", `{stopEarly: true, objectives: [{metric: error-rate, upperLimit: "0.01"}]}`, "spec.criteria.confidence: Required value: stopEarly needs a confidence level"},
		{"reference live", `{objectives: [{metric: mean-latency, reference: live, upperLimit: "1.10"}, {metric: error-rate, reference: live, upperLimit: "0.005"}]}`, ""},
		{"reference other", `{objectives: [{metric: mean-latency, reference: baseline, upperLimit: "1.10"}]}`, `spec.criteria.objectives[0].reference: Unsupported value: "baseline"`},
		{"reference on a count", `{objectives: [{metric: request-count, reference: live, lowerLimit: 1}]}`, `spec.criteria.objectives[0].reference: Invalid value: "live": request-count cannot be compared with live`},
		{"negative relative limit", `{objectives: [{metric: error-rate, upperLimit: "0.01"}, {metric: mean-latency, reference: live, upperLimit: "-1.1"}]}`, `spec.criteria.objectives[1].upperLimit: Invalid value: "-1.1": must not be negative: relative to live`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := minimalDoc("\n  criteria: " + tc.criteria + "\n")
			e, err := experiment.Parse([]byte(doc))
			if tc.want == "" {
				if err != nil {
					t.Fatalf("valid document refused: %v", err)
				}
				if strings.Contains(tc.criteria, "confidence") && e.Spec.Criteria.Confidence == nil {
					t.Error("confidence lost")
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted; want an error containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q\ndoes not contain %q", err, tc.want)
			}
		})
	}
}
