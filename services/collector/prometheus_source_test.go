package collector

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nuid"

	"github.com/darklaunch/darklaunch/internal/testenv"
	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

// fakeProm plays Prometheus' HTTP query API (/api/v1/query, POST form or
// GET, as client_golang sends it): it records every query and answers with
// answer(query).
type fakeProm struct {
	srv    *httptest.Server
	answer func(query string) (status int, body string)

	mu  sync.Mutex
	got []promCall
}

type promCall struct {
	query   string
	time    time.Time
	timeout string
}

func newFakeProm(t *testing.T, answer func(query string) (int, string)) *fakeProm {
	t.Helper()
	f := &fakeProm{answer: answer}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/query" {
			http.Error(w, "unexpected path "+r.URL.Path, http.StatusNotFound)
			return
		}
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		secs, err := strconv.ParseFloat(r.Form.Get("time"), 64)
		if err != nil {
			http.Error(w, "time: "+err.Error(), http.StatusBadRequest)
			return
		}
		q := r.Form.Get("query")
		f.mu.Lock()
		f.got = append(f.got, promCall{query: q, time: time.UnixMilli(int64(math.Round(secs * 1000))), timeout: r.Form.Get("timeout")})
		f.mu.Unlock()
		status, body := f.answer(q)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeProm) calls() []promCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.got)
}

// Answers in the API's JSON.
func vectorOf(values ...string) string {
	var samples []string
	for i, v := range values {
		samples = append(samples, fmt.Sprintf(`{"metric":{"destination_workload":"w%d"},"value":[1700000000,%q]}`, i, v))
	}
	return `{"status":"success","data":{"resultType":"vector","result":[` + strings.Join(samples, ",") + `]}}`
}

func scalarOf(v string) string {
	return fmt.Sprintf(`{"status":"success","data":{"resultType":"scalar","result":[1700000000,%q]}}`, v)
}

const matrixAnswer = `{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1700000000,"1"]]}]}}`

// seedExperiment is the seed's experiment.yaml, running since start, with
// the live revision the istio router reports.
func seedExperiment(t *testing.T, start time.Time) *experiment.Experiment {
	t.Helper()
	exp := testenv.Seed(t)
	exp.Metadata.UID = nuid.Next()
	testenv.Running(start)(exp)
	exp.Status.Routing = &experiment.RoutingStatus{Backend: "istio", Host: "customdomain.com", Percent: 40, Live: "sample-app-v1", Dark: "sample-app-v2"}
	return exp
}

func newPromSource(t *testing.T, url string, defs []MetricDefinition) *PrometheusSource {
	t.Helper()
	src, err := NewPrometheusSource(url, defs, 2*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	return src
}

func shipped(t *testing.T, provider string) []MetricDefinition {
	t.Helper()
	defs, err := ShippedMetrics(provider)
	if err != nil {
		t.Fatal(err)
	}
	return defs
}

// seedQueries is the exact PromQL the seed experiment's dark version
// (baseline "current", revision sample-app-v2, target namespace default)
// gets 30 s after its start, per metric.
var seedQueries = map[string]map[string]string{
	ProviderKnative: {
		experiment.MetricRequestCount: `sum(increase(revision_app_request_latencies_count{revision_name='sample-app-v2',namespace_name='default'}[30s])) or on() vector(0)`,
		experiment.MetricErrorCount:   `sum(increase(revision_app_request_latencies_count{response_code_class!='2xx',revision_name='sample-app-v2',namespace_name='default'}[30s])) or on() vector(0)`,
		experiment.MetricErrorRate:    `(sum(increase(revision_app_request_latencies_count{response_code_class!='2xx',revision_name='sample-app-v2',namespace_name='default'}[30s])) or on() vector(0)) / sum(increase(revision_app_request_latencies_count{revision_name='sample-app-v2',namespace_name='default'}[30s]))`,
		experiment.MetricMeanLatency:  `sum(increase(revision_app_request_latencies_sum{revision_name='sample-app-v2',namespace_name='default'}[30s])) / sum(increase(revision_app_request_latencies_count{revision_name='sample-app-v2',namespace_name='default'}[30s]))`,
		experiment.MetricP50Latency:   `histogram_quantile(0.5, sum(rate(revision_app_request_latencies_bucket{revision_name='sample-app-v2',namespace_name='default'}[30s])) by (le))`,
		experiment.MetricP95Latency:   `histogram_quantile(0.95, sum(rate(revision_app_request_latencies_bucket{revision_name='sample-app-v2',namespace_name='default'}[30s])) by (le))`,
		experiment.MetricP99Latency:   `histogram_quantile(0.99, sum(rate(revision_app_request_latencies_bucket{revision_name='sample-app-v2',namespace_name='default'}[30s])) by (le))`,
		HistogramMetric:               `sum(increase(revision_app_request_latencies_bucket{revision_name='sample-app-v2',namespace_name='default'}[30s])) by (le)`,
	},
	ProviderIstio: {
		experiment.MetricRequestCount: `sum(increase(istio_requests_total{reporter='destination',destination_workload='sample-app-v2-deployment',destination_workload_namespace='default'}[30s])) or on() vector(0)`,
		experiment.MetricErrorCount:   `sum(increase(istio_requests_total{reporter='destination',response_code=~'5..',destination_workload='sample-app-v2-deployment',destination_workload_namespace='default'}[30s])) or on() vector(0)`,
		experiment.MetricErrorRate:    `(sum(increase(istio_requests_total{reporter='destination',response_code=~'5..',destination_workload='sample-app-v2-deployment',destination_workload_namespace='default'}[30s])) or on() vector(0)) / sum(increase(istio_requests_total{reporter='destination',destination_workload='sample-app-v2-deployment',destination_workload_namespace='default'}[30s]))`,
		experiment.MetricMeanLatency:  `sum(increase(istio_request_duration_milliseconds_sum{reporter='destination',destination_workload='sample-app-v2-deployment',destination_workload_namespace='default'}[30s])) / sum(increase(istio_request_duration_milliseconds_count{reporter='destination',destination_workload='sample-app-v2-deployment',destination_workload_namespace='default'}[30s]))`,
		experiment.MetricP50Latency:   `histogram_quantile(0.5, sum(rate(istio_request_duration_milliseconds_bucket{reporter='destination',destination_workload='sample-app-v2-deployment',destination_workload_namespace='default'}[30s])) by (le))`,
		experiment.MetricP95Latency:   `histogram_quantile(0.95, sum(rate(istio_request_duration_milliseconds_bucket{reporter='destination',destination_workload='sample-app-v2-deployment',destination_workload_namespace='default'}[30s])) by (le))`,
		experiment.MetricP99Latency:   `histogram_quantile(0.99, sum(rate(istio_request_duration_milliseconds_bucket{reporter='destination',destination_workload='sample-app-v2-deployment',destination_workload_namespace='default'}[30s])) by (le))`,
		HistogramMetric:               `sum(increase(istio_request_duration_milliseconds_bucket{reporter='destination',destination_workload='sample-app-v2-deployment',destination_workload_namespace='default'}[30s])) by (le)`,
	},
}

// TestPrometheusSourceSeedQueries: for the seed experiment, each provider's
// shipped set sends exactly the expected PromQL, at the window's end, for
// the dark revision (baseline variable) and the live one (status.routing.live).
func TestPrometheusSourceSeedQueries(t *testing.T) {
	t.Parallel()
	for _, provider := range MetricsProviders {
		t.Run(provider, func(t *testing.T) {
			t.Parallel()
			// Each metric answers its own number, so that a value landing
			// under the wrong metric is seen.
			answers := map[string]string{}
			for i, name := range experiment.MetricNames() {
				answers[seedQueries[provider][name]] = strconv.Itoa(i + 1)
			}
			prom := newFakeProm(t, func(q string) (int, string) {
				if v, ok := answers[q]; ok {
					return http.StatusOK, vectorOf(v)
				}
				return http.StatusOK, vectorOf("1000")
			})
			start := time.Date(2026, 3, 1, 12, 0, 0, 250e6, time.UTC)
			end := start.Add(30 * time.Second)
			w, err := newPromSource(t, prom.srv.URL, shipped(t, provider)).Open(t.Context(), seedExperiment(t, start))
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()

			dark, err := w.Measure(t.Context(), bus.RoleDark, end)
			if err != nil {
				t.Fatal(err)
			}
			want := []string{seedQueries[provider][HistogramMetric]}
			for i, name := range experiment.MetricNames() {
				want = append(want, seedQueries[provider][name])
				if got := val(t, dark.Values, name); got != float64(i+1) {
					t.Errorf("dark %s = %v, want %d (the answer to its own query)", name, got, i+1)
				}
			}
			if len(dark.Reasons) != 0 || dark.Mirror != nil {
				t.Errorf("dark: reasons %v, mirror %v; want none", dark.Reasons, dark.Mirror)
			}
			calls := prom.calls()
			var got []string
			for _, c := range calls {
				got = append(got, c.query)
				if !c.time.Equal(end) || c.timeout != "2s" {
					t.Errorf("query at time %v with timeout %q, want the window's end %v and 2s", c.time, c.timeout, end)
				}
			}
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("dark queries:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}

			if _, err := w.Measure(t.Context(), bus.RoleLive, end); err != nil {
				t.Fatal(err)
			}
			got = nil
			for _, c := range prom.calls()[len(calls):] {
				got = append(got, c.query)
			}
			for i := range want {
				want[i] = strings.ReplaceAll(want[i], "sample-app-v2", "sample-app-v1")
			}
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Errorf("live queries:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

// TestPrometheusSourceAnswers: every answer that is not one finite number,
// and every failed query, makes that metric unavailable with the reason and
// the query, never zero, and the others still count.
func TestPrometheusSourceAnswers(t *testing.T) {
	t.Parallel()
	defs := []MetricDefinition{
		{Name: experiment.MetricRequestCount, Query: "one_sample[${elapsedTime}s]"},
		{Name: experiment.MetricErrorCount, Query: "scalar"},
		{Name: experiment.MetricErrorRate, Query: "empty"},
		{Name: experiment.MetricMeanLatency, Query: "nan"},
		{Name: experiment.MetricP50Latency, Query: "two_series"},
		{Name: experiment.MetricP95Latency, Query: "http_500"},
		{Name: experiment.MetricP99Latency, Query: "bad_promql"},
	}
	answers := map[string]func() (int, string){
		"one_sample[3s]": func() (int, string) { return http.StatusOK, vectorOf("42.5") },
		"scalar":         func() (int, string) { return http.StatusOK, scalarOf("3") },
		"empty":          func() (int, string) { return http.StatusOK, vectorOf() },
		"nan":            func() (int, string) { return http.StatusOK, vectorOf("NaN") },
		"two_series":     func() (int, string) { return http.StatusOK, vectorOf("1", "2") },
		"http_500":       func() (int, string) { return http.StatusInternalServerError, "internal trouble" },
		"bad_promql": func() (int, string) {
			return http.StatusBadRequest, `{"status":"error","errorType":"bad_data","error":"1:11: parse error: unexpected character"}`
		},
	}
	prom := newFakeProm(t, func(q string) (int, string) {
		if a, ok := answers[q]; ok {
			return a()
		}
		return http.StatusBadRequest, `{"status":"error","errorType":"bad_data","error":"unexpected query"}`
	})
	start := time.Now().Add(-time.Minute)
	w, err := newPromSource(t, prom.srv.URL, defs).Open(t.Context(), seedExperiment(t, start))
	if err != nil {
		t.Fatal(err)
	}
	// 2.5 s after the start: ${elapsedTime} is rounded up to whole seconds.
	m, err := w.Measure(t.Context(), bus.RoleDark, start.Add(2500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if got := val(t, m.Values, experiment.MetricRequestCount); got != 42.5 {
		t.Errorf("request-count %v, want 42.5 (a one-sample vector)", got)
	}
	if got := val(t, m.Values, experiment.MetricErrorCount); got != 3 {
		t.Errorf("error-count %v, want 3 (a scalar)", got)
	}
	unavailable := map[string][]string{
		experiment.MetricErrorRate:   {"no value: empty result", "query: empty"},
		experiment.MetricMeanLatency: {"no value: NaN", "query: nan"},
		experiment.MetricP50Latency:  {`2 series where one is wanted`, `{destination_workload="w0"}, {destination_workload="w1"}`, "query: two_series"},
		experiment.MetricP95Latency:  {"query failed: server_error: server error: 500", "query: http_500"},
		experiment.MetricP99Latency:  {"query failed: bad_data: 1:11: parse error: unexpected character", "query: bad_promql"},
	}
	for name, wants := range unavailable {
		if v, ok := m.Values[name]; !ok || v != nil {
			t.Errorf("%s = %v (present %v), want unavailable", name, v, ok)
		}
		for _, w := range wants {
			if !strings.Contains(m.Reasons[name], w) {
				t.Errorf("%s reason %q lacks %q", name, m.Reasons[name], w)
			}
		}
	}
	if len(m.Reasons) != len(unavailable) {
		t.Errorf("reasons %v, want exactly the unavailable metrics'", m.Reasons)
	}

	// ±Inf and a range vector are not values either.
	for q, a := range map[string]string{"inf": vectorOf("+Inf"), "matrix": matrixAnswer} {
		answers[q] = func() (int, string) { return http.StatusOK, a }
	}
	src := newPromSource(t, prom.srv.URL, []MetricDefinition{
		{Name: experiment.MetricMeanLatency, Query: "inf"},
		{Name: experiment.MetricErrorRate, Query: "matrix"},
	})
	w2, _ := src.Open(t.Context(), seedExperiment(t, start))
	m, err = w2.Measure(t.Context(), bus.RoleDark, start.Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		experiment.MetricMeanLatency:  "no value: +Inf",
		experiment.MetricErrorRate:    "no value: a matrix where an instant vector or a scalar is wanted",
		experiment.MetricRequestCount: "no query is defined for this metric",
	} {
		if m.Values[name] != nil || !strings.Contains(m.Reasons[name], want) {
			t.Errorf("%s = %v, reason %q; want unavailable, %q", name, m.Values[name], m.Reasons[name], want)
		}
	}
}

// TestPrometheusSourceUnreachable: when no query reaches Prometheus (no
// answer, or a 503 while it starts) Measure fails so that the clock retries;
// when only some do not, only their metrics are unavailable.
func TestPrometheusSourceUnreachable(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()
	start := time.Now().Add(-time.Minute)
	exp := seedExperiment(t, start)

	w, _ := newPromSource(t, closed, shipped(t, ProviderIstio)).Open(t.Context(), exp)
	if _, err := w.Measure(t.Context(), bus.RoleDark, start.Add(10*time.Second)); err == nil || !strings.Contains(err.Error(), "unreachable") {
		t.Errorf("connection refused: err = %v, want unreachable", err)
	}

	starting := newFakeProm(t, func(string) (int, string) {
		return http.StatusServiceUnavailable, "Service Unavailable"
	})
	w, _ = newPromSource(t, starting.srv.URL, shipped(t, ProviderIstio)).Open(t.Context(), exp)
	if _, err := w.Measure(t.Context(), bus.RoleDark, start.Add(10*time.Second)); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("503: err = %v, want unreachable, with the status", err)
	}

	partly := newFakeProm(t, func(q string) (int, string) {
		if strings.HasPrefix(q, "histogram_quantile") {
			return http.StatusServiceUnavailable, `{"status":"error","errorType":"timeout","error":"query timed out in expression evaluation"}`
		}
		return http.StatusOK, vectorOf("7")
	})
	w, _ = newPromSource(t, partly.srv.URL, shipped(t, ProviderIstio)).Open(t.Context(), exp)
	m, err := w.Measure(t.Context(), bus.RoleDark, start.Add(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if got := val(t, m.Values, experiment.MetricRequestCount); got != 7 {
		t.Errorf("request-count %v, want 7", got)
	}
	if m.Values[experiment.MetricP95Latency] != nil || !strings.Contains(m.Reasons[experiment.MetricP95Latency], "503 Service Unavailable: query timed out") {
		t.Errorf("p95 = %v, reason %q", m.Values[experiment.MetricP95Latency], m.Reasons[experiment.MetricP95Latency])
	}

	// A measurement cut short is no measurement.
	hanging := newFakeProm(t, func(string) (int, string) { time.Sleep(time.Second); return http.StatusOK, vectorOf("1") })
	w, _ = newPromSource(t, hanging.srv.URL, shipped(t, ProviderIstio)).Open(t.Context(), exp)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := w.Measure(ctx, bus.RoleDark, start.Add(10*time.Second)); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("cancelled: err = %v, want the context's error", err)
	}
}

// TestPrometheusSourceUnknownRevision: without the live revision (or the
// baseline's revision variable) the queries that need it are not sent, and
// their metrics are unavailable with the reason.
func TestPrometheusSourceUnknownRevision(t *testing.T) {
	t.Parallel()
	prom := newFakeProm(t, func(string) (int, string) { return http.StatusOK, vectorOf("1") })
	start := time.Now().Add(-time.Minute)
	exp := seedExperiment(t, start)
	exp.Status.Routing = &experiment.RoutingStatus{Backend: "istio"}
	exp.Spec.VersionInfo.Baseline.Variables = nil
	defs := append(shipped(t, ProviderKnative)[:1], MetricDefinition{Name: experiment.MetricErrorCount, Query: "sum(errors{version='$name',ns='$namespace'})"})
	w, err := newPromSource(t, prom.srv.URL, defs).Open(t.Context(), exp)
	if err != nil {
		t.Fatal(err)
	}
	for role, why := range map[string]string{
		bus.RoleLive: "$revision has no value: the router reported no live revision (status.routing.live)",
		bus.RoleDark: "$revision has no value: the baseline has no variable `revision`",
	} {
		m, err := w.Measure(t.Context(), role, start.Add(10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if m.Values[experiment.MetricRequestCount] != nil || !strings.Contains(m.Reasons[experiment.MetricRequestCount], why) {
			t.Errorf("%s request-count = %v, reason %q; want unavailable: %s", role, m.Values[experiment.MetricRequestCount], m.Reasons[experiment.MetricRequestCount], why)
		}
		if got := val(t, m.Values, experiment.MetricErrorCount); got != 1 {
			t.Errorf("%s error-count %v, want 1 (its query needs no revision)", role, got)
		}
	}
	var got []string
	for _, c := range prom.calls() {
		got = append(got, c.query)
	}
	// The roles are measured in map order: compare the queries as a set.
	slices.Sort(got)
	want := []string{"sum(errors{version='current',ns='default'})", "sum(errors{version='live',ns='default'})"}
	if !slices.Equal(got, want) {
		t.Errorf("queries %q, want only %q", got, want)
	}
}

func TestNewPrometheusConfig(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := e.newService(t, Config{Source: SourcePrometheus})
	c := s.Config()
	if c.PrometheusURL != DefaultPrometheusURL || c.MetricsProvider != ProviderKnative || c.QueryTimeout != DefaultQueryTimeout || !slices.Equal(c.Metrics, shipped(t, ProviderKnative)) {
		t.Errorf("prometheus defaults: %+v", c)
	}
	c = e.newService(t, Config{Source: SourcePrometheus, MetricsProvider: ProviderIstio}).Config()
	if !slices.Equal(c.Metrics, shipped(t, ProviderIstio)) {
		t.Errorf("istio provider: metrics %+v", c.Metrics)
	}
	path := t.TempDir() + "/m.yaml"
	if err := os.WriteFile(path, []byte("- name: request-count\n  query: sum(x)\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c = e.newService(t, Config{Source: SourcePrometheus, MetricsFile: path}).Config()
	if len(c.Metrics) != 1 || c.Metrics[0].Query != "sum(x)" {
		t.Errorf("metrics file: metrics %+v", c.Metrics)
	}
	// The bus source ignores the prometheus settings, bad or not.
	e.newService(t, Config{Source: SourceBus, PrometheusURL: "ftp://x", MetricsProvider: "nope"})

	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{PrometheusURL: "ftp://prometheus:9090"}, `prometheus URL "ftp://prometheus:9090": want http(s)://host`},
		{Config{PrometheusURL: "prometheus:9090"}, `want http(s)://host`},
		{Config{PrometheusURL: "http://[::1"}, `prometheus URL "http://[::1"`},
		{Config{MetricsProvider: "linkerd"}, `metrics provider "linkerd": want one of knative, istio`},
		{Config{MetricsFile: path + ".absent"}, "m.yaml.absent"},
		{Config{Metrics: []MetricDefinition{{Name: "p95", Query: "x"}}}, `metric definitions: [0].name: unknown metric "p95"`},
	} {
		c.cfg.Source = SourcePrometheus
		_, err := New(c.cfg, e.NC, nil)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "collector: prometheus source") {
			t.Errorf("New(%+v): err = %v, want %q", c.cfg, err, c.want)
		}
	}
}

// TestCollectorWithPrometheus: the collector with Source "prometheus"
// publishes each iteration's snapshots from the queries' answers, with the
// reasons of the unavailable values and no mirror counts.
func TestCollectorWithPrometheus(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	prom := newFakeProm(t, func(q string) (int, string) {
		switch {
		case strings.HasPrefix(q, "histogram_quantile"):
			return http.StatusOK, vectorOf()
		case strings.Contains(q, "sample-app-v1"):
			return http.StatusOK, vectorOf("10")
		}
		return http.StatusOK, vectorOf("20")
	})
	s := e.newService(t, Config{Source: SourcePrometheus, PrometheusURL: prom.srv.URL, MetricsProvider: ProviderIstio, Grace: 10 * time.Millisecond})
	start := time.Now().Add(-1500 * time.Millisecond).UTC().Truncate(time.Millisecond)
	exp := seedExperiment(t, start)
	one, two := int32(1), int32(2)
	exp.Spec.Duration.IntervalSeconds, exp.Spec.Duration.IterationsPerLoop = &one, &two
	if _, err := e.Store.Create(t.Context(), exp); err != nil {
		t.Fatal(err)
	}
	testenv.Run(t, s)
	events := e.metricsEvents(t, exp, 4, s)
	for i, me := range events {
		snap := me.ev.Snapshot
		k, role := int32(1+i/2), roles[i%2]
		if snap.Iteration != k || snap.Role != role || snap.Source != SourcePrometheus || snap.Mirror != nil {
			t.Errorf("event %d: iteration %d role %s source %s mirror %v; want %d %s prometheus none", i, snap.Iteration, snap.Role, snap.Source, snap.Mirror, k, role)
		}
		want := map[string]float64{bus.RoleLive: 10, bus.RoleDark: 20}[role]
		if got := val(t, snap.Values, experiment.MetricRequestCount); got != want {
			t.Errorf("event %d: request-count %v, want %v", i, got, want)
		}
		if snap.Values[experiment.MetricP95Latency] != nil || !strings.Contains(snap.Errors[experiment.MetricP95Latency], "no value: empty result") {
			t.Errorf("event %d: p95 %v, reason %q", i, snap.Values[experiment.MetricP95Latency], snap.Errors[experiment.MetricP95Latency])
		}
	}
	if snap := events[3].ev.Snapshot; snap.Version != "current" || events[2].ev.Snapshot.Version != experiment.LiveVersion {
		t.Errorf("versions %q and %q, want live and the baseline's name", events[2].ev.Snapshot.Version, snap.Version)
	}
	// Iteration 2 ends 2 s after the start.
	var last []string
	for _, c := range prom.calls() {
		if c.time.Equal(start.Add(2 * time.Second)) {
			last = append(last, c.query)
		}
	}
	if len(last) != 16 || !strings.Contains(last[0], "[2s]") {
		t.Errorf("%d queries at iteration 2's end (want 16, over [2s]): %q", len(last), last)
	}
}
