package collector

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/model"

	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

// envoyBuckets are the bucket bounds (ms) of Istio's
// istio_request_duration_milliseconds, Envoy's defaults.
var envoyBuckets = []float64{0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000}

// istioExporter serves Istio-named metrics of known content, and remembers
// what the destination reporter saw of each workload: the truth the real
// PromQL is checked against.
type istioExporter struct {
	srv      *httptest.Server
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec

	mu    sync.Mutex
	truth map[string]*served // by destination workload, reporter="destination" only
}

type served struct {
	latencies []float64
	errors    int
}

const testNamespace = "default"

func newIstioExporter(t *testing.T) *istioExporter {
	t.Helper()
	labels := []string{"reporter", "destination_workload", "destination_workload_namespace", "response_code"}
	x := &istioExporter{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "istio_requests_total", Help: "Requests (Istio standard metric)."}, labels),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "istio_request_duration_milliseconds", Help: "Request duration (Istio standard metric).", Buckets: envoyBuckets}, labels),
		truth:    map[string]*served{},
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(x.requests, x.duration)
	// Every series exists, at 0, before Prometheus' first scrape: increase()
	// counts from a series' first sample, so a series born with its first
	// requests would lose them.
	for _, reporter := range []string{"destination", "source"} {
		for _, workload := range []string{"sample-app-v1-deployment", "sample-app-v2-deployment"} {
			for _, code := range []string{"200", "500"} {
				x.requests.WithLabelValues(reporter, workload, testNamespace, code)
				x.duration.WithLabelValues(reporter, workload, testNamespace, code)
			}
		}
	}
	x.srv = httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(x.srv.Close)
	return x
}

// serve records one request as Istio's reporter would.
func (x *istioExporter) serve(reporter, workload, code string, latencyMs float64) {
	x.requests.WithLabelValues(reporter, workload, testNamespace, code).Inc()
	x.duration.WithLabelValues(reporter, workload, testNamespace, code).Observe(latencyMs)
	if reporter != "destination" {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	s := x.truth[workload]
	if s == nil {
		s = &served{}
		x.truth[workload] = s
	}
	s.latencies = append(s.latencies, latencyMs)
	if code[0] == '5' {
		s.errors++
	}
}

// promServer is a real Prometheus process on a loopback port.
type promServer struct {
	url string
	api v1.API
}

// startPrometheus runs the Debian package's server with a temporary storage
// and a config scraping target every second; it is killed when the test
// ends. Without the binary the test is skipped, except in CI.
func startPrometheus(t *testing.T, target string) *promServer {
	t.Helper()
	bin := "/usr/bin/prometheus"
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI: no Prometheus server at %s: apt-get install prometheus", bin)
		}
		t.Skipf("no Prometheus server at %s: apt-get install prometheus to run this test", bin)
	}
	dir := t.TempDir()
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 900ms
  evaluation_interval: 1s
scrape_configs:
- job_name: istio
  static_configs:
  - targets: [%q]
`, target)
	cfgFile := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freeLoopbackAddr(t)
	var logs bytes.Buffer
	cmd := exec.Command(bin,
		"--config.file="+cfgFile,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--log.level=warn",
	)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("prometheus output:\n%s", logs.String())
		}
	})

	url := "http://" + addr
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case err := <-exited:
			exited <- err // for the cleanup
			t.Fatalf("prometheus exited at start-up (%v):\n%s", err, logs.String())
		default:
		}
		resp, err := http.Get(url + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus not ready at %s within 20s (last: %v):\n%s", url, err, logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	client, err := api.NewClient(api.Config{Address: url})
	if err != nil {
		t.Fatal(err)
	}
	return &promServer{url: url, api: v1.NewAPI(client)}
}

func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// lastScrape is the time of the newest sample of the dark version's
// destination series, as stored by Prometheus; zero before the first.
func (p *promServer) lastScrape(ctx context.Context) (time.Time, float64, error) {
	sel := `{reporter="destination",destination_workload="sample-app-v2-deployment",destination_workload_namespace="default"}`
	v, _, _, err := p.api.Query(ctx, "max(timestamp(istio_requests_total"+sel+"))", time.Now())
	if err != nil {
		return time.Time{}, 0, err
	}
	vec, ok := v.(model.Vector)
	if !ok || len(vec) != 1 {
		return time.Time{}, 0, nil
	}
	total, _, _, err := p.api.Query(ctx, "sum(istio_requests_total"+sel+")", time.Now())
	if err != nil {
		return time.Time{}, 0, err
	}
	sum, _ := total.(model.Vector)
	if len(sum) != 1 {
		return time.Time{}, 0, nil
	}
	secs := float64(vec[0].Value)
	return time.UnixMilli(int64(math.Round(secs * 1000))), float64(sum[0].Value), nil
}

// waitScrape polls until Prometheus holds a sample of the dark series taken
// after t, and returns that sample's time and the requests it counts.
func (p *promServer) waitScrape(ctx context.Context, t *testing.T, after time.Time) (time.Time, float64) {
	t.Helper()
	for {
		at, total, err := p.lastScrape(ctx)
		if err == nil && at.After(after) {
			return at, total
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no scrape after %s stored by Prometheus (last at %s, err %v): %v", after.Format(time.StampMilli), at.Format(time.StampMilli), err, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// TestPrometheusSourceRealServer: the shipped Istio definitions, run by the
// prometheus source against a real Prometheus scraping Istio-named metrics of
// known content, give the request count, error rate, mean and p95 of what the
// destination reporter saw of each version; the source reporter's series of
// the same workload (slow failures, twice as many) are never counted.
//
// Tolerances:
//   - mean-latency, error-rate, p95 are ratios of increase()s of series
//     scraped at the same instants, which Prometheus extrapolates by the same
//     factor: they are exact (1e-9, float rounding). p95 is the bucket
//     interpolation histogram_quantile does over Envoy's buckets, computed
//     here from the same buckets (not the raw latencies' p95, which it is not).
//   - request-count and error-count are increase()s, which Prometheus
//     extrapolates from the first and last sample in the window to the
//     window's edges. Every series is 0 at the window's first sample (no
//     extrapolation below zero), so only the end is extended: by at most
//     1.1 × the mean scrape interval (1 s) over a sampled span of at least
//     the window (≥ 10 s) less two intervals, i.e. ≤ 14 %. The count must
//     then lie in [N, 1.2·N] (20 % leaves room for late scrapes on a loaded
//     machine); counting the source reporter's series would be > 2·N.
func TestPrometheusSourceRealServer(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 45*time.Second)
	defer cancel()
	x := newIstioExporter(t)
	prom := startPrometheus(t, strings.TrimPrefix(x.srv.URL, "http://"))

	// The experiment starts once Prometheus holds the series at 0; traffic
	// starts after a scrape at 0 within the window, as loadgen's delay does.
	prom.waitScrape(ctx, t, time.Time{})
	start := time.Now().UTC().Truncate(time.Millisecond)
	prom.waitScrape(ctx, t, start)

	const (
		dark, live = "sample-app-v2-deployment", "sample-app-v1-deployment"
		rounds     = 2
	)
	var lastRound time.Time
	for r := range rounds {
		for i := range 100 {
			code := "200"
			if i%20 == 0 {
				code = "500" // 5 % errors
			}
			x.serve("destination", dark, code, 2+1.9*float64(i)+0.3*float64(r))
			// The mirrored copies as the source reporter would see them, had
			// it seen them: slow failures that must never be counted.
			x.serve("source", dark, "500", 4000)
			x.serve("source", dark, "500", 4000)
		}
		for i := range 50 {
			code := "200"
			if i == 7 {
				code = "500"
			}
			x.serve("destination", live, code, 5+0.5*float64(i))
		}
		// Each round in another scrape, as traffic spreads over an interval.
		lastRound, _ = prom.waitScrape(ctx, t, time.Now())
	}

	// The window covers at least 10 s and ends after the last round was
	// scraped; Prometheus must have stored a sample at or after its end.
	end := lastRound.Add(500 * time.Millisecond)
	if min := start.Add(10 * time.Second); end.Before(min) {
		end = min
	}
	if _, total := prom.waitScrape(ctx, t, end); total != 100*rounds {
		t.Fatalf("Prometheus holds %v dark requests, want %d", total, 100*rounds)
	}

	src, err := NewPrometheusSource(prom.url, shipped(t, ProviderIstio), 5*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	w, err := src.Open(ctx, seedExperiment(t, start))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for role, workload := range map[string]string{bus.RoleDark: dark, bus.RoleLive: live} {
		m, err := w.Measure(ctx, role, end)
		if err != nil {
			t.Fatalf("%s: %v", role, err)
		}
		x.mu.Lock()
		truth := x.truth[workload]
		x.mu.Unlock()
		n, errs := float64(len(truth.latencies)), float64(truth.errors)
		var sum float64
		for _, l := range truth.latencies {
			sum += l
		}
		t.Logf("%s over %s: %v; reasons %v", role, end.Sub(start), printable(m.Values), m.Reasons)

		count := valOr(t, m, experiment.MetricRequestCount)
		if count < n*(1-1e-9) || count > 1.2*n {
			t.Errorf("%s request-count %v, want %v within [N, 1.2·N] (increase() extrapolation)", role, count, n)
		}
		if got := valOr(t, m, experiment.MetricErrorCount); got < errs*(1-1e-9) || got > 1.2*errs {
			t.Errorf("%s error-count %v, want %v within [N, 1.2·N]", role, got, errs)
		}
		checkClose(t, role+" error-rate", valOr(t, m, experiment.MetricErrorRate), errs/n)
		checkClose(t, role+" mean-latency", valOr(t, m, experiment.MetricMeanLatency), sum/n)
		checkClose(t, role+" p95", valOr(t, m, experiment.MetricP95Latency), bucketQuantile(0.95, truth.latencies, envoyBuckets))
		checkClose(t, role+" p50", valOr(t, m, experiment.MetricP50Latency), bucketQuantile(0.5, truth.latencies, envoyBuckets))
	}
}

func valOr(t *testing.T, m Measurement, name string) float64 {
	t.Helper()
	v := m.Values[name]
	if v == nil {
		t.Errorf("%s unavailable: %s", name, m.Reasons[name])
		return math.NaN()
	}
	return *v
}

func checkClose(t *testing.T, what string, got, want float64) {
	t.Helper()
	if math.IsNaN(got) || math.Abs(got-want) > 1e-9*math.Max(1, math.Abs(want)) {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

func printable(values map[string]*float64) map[string]string {
	out := map[string]string{}
	for k, v := range values {
		if v == nil {
			out[k] = "unavailable"
		} else {
			out[k] = fmt.Sprintf("%.4g", *v)
		}
	}
	return out
}

// bucketQuantile is what histogram_quantile returns for these observations
// in these buckets: the bucket holding rank q·n, interpolated linearly
// between its bounds (the first bucket's lower bound is 0).
func bucketQuantile(q float64, observations, bounds []float64) float64 {
	cum := make([]float64, len(bounds))
	for _, o := range observations {
		for i, b := range bounds {
			if o <= b {
				cum[i]++
			}
		}
	}
	rank := q * float64(len(observations))
	lower, below := 0.0, 0.0
	for i, b := range bounds {
		if cum[i] >= rank {
			return lower + (b-lower)*(rank-below)/(cum[i]-below)
		}
		lower, below = b, cum[i]
	}
	return bounds[len(bounds)-1]
}
