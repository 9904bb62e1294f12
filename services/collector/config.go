package collector

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"

	"github.com/darklaunch/darklaunch/shared/service"
)

// Config is the collector's configuration; every zero value takes the
// default written next to it (applied by New).
type Config struct {
	// Source of the measurements: "bus" (the router proxy's observations)
	// or "prometheus" (PromQL against a Prometheus server). Default "bus".
	Source string
	// Grace is how long after an iteration's end the collector waits before
	// measuring it, for the proxy's last flush of that iteration to arrive.
	// Default 1500ms.
	Grace time.Duration
	// CatchUp bounds how long the bus source waits to read the observations
	// already stored before it measures. Default 2s.
	CatchUp time.Duration
	// MeasureTimeout is how long a failing measurement (NATS restarting,
	// observations not caught up) is retried before the snapshot is
	// published with its values unavailable. Default 10s.
	MeasureTimeout time.Duration
	// Instance names this collector in its logs. Default a new NUID.
	Instance string

	// The prometheus source's settings (ignored by the bus source).

	// PrometheusURL is the Prometheus server's base URL, http or https.
	// Default DefaultPrometheusURL.
	PrometheusURL string
	// MetricsFile is a YAML file of metric definitions (see
	// MetricDefinition). Empty: the shipped set of MetricsProvider.
	MetricsFile string
	// MetricsProvider names the shipped set used when MetricsFile is empty:
	// "knative" (Knative Serving's revision metrics) or "istio" (Istio's
	// standard metrics). Default "knative".
	MetricsProvider string
	// Metrics are the metric definitions themselves, for embedders and
	// tests; when set, MetricsFile and MetricsProvider are not consulted.
	// New fills them in from the file or the shipped set.
	Metrics []MetricDefinition
	// QueryTimeout bounds one PromQL query (the queries of a measurement run
	// in parallel). A hanging Prometheus is retried only while a measurement
	// ends within MeasureTimeout, so keep it below MeasureTimeout for
	// retries. Default DefaultQueryTimeout.
	QueryTimeout time.Duration

	// Registry receives the collector's Prometheus metrics. Default a new
	// private one.
	Registry *prometheus.Registry
}

// Defaults.
const (
	DefaultGrace          = 1500 * time.Millisecond
	DefaultMeasureTimeout = 10 * time.Second
)

// Default fills in the default of every zero field.
func (c *Config) Default() {
	if c.Source == "" {
		c.Source = SourceBus
	}
	if c.Grace <= 0 {
		c.Grace = DefaultGrace
	}
	if c.CatchUp <= 0 {
		c.CatchUp = DefaultCatchUp
	}
	if c.MeasureTimeout <= 0 {
		c.MeasureTimeout = DefaultMeasureTimeout
	}
	if c.Instance == "" {
		c.Instance = nuid.Next()
	}
	if c.PrometheusURL == "" {
		c.PrometheusURL = DefaultPrometheusURL
	}
	if c.MetricsProvider == "" {
		c.MetricsProvider = ProviderKnative
	}
	if c.QueryTimeout <= 0 {
		c.QueryTimeout = DefaultQueryTimeout
	}
	if c.Registry == nil {
		c.Registry = prometheus.NewRegistry()
	}
}

// Validate reports a setting of the configured source that cannot work.
func (c *Config) Validate() error {
	if !slices.Contains(SourceNames, c.Source) {
		return unknownSource(c.Source)
	}
	if c.Source != SourcePrometheus {
		return nil
	}
	if err := checkPrometheusURL(c.PrometheusURL); err != nil {
		return fmt.Errorf("%s source: %w", c.Source, err)
	}
	// A misspelt provider is an error even when a file overrides it: it
	// shows a configuration that does not say what its author meant.
	if !slices.Contains(MetricsProviders, c.MetricsProvider) {
		return fmt.Errorf("%s source: metrics provider %q: want one of %s", c.Source, c.MetricsProvider, strings.Join(MetricsProviders, ", "))
	}
	if c.Metrics != nil {
		if err := ValidateMetrics(c.Metrics); err != nil {
			return fmt.Errorf("%s source: metric definitions: %w", c.Source, err)
		}
	}
	return nil
}

// loadMetrics reads the prometheus source's metric definitions from
// MetricsFile or the shipped set, unless they were given.
func (c *Config) loadMetrics() error {
	if c.Source != SourcePrometheus || c.Metrics != nil {
		return nil
	}
	var err error
	if c.MetricsFile != "" {
		c.Metrics, err = LoadMetricsFile(c.MetricsFile)
	} else {
		c.Metrics, err = ShippedMetrics(c.MetricsProvider)
	}
	return err
}

// AddFlags binds `darklaunch serve collector`'s flags to c.
func (c *Config) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.Source, "source", SourceBus, "metrics source: "+strings.Join(SourceNames, " or "))
	fs.DurationVar(&c.Grace, "grace", DefaultGrace, "wait after an interval ends for the last observations")
	fs.StringVar(&c.PrometheusURL, "prometheus-url", DefaultPrometheusURL, "Prometheus server queried by --source prometheus")
	fs.StringVar(&c.MetricsFile, "metrics-file", "", "YAML file of metric definitions (PromQL templates) for --source prometheus; empty: the shipped set of --metrics-provider")
	fs.StringVar(&c.MetricsProvider, "metrics-provider", ProviderKnative, "shipped metric definitions for --source prometheus: "+strings.Join(MetricsProviders, " or "))
	fs.DurationVar(&c.QueryTimeout, "query-timeout", DefaultQueryTimeout, "timeout of one Prometheus query")
	fs.StringVar(&c.Instance, "instance", c.Instance, "this instance's name among the service's replicas (default: a random NUID; the chart uses the pod's name)")
}

// Service names the collector.
func (c *Config) Service() string { return Name }

// Build makes a collector with its host's connection, logger, registry and
// stream limits.
func (c *Config) Build(d service.Deps) (service.Runner, error) {
	cfg := *c
	d.FillRegistry(&cfg.Registry)
	return New(cfg, d.NC, d.Log)
}

// Spec describes the collector to its hosts.
func Spec() service.Spec {
	return service.SpecOf[Config]("Publish a metrics snapshot of every version each interval")
}
