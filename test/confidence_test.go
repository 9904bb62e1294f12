package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/internal/cli"
	"github.com/darklaunch/darklaunch/internal/sampleapp"
	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

// TestSeedWithConfidenceIsInconclusive is issue 8's "done when", end to
// end through the CLI on the embedded stack: the seed's experiment (1 s
// iterations) with --confidence 0.95 has seen too few requests to show any
// objective either way: INCONCLUSIVE, exit 3, and the verdict names the
// requests still needed and how long they take. -o json carries it all.
func TestSeedWithConfidenceIsInconclusive(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "experiment.yaml")
	if err := os.WriteFile(path, doc("seed-confidence"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := cli.Run(ctx, []string{"run", "--confidence", "0.95", "-o", "json", path}, strings.NewReader(""), &stdout, &stderr)
	if code != cli.ExitInconclusive {
		t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, cli.ExitInconclusive, stdout.String(), stderr.String())
	}
	var x experiment.Experiment
	if err := json.Unmarshal(stdout.Bytes(), &x); err != nil {
		t.Fatalf("-o json: %v\n%s", err, stdout.String())
	}
	a := x.Status.Analysis
	if a == nil || a.Outcome != experiment.VerdictInconclusive || x.Passed() {
		t.Fatalf("analysis %+v, want outcome INCONCLUSIVE and not passed", a)
	}
	if c := x.Spec.Criteria.Confidence; c == nil || *c != 0.95 {
		t.Errorf("spec.criteria.confidence %v, want 0.95 from --confidence", c)
	}
	n := value(&x, experiment.MetricRequestCount, "current")
	if n < 20 || n > 200 {
		t.Fatalf("the dark version saw %v requests, want about 70 (7 s at 40 %% of 25 req/s)", n)
	}
	for _, r := range a.Objectives {
		switch {
		case r.Outcome != experiment.OutcomeInconclusive:
			t.Errorf("%s: outcome %s after %v requests, want inconclusive: %s", r.Metric, r.Outcome, n, r.Reason)
		case r.Interval == nil || r.Interval.Confidence < 0.983 || r.Interval.Confidence > 0.984:
			t.Errorf("%s: interval %+v, want one at Split(0.95, 3) = 98.33 %%", r.Metric, r.Interval)
		case r.Needed == nil || r.Needed.Requests <= 0 || r.Needed.Seconds <= 0 || r.Needed.Rate <= 0:
			t.Errorf("%s: needed %+v, want requests and time", r.Metric, r.Needed)
		case r.Satisfied:
			t.Errorf("%s: satisfied while inconclusive", r.Metric)
		}
	}
	for metric, byVersion := range map[string][]string{
		experiment.MetricMeanLatency: {"current", "live"},
		experiment.MetricErrorRate:   {"current", "live"},
	} {
		for _, v := range byVersion {
			if a.AggregatedIntervals[metric][v] == nil {
				t.Errorf("no %s interval for %s", metric, v)
			}
		}
	}

	if !strings.Contains(stderr.String(), "seed-confidence") {
		t.Errorf("no progress on stderr:\n%s", stderr.String())
	}
	errRate := a.Objectives[2]
	if !strings.Contains(errRate.Reason, "errors in") || !strings.Contains(errRate.Reason, "more requests with no error are needed to show <= 0.010 at 98.33 %") ||
		!strings.Contains(errRate.Reason, "req/s") {
		t.Errorf("error-rate reason %q does not name the requests needed and the time", errRate.Reason)
	}
}

// TestHealthyPassCarriesIntervals: without a confidence level the seed's
// experiment passes as before, and its results still carry each
// objective's interval and outcome, the verdict its outcome.
func TestHealthyPassCarriesIntervals(t *testing.T) {
	t.Parallel()
	e := start(t, sampleapp.Config{}, sampleapp.Config{})
	x := e.run("healthy-intervals", nil)
	e.checkCompleted(x)
	if !x.Passed() || x.Status.Analysis.Outcome != experiment.VerdictPass {
		t.Fatalf("healthy dark version: passed %v, outcome %q", x.Passed(), x.Status.Analysis.Outcome)
	}
	for _, r := range x.Status.Analysis.Objectives {
		if r.Interval == nil || r.Outcome == "" || !r.Satisfied {
			t.Errorf("%s: interval %+v, outcome %q, satisfied %v: want an interval, an outcome, and Iter8's true", r.Metric, r.Interval, r.Outcome, r.Satisfied)
		}
	}
	v := e.events("healthy-intervals", bus.EventVerdict)[0].Verdict
	if v.Outcome != experiment.VerdictPass || v.Confidence != nil || !v.Passed {
		t.Errorf("verdict %+v, want PASS without a confidence level", v)
	}
}
