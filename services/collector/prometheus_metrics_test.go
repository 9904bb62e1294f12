package collector

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/darklaunch/darklaunch/shared/experiment"
)

// TestShippedMetrics: both shipped sets define every metric darklaunch
// knows, with the right units, and say what the issue requires of them.
func TestShippedMetrics(t *testing.T) {
	t.Parallel()
	for _, provider := range MetricsProviders {
		defs, err := ShippedMetrics(provider)
		if err != nil {
			t.Fatalf("%s: %v", provider, err)
		}
		var names []string
		for _, d := range defs {
			info, _ := experiment.LookupMetric(d.Name)
			if d.Name == HistogramMetric {
				info = experiment.MetricInfo{Name: HistogramMetric, Units: "milliseconds"}
				if !strings.HasSuffix(d.Query, ") by (le)") || !strings.Contains(d.Query, "_bucket{") {
					t.Errorf("%s %s: want sum(increase(..._bucket{...}[${elapsedTime}s])) by (le): %s", provider, d.Name, d.Query)
				}
			} else {
				names = append(names, d.Name)
			}
			if d.Units != info.Units {
				t.Errorf("%s %s: units %q, want %q", provider, d.Name, d.Units, info.Units)
			}
			if !strings.Contains(d.Query, "[${elapsedTime}s]") {
				t.Errorf("%s %s: the window is not the experiment so far: %s", provider, d.Name, d.Query)
			}
			if strings.Contains(d.Query, "\n") {
				t.Errorf("%s %s: query spans lines: %q", provider, d.Name, d.Query)
			}
			switch provider {
			case ProviderIstio:
				// Mirrored traffic is reported only by the destination
				// (istio/istio#23496).
				if strings.Count(d.Query, "reporter='destination'") != strings.Count(d.Query, "istio_") || strings.Contains(d.Query, "'source'") {
					t.Errorf("istio %s: every selector needs reporter='destination': %s", d.Name, d.Query)
				}
			case ProviderKnative:
				if strings.Count(d.Query, "namespace_name='$namespace'") != strings.Count(d.Query, "revision_name='$revision'") {
					t.Errorf("knative %s: every selector needs the revision and its namespace: %s", d.Name, d.Query)
				}
			}
		}
		if !slices.Equal(slices.Sorted(slices.Values(names)), slices.Sorted(slices.Values(experiment.MetricNames()))) {
			t.Errorf("%s defines %v, want every metric of %v", provider, names, experiment.MetricNames())
		}
	}
	if _, err := ShippedMetrics("linkerd"); err == nil || !strings.Contains(err.Error(), "knative, istio") {
		t.Errorf("unknown provider: err = %v, want the known ones listed", err)
	}
}

// TestParseMetricsErrors: a bad file is refused with every problem, each
// naming its entry and field.
func TestParseMetricsErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, yaml string
		want       []string
	}{
		{"not a list", "name: mean-latency\nquery: up\n", []string{"want a YAML list"}},
		{"empty", "[]", []string{"no metric defined"}},
		{"unknown field", "- name: mean-latency\n  querry: up\n", []string{`[0]: want {name, units, query} strings: unknown field "querry"`}},
		{"not a string", "- name: mean-latency\n  query: [up]\n", []string{"[0]: want {name, units, query} strings"}},
		{"every problem", `
- name: mean-latency
  units: seconds
  query: up
- query: up
- name: p95
  query: up
- name: error-rate
- name: iter8-knative/mean-latency
  query: up
- name: request-count
  units: milliseconds
  query: up
`, []string{
			`[0] (mean-latency).units: "seconds", but mean-latency is in "milliseconds"`,
			"[1].name: required",
			`[2].name: unknown metric "p95"`,
			"[3] (error-rate).query: required",
			"[4] (mean-latency).name: mean-latency is already defined by entry [0]",
			`[5] (request-count).units: "milliseconds", but request-count is in none`,
		}},
		{"histogram alone", "- name: latency-histogram\n  query: sum(x_bucket) by (le)\n", []string{"no metric defined"}},
		{"bad histogram", `
- name: mean-latency
  query: up
- name: latency-histogram
  units: seconds
  query: sum(increase(x_bucket[${elapsedTime}s]))
- name: latency-histogram
- name: latency-histgram
  query: up
`, []string{
			`[1] (latency-histogram).units: "seconds", but the bucket edges of latency-histogram are in "milliseconds"`,
			"[1] (latency-histogram).query: latency-histogram must return cumulative counts by bucket, e.g. sum(increase(..._bucket{...}[${elapsedTime}s])) by (le); this query never names le",
			"[2] (latency-histogram).name: latency-histogram is already defined by entry [1]",
			"[2] (latency-histogram).query: required",
			`[3].name: unknown metric "latency-histgram" (want one of request-count, mean-latency, 50th-percentile-tail-latency, 95th-percentile-tail-latency, 99th-percentile-tail-latency, error-count, error-rate, or latency-histogram)`,
		}},
	}
	for _, c := range cases {
		_, err := ParseMetrics([]byte(c.yaml))
		if err == nil {
			t.Errorf("%s: no error", c.name)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q\nlacks %q", c.name, err, w)
			}
		}
	}
}

// TestLoadMetricsFile: a valid file, with Iter8's prefixed names and
// without units, is read as the bare names with their units.
func TestLoadMetricsFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "metrics.yaml")
	content := "- name: iter8-istio/mean-latency\n  query: |\n    sum(x_sum) / sum(x_count)\n- name: error-count\n  units: \"\"\n  query: sum(x_errors)\n"
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	defs, err := LoadMetricsFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := []MetricDefinition{
		{Name: experiment.MetricMeanLatency, Units: "milliseconds", Query: "sum(x_sum) / sum(x_count)"},
		{Name: experiment.MetricErrorCount, Query: "sum(x_errors)"},
	}
	if !slices.Equal(defs, want) {
		t.Errorf("got %+v\nwant %+v", defs, want)
	}
	if _, err := LoadMetricsFile(filepath.Join(t.TempDir(), "absent.yaml")); err == nil || !strings.Contains(err.Error(), "absent.yaml") {
		t.Errorf("absent file: err = %v", err)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("- name: nope\n  query: up\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadMetricsFile(bad); err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), `[0].name: unknown metric "nope"`) {
		t.Errorf("bad file: err = %v, want the path, entry and field", err)
	}
}

func TestExpandQuery(t *testing.T) {
	t.Parallel()
	vars := queryVars{
		values:  map[string]string{"name": "current", "namespace": "default", "elapsedTime": "30", "interval": "30s"},
		missing: map[string]string{"revision": "no live revision", "workload": "no live revision"},
	}
	cases := []struct{ in, want string }{
		{"x{ns='$namespace',n='$name'}[${elapsedTime}s]", "x{ns='default',n='current'}[30s]"},
		{"$name$namespace ${name}x $namex", "currentdefault currentx $namex"},
		{"[$interval] $unknown ${unknown} $ $$ ${ ${1} $1 ${name", "[30s] $unknown ${unknown} $ $$ ${ ${1} $1 ${name"},
		{"no placeholder", "no placeholder"},
		{"", ""},
		{"ends with $", "ends with $"},
	}
	for _, c := range cases {
		got, err := expandQuery(c.in, vars)
		if err != nil || got != c.want {
			t.Errorf("expand %q = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	for _, in := range []string{"x{r='$revision'}", "x{w='${workload}'}"} {
		if _, err := expandQuery(in, vars); err == nil || !strings.Contains(err.Error(), "has no value: no live revision") {
			t.Errorf("expand %q: err = %v, want the missing variable and why", in, err)
		}
	}
}
