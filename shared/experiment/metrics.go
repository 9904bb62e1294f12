package experiment

import "strings"

// Metric names, as Iter8 and the seed spell them. Latencies are in
// milliseconds; every value covers the window from the experiment's start to
// the end of the iteration.
const (
	MetricRequestCount = "request-count"
	MetricErrorCount   = "error-count"
	MetricErrorRate    = "error-rate"
	MetricMeanLatency  = "mean-latency"
	MetricP50Latency   = "50th-percentile-tail-latency"
	MetricP95Latency   = "95th-percentile-tail-latency"
	MetricP99Latency   = "99th-percentile-tail-latency"
)

// MetricInfo describes a metric darklaunch knows.
type MetricInfo struct {
	Name        string
	Units       string // "milliseconds" or ""
	Description string
}

// Metrics lists the metrics darklaunch measures, in report order.
var Metrics = []MetricInfo{
	{MetricRequestCount, "", "requests answered by the version"},
	{MetricMeanLatency, "milliseconds", "mean latency"},
	{MetricP50Latency, "milliseconds", "median latency"},
	{MetricP95Latency, "milliseconds", "95th percentile latency"},
	{MetricP99Latency, "milliseconds", "99th percentile latency"},
	{MetricErrorCount, "", "requests answered with a non-2xx status or not at all"},
	{MetricErrorRate, "", "error-count / request-count"},
}

// LookupMetric finds a metric by name. Iter8 v2alpha2 prefixes metric names
// with the namespace of their definition ("iter8-knative/mean-latency"); the
// prefix is accepted and ignored.
func LookupMetric(name string) (MetricInfo, bool) {
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		name = name[i+1:]
	}
	for _, m := range Metrics {
		if m.Name == name {
			return m, true
		}
	}
	return MetricInfo{}, false
}

// MetricNames returns the known metric names, in report order.
func MetricNames() []string {
	names := make([]string, len(Metrics))
	for i, m := range Metrics {
		names[i] = m.Name
	}
	return names
}
