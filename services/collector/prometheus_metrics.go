package collector

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/darklaunch/darklaunch/shared/experiment"
)

// Metric providers: the shipped sets of metric definitions.
const (
	// ProviderKnative queries Knative Serving's queue-proxy metrics
	// (revision_app_request_latencies_*), as Iter8 v2's Knative metrics did.
	ProviderKnative = "knative"
	// ProviderIstio queries Istio's standard metrics (istio_requests_total,
	// istio_request_duration_milliseconds_*) with reporter="destination".
	ProviderIstio = "istio"
)

// MetricsProviders lists the shipped sets, each a file metrics/<name>.yaml.
var MetricsProviders = []string{ProviderKnative, ProviderIstio}

// shippedMetrics holds the shipped sets; the Helm chart copies the same files
// into its ConfigMap, so what runs in a cluster is what is tested here.
//
//go:embed metrics/*.yaml
var shippedMetrics embed.FS

// MetricDefinition is one metric as a PromQL template, in Iter8's style:
//
//   - name: mean-latency
//     units: milliseconds
//     query: sum(increase(..._sum{...}[${elapsedTime}s])) / sum(increase(..._count{...}[${elapsedTime}s]))
//
// The query is evaluated at the end of the window and must return one
// sample (a one-series vector or a scalar); see expandQuery for the
// substitutions.
type MetricDefinition struct {
	// Name is one of experiment.MetricNames(); Iter8's "namespace/name"
	// spelling is accepted and stored as the bare name. The reserved name
	// HistogramMetric defines the optional latency histogram the latency
	// intervals are read from (prometheus_intervals.go).
	Name string `json:"name"`
	// Units, optional: when given it must be the metric's units
	// ("milliseconds" for latencies, none for counts and rates), so a query
	// written in seconds is caught instead of being judged in milliseconds.
	Units string `json:"units,omitempty"`
	// Query is the PromQL template.
	Query string `json:"query"`
}

// ShippedMetrics returns the definitions of a shipped set (ProviderKnative or
// ProviderIstio).
func ShippedMetrics(provider string) ([]MetricDefinition, error) {
	if !slices.Contains(MetricsProviders, provider) {
		return nil, fmt.Errorf("metrics provider %q: want one of %s", provider, strings.Join(MetricsProviders, ", "))
	}
	name := "metrics/" + provider + ".yaml"
	data, err := shippedMetrics.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("metrics provider %q: %w", provider, err)
	}
	defs, err := ParseMetrics(data)
	if err != nil {
		return nil, fmt.Errorf("shipped %s: %w", name, err)
	}
	return defs, nil
}

// LoadMetricsFile reads and checks a YAML file of metric definitions.
func LoadMetricsFile(path string) ([]MetricDefinition, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("metrics file: %w", err)
	}
	defs, err := ParseMetrics(data)
	if err != nil {
		return nil, fmt.Errorf("metrics file %s: %w", path, err)
	}
	return defs, nil
}

// ParseMetrics decodes a YAML list of metric definitions strictly (an unknown
// field is an error, so a misspelt "querry" does not silently drop a metric)
// and checks it with ValidateMetrics.
func ParseMetrics(data []byte) ([]MetricDefinition, error) {
	// Entry by entry, so that an error names the entry it is in.
	var entries []json.RawMessage
	if err := yaml.Unmarshal(data, &entries); err != nil {
		return nil, fmt.Errorf("want a YAML list of {name, units, query}: %w", err)
	}
	defs := make([]MetricDefinition, len(entries))
	var errs []error
	for i, raw := range entries {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&defs[i]); err != nil {
			errs = append(errs, fmt.Errorf("[%d]: want {name, units, query} strings: %s", i, strings.TrimPrefix(err.Error(), "json: ")))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if err := ValidateMetrics(defs); err != nil {
		return nil, err
	}
	for i := range defs {
		defs[i] = normalized(defs[i])
	}
	return defs, nil
}

// ValidateMetrics checks every definition and reports every problem, each
// naming the entry (index and metric) and the field.
func ValidateMetrics(defs []MetricDefinition) error {
	if !slices.ContainsFunc(defs, func(d MetricDefinition) bool { return d.Name != HistogramMetric }) {
		return errors.New("no metric defined")
	}
	var errs []error
	seen := map[string]int{}
	for i, d := range defs {
		at := fmt.Sprintf("[%d]", i)
		info, known := experiment.LookupMetric(d.Name)
		switch {
		case d.Name == HistogramMetric:
			at = fmt.Sprintf("[%d] (%s)", i, HistogramMetric)
			if j, dup := seen[HistogramMetric]; dup {
				errs = append(errs, fmt.Errorf("%s.name: %s is already defined by entry [%d]", at, HistogramMetric, j))
			}
			seen[HistogramMetric] = i
			errs = append(errs, validateHistogramDefinition(at, d)...)
		case d.Name == "":
			errs = append(errs, fmt.Errorf("%s.name: required (one of %s)", at, strings.Join(experiment.MetricNames(), ", ")))
		case !known:
			errs = append(errs, fmt.Errorf("%s.name: unknown metric %q (want one of %s, or %s)", at, d.Name, strings.Join(experiment.MetricNames(), ", "), HistogramMetric))
		default:
			at = fmt.Sprintf("[%d] (%s)", i, info.Name)
			if j, dup := seen[info.Name]; dup {
				errs = append(errs, fmt.Errorf("%s.name: %s is already defined by entry [%d]", at, info.Name, j))
			}
			seen[info.Name] = i
			if d.Units != "" && d.Units != info.Units {
				want := "none (a count or a ratio)"
				if info.Units != "" {
					want = fmt.Sprintf("%q", info.Units)
				}
				errs = append(errs, fmt.Errorf("%s.units: %q, but %s is in %s: scale the query instead", at, d.Units, info.Name, want))
			}
		}
		if strings.TrimSpace(d.Query) == "" {
			errs = append(errs, fmt.Errorf("%s.query: required (a PromQL template)", at))
		}
	}
	return errors.Join(errs...)
}

// normalized stores the bare metric name and its units.
func normalized(d MetricDefinition) MetricDefinition {
	info, _ := experiment.LookupMetric(d.Name)
	if d.Name == HistogramMetric {
		info = experiment.MetricInfo{Name: HistogramMetric, Units: "milliseconds"}
	}
	d.Name, d.Units = info.Name, info.Units
	d.Query = strings.TrimSpace(d.Query)
	return d
}

// queryVars are the values substituted into a template; a variable in
// missing has no value, for the reason given.
type queryVars struct {
	values  map[string]string
	missing map[string]string
}

// expandQuery substitutes the variables of vars into tmpl like Iter8's
// analytics did (Python's string.Template.safe_substitute): "$ident" and
// "${ident}", where ident is [A-Za-z_][A-Za-z0-9_]*, so "$name" never
// matches the start of "$namespace". Unknown placeholders are left as they
// are. A template that uses a variable without a value cannot be expanded:
// the error says which and why.
func expandQuery(tmpl string, vars queryVars) (string, error) {
	var b strings.Builder
	b.Grow(len(tmpl) + 32)
	for i := 0; i < len(tmpl); {
		if tmpl[i] != '$' {
			j := strings.IndexByte(tmpl[i:], '$')
			if j < 0 {
				j = len(tmpl) - i
			}
			b.WriteString(tmpl[i : i+j])
			i += j
			continue
		}
		ident, n := placeholder(tmpl[i:])
		if n == 0 {
			b.WriteByte('$')
			i++
			continue
		}
		if v, ok := vars.values[ident]; ok {
			b.WriteString(v)
		} else if reason, ok := vars.missing[ident]; ok {
			return "", fmt.Errorf("$%s has no value: %s", ident, reason)
		} else {
			b.WriteString(tmpl[i : i+n])
		}
		i += n
	}
	return b.String(), nil
}

// placeholder reads "$ident" or "${ident}" at the start of s; n is 0 when s
// does not start with one.
func placeholder(s string) (ident string, n int) {
	if len(s) > 1 && s[1] == '{' {
		end := strings.IndexByte(s, '}')
		if end < 0 || !isIdent(s[2:end]) {
			return "", 0
		}
		return s[2:end], end + 1
	}
	j := 1
	for j < len(s) && (isIdentStart(s[j]) || (j > 1 && isDigit(s[j]))) {
		j++
	}
	if j == 1 {
		return "", 0
	}
	return s[1:j], j
}

func isIdent(s string) bool {
	if s == "" || !isIdentStart(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if !isIdentStart(s[i]) && !isDigit(s[i]) {
			return false
		}
	}
	return true
}

func isIdentStart(c byte) bool { return c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func isDigit(c byte) bool      { return '0' <= c && c <= '9' }
