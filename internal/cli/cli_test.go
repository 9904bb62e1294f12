package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/internal/sampleapp"
	"github.com/darklaunch/darklaunch/shared/bus"
)

func run(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	code = Run(ctx, args, strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "experiment.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func readExample(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "examples", "mirroring", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestRunBadInputExits2WithFieldAndNoTrace(t *testing.T) {
	local := readExample(t, "experiment-local.yaml")
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"malformed":        {[]string{"run", writeFile(t, "apiVersion: iter8.tools/v2alpha1\nspec: [\n")}, "document"},
		"negative percent": {[]string{"run", writeFile(t, strings.Replace(local, "percent: 40", "percent: -5", 1))}, "spec.mirroring.percent: Invalid value: -5"},
		"unknown metric":   {[]string{"run", writeFile(t, strings.Replace(local, "metric: error-rate", "metric: error-ratio", 1))}, `spec.criteria.objectives[2].metric: Unsupported value: "error-ratio"`},
		"missing file":     {[]string{"run", filepath.Join(t.TempDir(), "nope.yaml")}, "no such file"},
		"bad --dark":       {[]string{"run", "--dark", "not a url", writeFile(t, local)}, "spec.mirroring.darkURL"},
		"bad output":       {[]string{"run", "-o", "xml", writeFile(t, local)}, "--output"},
		"no args":          {[]string{"run"}, "accepts 1 arg"},
		// issue 8: the confidence level, stopEarly and relative objectives.
		"--confidence 1.5":  {[]string{"run", "--confidence", "1.5", writeFile(t, local)}, "spec.criteria.confidence: Invalid value: 1.5"},
		"--confidence 0":    {[]string{"run", "--confidence", "0", writeFile(t, local)}, "spec.criteria.confidence: Invalid value: 0"},
		"confidence 0.3":    {[]string{"run", writeFile(t, strings.Replace(local, "objectives:", "confidence: 0.3\n    objectives:", 1))}, "spec.criteria.confidence: Invalid value: 0.3"},
		"stopEarly alone":   {[]string{"run", writeFile(t, strings.Replace(local, "objectives:", "stopEarly: true\n    objectives:", 1))}, "spec.criteria.confidence: Required value"},
		"reference dark":    {[]string{"run", writeFile(t, strings.Replace(local, "- metric: error-rate", "- reference: dark\n      metric: error-rate", 1))}, `spec.criteria.objectives[2].reference: Unsupported value: "dark"`},
		"negative relative": {[]string{"run", writeFile(t, strings.Replace(local, "- metric: mean-latency\n      upperLimit: 50", "- metric: mean-latency\n      reference: live\n      upperLimit: -1.1", 1))}, "spec.criteria.objectives[0].upperLimit: Invalid value"},
	} {
		t.Run(name, func(t *testing.T) {
			code, stdout, stderr := run(t, "", tc.args...)
			if code != ExitInvalid {
				t.Errorf("exit %d, want 2", code)
			}
			if !strings.Contains(stderr, tc.want) {
				t.Errorf("stderr does not name the problem %q:\n%s", tc.want, stderr)
			}
			if strings.Contains(stderr, "goroutine") || strings.Contains(stderr, "panic") {
				t.Errorf("stack trace on stderr:\n%s", stderr)
			}
			if stdout != "" {
				t.Errorf("stdout not empty: %q", stdout)
			}
		})
	}
}

// TestRunLocalExample is the README's first command, shortened: the local
// example on the embedded stack passes (exit 0) with the describe report,
// and pointed with --dark at a version 80 ms slower it fails (exit 1).
func TestRunLocalExample(t *testing.T) {
	path := filepath.Join("..", "..", "examples", "mirroring", "experiment-local.yaml")
	t.Run("pass", func(t *testing.T) {
		t.Parallel()
		code, stdout, stderr := run(t, "", "run", path)
		if code != ExitPass {
			t.Fatalf("exit %d, want 0\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
		}
		for _, want := range []string{
			"Experiment stage: Completed",
			"Number of completed iterations: 7",
			"| mean-latency <= 50.000         | true    |",
			"| error-rate <= 0.010            | true    |",
			"PASS: the dark version current meets all 3 objectives",
		} {
			if !strings.Contains(stdout, want) {
				t.Errorf("report lacks %q:\n%s", want, stdout)
			}
		}
		if !strings.Contains(stderr, "IterationUpdate: Completed Iteration 3") {
			t.Errorf("no progress line on stderr:\n%s", stderr)
		}
	})
	t.Run("inconclusive at 95 %", func(t *testing.T) {
		t.Parallel()
		code, stdout, stderr := run(t, "", "run", "--confidence", "0.95", path)
		if code != ExitInconclusive {
			t.Fatalf("exit %d, want 3\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
		}
		for _, want := range []string{
			"| mean-latency <= 50.000         | inconclusive |",
			"| error-rate <= 0.010            | inconclusive |",
			"INTERVAL AT 98.33 %",
			"INCONCLUSIVE: 3 of 3 objectives of the dark version current are not shown either way at 95 % confidence",
			"more requests with no error are needed to show <= 0.010 at 98.33 %",
		} {
			if !strings.Contains(stdout, want) {
				t.Errorf("report lacks %q:\n%s", want, stdout)
			}
		}
	})
	t.Run("slow dark fails", func(t *testing.T) {
		t.Parallel()
		slow, err := sampleapp.New(sampleapp.Config{Name: "green-slow", Latency: 80 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		if err := slow.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { slow.Stop(context.Background()) })
		code, stdout, stderr := run(t, "", "run", "--dark", slow.URL(), "-o", "json", path)
		if code != ExitFail {
			t.Fatalf("exit %d, want 1\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
		}
		var got struct {
			Status struct {
				Analysis struct {
					VersionAssessments map[string][]bool `json:"versionAssessments"`
				} `json:"analysis"`
			} `json:"status"`
		}
		if err := json.Unmarshal([]byte(stdout), &got); err != nil {
			t.Fatalf("-o json is not JSON: %v\n%s", err, stdout)
		}
		if a := got.Status.Analysis.VersionAssessments["current"]; len(a) != 3 || a[0] || !a[2] {
			t.Errorf("assessments %v, want mean-latency false, error-rate true", a)
		}
		if slow.Served() == 0 {
			t.Error("the --dark version got no mirrored request")
		}
	})
}

func TestDecode(t *testing.T) {
	ev := bus.Event{Type: bus.EventIteration, Namespace: "default", Name: "x", Iteration: &bus.Iteration{Number: 3, Total: 7}}
	data, err := bus.Marshal(bus.ContentTypeMsgpack, ev)
	if err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := run(t, string(data), "decode")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("not JSON: %v: %s", err, stdout)
	}
	if got["type"] != "iteration" || got["iteration"].(map[string]any)["number"] != float64(3) {
		t.Errorf("decoded %s", stdout)
	}
	if code, _, stderr := run(t, "\xc1\xc1", "decode"); code != ExitInvalid || stderr == "" {
		t.Errorf("garbage: exit %d, stderr %q", code, stderr)
	}
}

func TestClientCommandsWithoutServerExplain(t *testing.T) {
	code, _, stderr := run(t, "", "--server", "nats://127.0.0.1:1", "list")
	if code != ExitInvalid || !strings.Contains(stderr, "darklaunch dev") {
		t.Errorf("exit %d, stderr %q: want 2 and a hint to start darklaunch dev", code, stderr)
	}
}
