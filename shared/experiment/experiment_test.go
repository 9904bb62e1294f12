package experiment_test

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/shared"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

func readSeed(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/seed-experiment.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseSeedVerbatim(t *testing.T) {
	e, err := experiment.Parse(readSeed(t))
	if err != nil {
		t.Fatalf("the seed's experiment.yaml must parse: %v", err)
	}
	if got := e.Key(); got != "default/mirroring" {
		t.Errorf("key = %q", got)
	}
	if e.IntervalSeconds() != 10 || e.TotalIterations() != 7 {
		t.Errorf("duration = %d s × %d", e.IntervalSeconds(), e.TotalIterations())
	}
	if *e.Spec.Duration.MaxLoops != 1 {
		t.Errorf("maxLoops default = %d, want 1", *e.Spec.Duration.MaxLoops)
	}
	objs := e.Spec.Criteria.Objectives
	if len(objs) != 3 {
		t.Fatalf("objectives = %d", len(objs))
	}
	want := []struct {
		metric string
		upper  float64
	}{{"mean-latency", 50}, {"95th-percentile-tail-latency", 100}, {"error-rate", 0.01}}
	for i, w := range want {
		if objs[i].Metric != w.metric || objs[i].UpperLimit.Float64() != w.upper {
			t.Errorf("objective %d = %s ≤ %v, want %s ≤ %v", i, objs[i].Metric, objs[i].UpperLimit.Float64(), w.metric, w.upper)
		}
	}
	if rev, ok := e.BaselineVariable("revision"); !ok || rev != "sample-app-v2" {
		t.Errorf("baseline revision = %q", rev)
	}
	if ns, name := e.TargetNamespaceName(); ns != "default" || name != "sample-app" {
		t.Errorf("target = %s/%s", ns, name)
	}
}

func TestDefaultsFollowIter8(t *testing.T) {
	doc := minimalDoc(`
  criteria:
    objectives: [{metric: error-rate, upperLimit: 100m}]
`)
	e, err := experiment.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if e.IntervalSeconds() != 20 || e.TotalIterations() != 15 || e.Metadata.Namespace != "default" || e.BaselineName() != "current" {
		t.Errorf("defaults: interval %d, iterations %d, ns %q, baseline %q", e.IntervalSeconds(), e.TotalIterations(), e.Metadata.Namespace, e.BaselineName())
	}
	if got := e.Spec.Criteria.Objectives[0].UpperLimit.Float64(); got != 0.1 {
		t.Errorf("100m = %v", got)
	}
	if ns, _ := e.TargetNamespaceName(); ns != "default" {
		t.Errorf("target namespace = %q", ns)
	}
}

func TestValidationNamesEveryField(t *testing.T) {
	doc := `apiVersion: iter8.tools/v2alpha1
kind: Experiment
metadata: {name: Bad_Name}
spec:
  strategy: {testingPattern: Canary}
  criteria:
    objectives:
    - metric: mean-latency
      upperLimit: 50
    - metric: p95-latency
      upperLimit: abc
    - metric: error-rate
      lowerLimit: 2
      upperLimit: 1
  duration: {intervalSeconds: 0}
  mirroring: {percent: -5, liveURL: "ftp://x"}
  load: {rate: -1, delay: soon}
`
	_, err := experiment.Parse([]byte(doc))
	if err == nil {
		t.Fatal("want an error")
	}
	if !errors.Is(err, shared.ErrInvalid) {
		t.Errorf("errors.Is(err, ErrInvalid) = false for %v", err)
	}
	msg := err.Error()
	for _, want := range []string{
		"metadata.name",
		"spec.target: Required value",
		`spec.strategy.testingPattern: Unsupported value: "Canary"`,
		`spec.criteria.objectives[1].metric: Unsupported value: "p95-latency"`,
		`spec.criteria.objectives[1].upperLimit: Invalid value: "abc"`,
		"spec.criteria.objectives[2].lowerLimit",
		"spec.duration.intervalSeconds",
		"spec.mirroring.percent: Invalid value: -5",
		"spec.mirroring.liveURL",
		"spec.load.rate",
		`spec.load.delay: Invalid value: "soon"`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not mention %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "objectives[0]") {
		t.Errorf("the valid objective is reported:\n%s", msg)
	}
}

func TestDecodeErrors(t *testing.T) {
	for name, tc := range map[string]struct {
		doc  string
		want string
		is   error
	}{
		"malformed yaml": {"apiVersion: [\n", "document", shared.ErrInvalid},
		"empty":          {"  \n", "document: Required value", shared.ErrInvalid},
		"unknown field":  {"apiVersion: iter8.tools/v2alpha1\nspec:\n  criteria:\n    objectives:\n    - metric: x\n      upperlimit: 3\n", "spec.criteria.objectives[0].upperlimit: Forbidden: unknown field", shared.ErrInvalid},
		"two documents":  {"kind: Experiment\n---\nkind: Experiment\n", "2 YAML documents", shared.ErrInvalid},
		"wrong type":     {"spec:\n  duration:\n    intervalSeconds: ten\n", "intervalSeconds", shared.ErrInvalid},
		"too large":      {strings.Repeat("#", experiment.MaxDocumentBytes+1), "limit is", shared.ErrTooLarge},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := experiment.Parse([]byte(tc.doc))
			if err == nil {
				t.Fatal("want an error")
			}
			if !errors.Is(err, tc.is) {
				t.Errorf("errors.Is(%v) = false", tc.is)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

func TestSeconds(t *testing.T) {
	doc := minimalDoc(`
  criteria: {objectives: [{metric: error-rate, upperLimit: 1}]}
  load: {delay: 1.5, duration: 1m, timeout: "2"}
`)
	e, err := experiment.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	l := e.Spec.Load
	if l.Delay.Duration != 1500*time.Millisecond || l.Duration.Duration != time.Minute || l.Timeout.Duration != 2*time.Second {
		t.Errorf("delay %v duration %v timeout %v", l.Delay, l.Duration, l.Timeout)
	}
}

// TestLimitFloat64IsNearest: a limit reads as the float64 nearest its
// decimal text, so a value exactly at the limit is within it (Iter8's bounds
// are inclusive). Quantity's own approximation rounds many decimals up.
func TestLimitFloat64IsNearest(t *testing.T) {
	for _, s := range []string{"0.95", "0.3", "2.3", "0.57", "0.009", "0.01", "50", "100m", "1e3", "1.5k", "0.000001"} {
		l := experiment.NewLimit(s)
		want, _ := strconv.ParseFloat(l.AsDec().String(), 64)
		if got := l.Float64(); got != want {
			t.Errorf("%s: %v, want %v", s, got, want)
		}
	}
	if got := experiment.NewLimit("0.95").Float64(); got != 0.95 {
		t.Errorf("0.95 reads as %v", got)
	}
	if got := experiment.NewLimit("100m").Float64(); got != 0.1 {
		t.Errorf("100m reads as %v", got)
	}
}

// TestLoadRateLimit: spec.load.rate is accepted up to MaxLoadRate, 100,000
// req/s (about what one loadgen sends from 2 cores; 10,000 before), and
// refused above it with the field and the bound named.
func TestLoadRateLimit(t *testing.T) {
	if experiment.MaxLoadRate != 100000 {
		t.Errorf("MaxLoadRate %d, want 100000", experiment.MaxLoadRate)
	}
	for _, tc := range []struct {
		rate string
		ok   bool
	}{
		{"0", true}, {"2", true}, {"50000", true}, {"65000.5", true}, {"100000", true},
		{"100000.5", false}, {"1e6", false}, {"-1", false},
	} {
		_, err := experiment.Parse([]byte(minimalDoc(`
  criteria: {objectives: [{metric: error-rate, upperLimit: 1}]}
  load: {rate: ` + tc.rate + `}
`)))
		switch {
		case tc.ok && err != nil:
			t.Errorf("rate %s: %v, want it accepted", tc.rate, err)
		case !tc.ok && err == nil:
			t.Errorf("rate %s accepted, want it refused", tc.rate)
		case !tc.ok:
			for _, want := range []string{"spec.load.rate: Invalid value: ", "between 0 and 100000"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("rate %s: error %q does not say %q", tc.rate, err, want)
				}
			}
		}
	}
}

// minimalDoc is the smallest valid experiment, named x, with more of its
// spec (indented two spaces) after the strategy.
func minimalDoc(spec string) string {
	return `apiVersion: iter8.tools/v2alpha1
kind: Experiment
metadata: {name: x}
spec:
  target: app
  strategy: {testingPattern: Conformance}` + spec
}
