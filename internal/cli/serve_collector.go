package cli

import (
	"strings"

	"github.com/spf13/pflag"

	"github.com/darklaunch/darklaunch/services/collector"
)

// collectorFlags binds `darklaunch serve collector`'s flags to c.
func collectorFlags(fs *pflag.FlagSet, c *collector.Config) {
	fs.StringVar(&c.Source, "source", collector.SourceBus, "metrics source: "+strings.Join(collector.SourceNames, " or "))
	fs.DurationVar(&c.Grace, "grace", collector.DefaultGrace, "wait after an interval ends for the last observations")
	fs.StringVar(&c.PrometheusURL, "prometheus-url", collector.DefaultPrometheusURL, "Prometheus server queried by --source prometheus")
	fs.StringVar(&c.MetricsFile, "metrics-file", "", "YAML file of metric definitions (PromQL templates) for --source prometheus; empty: the shipped set of --metrics-provider")
	fs.StringVar(&c.MetricsProvider, "metrics-provider", collector.ProviderKnative, "shipped metric definitions for --source prometheus: "+strings.Join(collector.MetricsProviders, " or "))
	fs.DurationVar(&c.QueryTimeout, "query-timeout", collector.DefaultQueryTimeout, "timeout of one Prometheus query")
}
