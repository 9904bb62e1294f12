package collector

import (
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func TestCollectorFlags(t *testing.T) {
	var c Config
	fs := pflag.NewFlagSet("collector", pflag.ContinueOnError)
	c.AddFlags(fs)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if c.Source != SourceBus || c.PrometheusURL != DefaultPrometheusURL || c.MetricsProvider != ProviderKnative ||
		c.QueryTimeout != DefaultQueryTimeout || c.MetricsFile != "" || c.Grace != DefaultGrace {
		t.Errorf("defaults: %+v", c)
	}
	err := fs.Parse([]string{"--source", "prometheus", "--prometheus-url", "http://prom:9090", "--metrics-file", "/etc/darklaunch/metrics.yaml",
		"--metrics-provider", "istio", "--query-timeout", "3s", "--grace", "5s"})
	if err != nil {
		t.Fatal(err)
	}
	want := Config{Source: "prometheus", PrometheusURL: "http://prom:9090", MetricsFile: "/etc/darklaunch/metrics.yaml",
		MetricsProvider: "istio", QueryTimeout: 3 * time.Second, Grace: 5 * time.Second}
	if c.Source != want.Source || c.PrometheusURL != want.PrometheusURL || c.MetricsFile != want.MetricsFile ||
		c.MetricsProvider != want.MetricsProvider || c.QueryTimeout != want.QueryTimeout || c.Grace != want.Grace {
		t.Errorf("parsed %+v\nwant %+v", c, want)
	}
}
