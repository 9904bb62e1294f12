package collector

import (
	"context"
	"math"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/internal/testenv"
	"github.com/darklaunch/darklaunch/internal/testenv/promtest"
	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
	"github.com/darklaunch/darklaunch/shared/stats"
)

// TestPrometheusIntervalsInSnapshots: the collector with the shipped Istio
// set, against a real Prometheus scraping Istio-named metrics of known
// content, publishes snapshots whose intervals hold the truth: the
// percentiles between Envoy's bucket edges, around histogram_quantile's
// value, the mean by betting on the buckets (unbounded above once a request
// is beyond the last edge), the error rate by Clopper-Pearson, at
// Split(confidence, objectives) for the dark version's judged metrics; the
// dark snapshot carries the requests its inconclusive objectives need.
func TestPrometheusIntervalsInSnapshots(t *testing.T) {
	t.Parallel()
	x := promtest.NewIstioExporter(t)
	prom := promtest.Start(t, strings.TrimPrefix(x.Srv.URL, "http://"))
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()

	// Series at 0 stored before the start, and once after it, before any
	// request: increase() then counts every request.
	prom.WaitScrape(ctx, t, time.Time{})
	start := time.Now().UTC().Truncate(time.Millisecond)
	prom.WaitScrape(ctx, t, start)

	dark := spread(3, 0.3, 200) // 3 to 62.7 ms
	live := append(spread(5, 1, 59), 5e6)
	h := &promHarness{x: x, prom: prom}
	exp := testenv.Experiment(testenv.Named("prom-intervals"), testenv.Every(12, 1), testenv.Running(start), revisions("sample-app-v1", "sample-app-v2"))
	confidence := 0.9
	exp.Spec.Criteria = &experiment.Criteria{
		Confidence: &confidence,
		Objectives: []experiment.Objective{
			{Metric: experiment.MetricMeanLatency, UpperLimit: experiment.NewLimit("100")},
			{Metric: experiment.MetricP95Latency, UpperLimit: experiment.NewLimit("200")},
			{Metric: experiment.MetricErrorRate, UpperLimit: experiment.NewLimit("0.05")},
		},
	}
	h.Serve(t, exp, bus.RoleDark, dark, 4)
	h.Serve(t, exp, bus.RoleLive, live, 0)

	e := newEnv(t)
	s := e.newService(t, Config{Source: SourcePrometheus, PrometheusURL: prom.URL, MetricsProvider: ProviderIstio, Grace: 2 * time.Second})
	if _, err := e.Store.Create(ctx, exp); err != nil {
		t.Fatal(err)
	}
	testenv.Run(t, s)
	// The iteration ends 12 s after the start; the collector measures 2 s
	// later.
	select {
	case <-time.After(time.Until(start.Add(14 * time.Second))):
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
	events := e.metricsEvents(t, exp, 2, s)

	split := 1 - (1-confidence)/3
	for _, me := range events {
		snap := me.ev.Snapshot
		lat, errs := dark, 4
		if snap.Role == bus.RoleLive {
			lat, errs = live, 0
		}
		sorted := slices.Sorted(slices.Values(lat))
		t.Logf("%s: values %s", snap.Role, printValues(snap.Values))
		for metric, iv := range snap.Intervals {
			t.Logf("%s %s: [%s, %s] at %v, %s", snap.Role, metric, fmtBound(iv.Lo), fmtBound(iv.Hi), iv.Confidence, iv.Method)
		}
		level := func(metric string) float64 {
			if snap.Role == bus.RoleDark && metric != experiment.MetricP50Latency && metric != experiment.MetricP99Latency {
				return split
			}
			return confidence
		}
		check := func(metric, method string, truth float64) *experiment.Interval {
			t.Helper()
			iv := snap.Intervals[metric]
			switch {
			case iv == nil:
				t.Errorf("%s %s: no interval", snap.Role, metric)
				return nil
			case iv.Method != method || math.Abs(iv.Confidence-level(metric)) > 1e-12:
				t.Errorf("%s %s: %s at %v, want %s at %v", snap.Role, metric, iv.Method, iv.Confidence, method, level(metric))
			case iv.Lo == nil || *iv.Lo > truth || iv.Hi != nil && *iv.Hi < truth:
				t.Errorf("%s %s: [%s, %s] misses the truth %v", snap.Role, metric, fmtBound(iv.Lo), fmtBound(iv.Hi), truth)
			}
			if v := snap.Values[metric]; v == nil || *v < *iv.Lo || iv.Hi != nil && *v > *iv.Hi {
				t.Errorf("%s %s: value %s outside [%s, %s]", snap.Role, metric, fmtBound(v), fmtBound(iv.Lo), fmtBound(iv.Hi))
			}
			return iv
		}
		check(experiment.MetricErrorRate, "clopper-pearson", float64(errs)/float64(len(lat)))
		mean := check(experiment.MetricMeanLatency, "betting", avg(lat))
		for metric, q := range percentileLevels {
			iv := check(metric, "bucket-edges", sorted[int(math.Ceil(q*float64(len(sorted))))-1])
			if iv == nil {
				continue
			}
			for _, b := range []*float64{iv.Lo, iv.Hi} {
				if b != nil && *b != 0 && !slices.Contains(promtest.EnvoyBuckets, *b) {
					t.Errorf("%s %s: bound %v is not one of Envoy's bucket edges", snap.Role, metric, *b)
				}
			}
		}
		t.Logf("%s: needed %+v", snap.Role, snap.Needed)
		switch snap.Role {
		case bus.RoleDark:
			// 4 errors in 200 requests: [0.005, 0.053] or so at 96.7 %
			// straddles 0.05; the estimate is the statistics' own on the
			// rounded counts. The p95, within [.., 100], meets 200.
			if iv := snap.Intervals[experiment.MetricErrorRate]; iv != nil && *iv.Hi > 0.05 {
				// increase() extrapolates: 200.6 requests count as 201.
				requests, _ := promCount(snap.Values[experiment.MetricRequestCount])
				errs, _ := promCount(snap.Values[experiment.MetricErrorCount])
				n, _ := stats.ProportionNeeded(errs, requests, split, stats.ClopperPearson, stats.Upper(0.05))
				if got := neededOf(snap.Needed, 2); got == nil || got.Requests != n || n <= 0 {
					t.Errorf("dark error-rate (%d errors in %d): needed %+v, want %d requests", errs, requests, got, n)
				}
			} else {
				t.Errorf("dark error-rate: %+v, want an interval straddling 0.05", iv)
			}
			if got := neededOf(snap.Needed, 1); got != nil {
				t.Errorf("dark p95 meets 200, but needs %+v", got)
			}
			// The mean's upper end, betting up to 3,600,000 ms, is far above
			// 100: an estimate, many requests more.
			if got := neededOf(snap.Needed, 0); mean != nil && *mean.Hi > 100 && (got == nil || got.Requests <= 0) {
				t.Errorf("dark mean-latency [%s, %s] straddles 100: needed %+v, want some requests", fmtBound(mean.Lo), fmtBound(mean.Hi), got)
			}
			// Every request is below 100 ms: the median and p95 are bounded
			// (p99's high rank, 202 of 201 at 90 %, is past the sample), and
			// the mean, by betting in [0, 3,600,000 ms] (the last edge).
			for _, metric := range []string{experiment.MetricP50Latency, experiment.MetricP95Latency} {
				if iv := snap.Intervals[metric]; iv != nil && (iv.Hi == nil || *iv.Hi > 100) {
					t.Errorf("dark %s: upper bound %s, want an edge at most 100", metric, fmtBound(iv.Hi))
				}
			}
			if mean != nil && (mean.Hi == nil || *mean.Hi > promtest.EnvoyBuckets[len(promtest.EnvoyBuckets)-1]) {
				t.Errorf("dark mean: upper bound %s, want one within the last edge", fmtBound(mean.Hi))
			}
		case bus.RoleLive:
			if len(snap.Needed) != 0 {
				t.Errorf("live: needed %+v, want none (only the dark version is judged)", snap.Needed)
			}
			// One request is beyond the last edge (+Inf bucket).
			if mean != nil && (mean.Hi != nil || *mean.Lo <= 0) {
				t.Errorf("live mean: [%s, %s], want a lower bound above 0 and none above", fmtBound(mean.Lo), fmtBound(mean.Hi))
			}
			if iv := snap.Intervals[experiment.MetricP99Latency]; iv != nil && iv.Hi != nil {
				t.Errorf("live p99: upper bound %v, want none", *iv.Hi)
			}
		}
	}
}

func avg(xs []float64) float64 {
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

func printValues(values map[string]*float64) string {
	var out []string
	for name, v := range values {
		out = append(out, name+"="+fmtBound(v))
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}
