// Package promtest runs a real Prometheus server for tests (the Debian
// package's binary, on a loopback port, storage in t.TempDir(), scraping
// every second) and an exporter of Istio-named metrics of known content, so
// that the collector's PromQL is checked against what Prometheus really
// computes.
package promtest

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/internal/testenv"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/model"
)

// EnvoyBuckets are the bucket bounds (ms) of Istio's
// istio_request_duration_milliseconds, Envoy's defaults.
var EnvoyBuckets = []float64{0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000}

// IstioExporter serves Istio-named metrics of known content, and remembers
// what the destination reporter saw of each workload: the truth the real
// PromQL is checked against.
type IstioExporter struct {
	Srv      *httptest.Server
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec

	Mu    sync.Mutex
	Truth map[string]*Served // by destination workload, reporter="destination" only
}

// Served is what the destination reporter saw of one workload.
type Served struct {
	Latencies []float64
	Errors    int
}

// Namespace of the exporter's series.
const Namespace = "default"

// NewIstioExporter serves the series of the workloads
// sample-app-v1-deployment and sample-app-v2-deployment, and of the extra
// workloads named, all in Namespace, until the test ends.
func NewIstioExporter(t testing.TB, workloads ...string) *IstioExporter {
	t.Helper()
	labels := []string{"reporter", "destination_workload", "destination_workload_namespace", "response_code"}
	x := &IstioExporter{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "istio_requests_total", Help: "Requests (Istio standard metric)."}, labels),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "istio_request_duration_milliseconds", Help: "Request duration (Istio standard metric).", Buckets: EnvoyBuckets}, labels),
		Truth:    map[string]*Served{},
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(x.requests, x.duration)
	// Every series exists, at 0, before Prometheus' first scrape: increase()
	// counts from a series' first sample, so a series born with its first
	// requests would lose them.
	for _, reporter := range []string{"destination", "source"} {
		for _, workload := range append([]string{"sample-app-v1-deployment", "sample-app-v2-deployment"}, workloads...) {
			for _, code := range []string{"200", "500"} {
				x.requests.WithLabelValues(reporter, workload, Namespace, code)
				x.duration.WithLabelValues(reporter, workload, Namespace, code)
			}
		}
	}
	x.Srv = httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(x.Srv.Close)
	return x
}

// Serve records one request as Istio's reporter would.
func (x *IstioExporter) Serve(reporter, workload, code string, latencyMs float64) {
	x.requests.WithLabelValues(reporter, workload, Namespace, code).Inc()
	x.duration.WithLabelValues(reporter, workload, Namespace, code).Observe(latencyMs)
	if reporter != "destination" {
		return
	}
	x.Mu.Lock()
	defer x.Mu.Unlock()
	s := x.Truth[workload]
	if s == nil {
		s = &Served{}
		x.Truth[workload] = s
	}
	s.Latencies = append(s.Latencies, latencyMs)
	if code[0] == '5' {
		s.Errors++
	}
}

// DestinationRequests is how many requests the destination reporter has
// seen, of every workload.
func (x *IstioExporter) DestinationRequests() float64 {
	x.Mu.Lock()
	defer x.Mu.Unlock()
	var n int
	for _, s := range x.Truth {
		n += len(s.Latencies)
	}
	return float64(n)
}

// Server is a real Prometheus process on a loopback port.
type Server struct {
	URL string
	API v1.API
}

// Start runs the Debian package's server with a temporary storage
// and a config scraping target every second; it is killed when the test
// ends. Without the binary the test is skipped, except in CI.
func Start(t testing.TB, target string) *Server {
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
	addr := testenv.FreeAddr(t)
	var logs testenv.Buffer
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
	testenv.EventuallyWithin(t, 20*time.Second, "prometheus to be ready at "+url, func() (bool, string) {
		select {
		case err := <-exited:
			exited <- err // for the cleanup
			t.Fatalf("prometheus exited at start-up (%v):\n%s", err, logs.String())
		default:
		}
		resp, err := http.Get(url + "/-/ready")
		if err != nil {
			return false, err.Error() + "\n" + logs.String()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status + "\n" + logs.String()
	})
	client, err := api.NewClient(api.Config{Address: url})
	if err != nil {
		t.Fatal(err)
	}
	return &Server{URL: url, API: v1.NewAPI(client)}
}

// lastScrape is the time of the newest sample of the dark version's
// destination series, as stored by Prometheus; zero before the first.
func (p *Server) lastScrape(ctx context.Context) (time.Time, float64, error) {
	sel := `{reporter="destination",destination_workload="sample-app-v2-deployment",destination_workload_namespace="default"}`
	v, _, _, err := p.API.Query(ctx, "max(timestamp(istio_requests_total"+sel+"))", time.Now())
	if err != nil {
		return time.Time{}, 0, err
	}
	vec, ok := v.(model.Vector)
	if !ok || len(vec) != 1 {
		return time.Time{}, 0, nil
	}
	total, _, _, err := p.API.Query(ctx, "sum(istio_requests_total"+sel+")", time.Now())
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

// WaitScrape polls until Prometheus holds a sample of the dark series taken
// after t, and returns that sample's time and the requests it counts.
func (p *Server) WaitScrape(ctx context.Context, t testing.TB, after time.Time) (time.Time, float64) {
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
