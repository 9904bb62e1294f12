package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/darklaunch/darklaunch/internal/testenv"
	"github.com/darklaunch/darklaunch/services/collector"
)

func TestCollectorFlags(t *testing.T) {
	var c collector.Config
	fs := pflag.NewFlagSet("collector", pflag.ContinueOnError)
	c.AddFlags(fs)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if c.Source != collector.SourceBus || c.PrometheusURL != collector.DefaultPrometheusURL || c.MetricsProvider != collector.ProviderKnative ||
		c.QueryTimeout != collector.DefaultQueryTimeout || c.MetricsFile != "" || c.Grace != collector.DefaultGrace {
		t.Errorf("defaults: %+v", c)
	}
	err := fs.Parse([]string{"--source", "prometheus", "--prometheus-url", "http://prom:9090", "--metrics-file", "/etc/darklaunch/metrics.yaml",
		"--metrics-provider", "istio", "--query-timeout", "3s", "--grace", "5s"})
	if err != nil {
		t.Fatal(err)
	}
	want := collector.Config{Source: "prometheus", PrometheusURL: "http://prom:9090", MetricsFile: "/etc/darklaunch/metrics.yaml",
		MetricsProvider: "istio", QueryTimeout: 3 * time.Second, Grace: 5 * time.Second}
	if c.Source != want.Source || c.PrometheusURL != want.PrometheusURL || c.MetricsFile != want.MetricsFile ||
		c.MetricsProvider != want.MetricsProvider || c.QueryTimeout != want.QueryTimeout || c.Grace != want.Grace {
		t.Errorf("parsed %+v\nwant %+v", c, want)
	}
}

// TestServeCollectorPrometheus: a bad prometheus setting, by flag or by
// environment, stops `serve collector` at start-up with exit 2 and the
// reason; a good one runs until its context ends.
func TestServeCollectorPrometheus(t *testing.T) {
	srv := testenv.StartNATS(t)
	bad := filepath.Join(t.TempDir(), "metrics.yaml")
	if err := os.WriteFile(bad, []byte("- name: p95\n  query: up\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		args []string
		env  map[string]string
		want string
	}{
		"provider":   {[]string{"--metrics-provider", "linkerd"}, nil, `metrics provider "linkerd": want one of knative, istio`},
		"url":        {[]string{"--prometheus-url", "prometheus:9090"}, nil, `prometheus URL "prometheus:9090"`},
		"file (env)": {nil, map[string]string{"DARKLAUNCH_METRICS_FILE": bad}, `[0].name: unknown metric "p95"`},
	} {
		t.Run(name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			args := append([]string{"serve", "collector", "--server", srv.URL(), "--source", "prometheus"}, tc.args...)
			code, _, stderr := run(t, "", args...)
			if code != ExitInvalid || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, stderr, ExitInvalid, tc.want)
			}
		})
	}

	t.Setenv("DARKLAUNCH_METRICS_PROVIDER", "istio")
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	code := Run(ctx, []string{"serve", "collector", "--server", srv.URL(), "--source", "prometheus", "--prometheus-url", "http://127.0.0.1:9"}, strings.NewReader(""), &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	for _, want := range []string{"collector running", "source=prometheus", "prometheus=http://127.0.0.1:9", "metricsProvider=istio", "metrics=7"} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, errOut.String())
		}
	}
}
