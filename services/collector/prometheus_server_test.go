package collector

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
	"github.com/darklaunch/darklaunch/shared/promtest"
)

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
	x := promtest.NewIstioExporter(t)
	prom := promtest.Start(t, strings.TrimPrefix(x.Srv.URL, "http://"))

	// The experiment starts once Prometheus holds the series at 0; traffic
	// starts after a scrape at 0 within the window, as loadgen's delay does.
	prom.WaitScrape(ctx, t, time.Time{})
	start := time.Now().UTC().Truncate(time.Millisecond)
	prom.WaitScrape(ctx, t, start)

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
			x.Serve("destination", dark, code, 2+1.9*float64(i)+0.3*float64(r))
			// The mirrored copies as the source reporter would see them, had
			// it seen them: slow failures that must never be counted.
			x.Serve("source", dark, "500", 4000)
			x.Serve("source", dark, "500", 4000)
		}
		for i := range 50 {
			code := "200"
			if i == 7 {
				code = "500"
			}
			x.Serve("destination", live, code, 5+0.5*float64(i))
		}
		// Each round in another scrape, as traffic spreads over an interval.
		lastRound, _ = prom.WaitScrape(ctx, t, time.Now())
	}

	// The window covers at least 10 s and ends after the last round was
	// scraped; Prometheus must have stored a sample at or after its end.
	end := lastRound.Add(500 * time.Millisecond)
	if min := start.Add(10 * time.Second); end.Before(min) {
		end = min
	}
	if _, total := prom.WaitScrape(ctx, t, end); total != 100*rounds {
		t.Fatalf("Prometheus holds %v dark requests, want %d", total, 100*rounds)
	}

	src, err := NewPrometheusSource(prom.URL, shipped(t, ProviderIstio), 5*time.Second, nil)
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
		x.Mu.Lock()
		truth := x.Truth[workload]
		x.Mu.Unlock()
		n, errs := float64(len(truth.Latencies)), float64(truth.Errors)
		var sum float64
		for _, l := range truth.Latencies {
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
		checkClose(t, role+" p95", valOr(t, m, experiment.MetricP95Latency), bucketQuantile(0.95, truth.Latencies, promtest.EnvoyBuckets))
		checkClose(t, role+" p50", valOr(t, m, experiment.MetricP50Latency), bucketQuantile(0.5, truth.Latencies, promtest.EnvoyBuckets))
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
