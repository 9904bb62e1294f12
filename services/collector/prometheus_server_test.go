package collector

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/darklaunch/darklaunch/internal/testenv"
	"github.com/darklaunch/darklaunch/internal/testenv/promtest"
	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

// TestPrometheusSourceContract: the prometheus source, with the shipped
// Istio definitions, passes the source suite against a real Prometheus
// scraping Istio-named metrics of known content.
func TestPrometheusSourceContract(t *testing.T) {
	t.Parallel()
	var workloads []string
	for i := range promRevisions {
		workloads = append(workloads, promRevision(i)+"-deployment")
	}
	x := promtest.NewIstioExporter(t, workloads...)
	prom := promtest.Start(t, strings.TrimPrefix(x.Srv.URL, "http://"))
	testSource(t, &promHarness{x: x, prom: prom, defs: shipped(t, ProviderIstio)})
}

// promRevisions is how many revisions the exporter serves: two for each
// experiment the suite asks for.
const promRevisions = 20

func promRevision(i int) string { return fmt.Sprintf("sample-app-v%d", i+1) }

// promHarness serves requests as Istio's destination reporter counts them,
// on a workload of the experiment's own: each experiment gets the next two
// revisions (live, dark).
//
// Tolerances:
//   - mean-latency, error-rate and the latency quantiles are ratios of
//     increase()s of series scraped at the same instants, which Prometheus
//     extrapolates by the same factor: they are exact (1e-9, float
//     rounding). A quantile is the bucket interpolation histogram_quantile
//     does over Envoy's buckets, computed here from the same buckets (not
//     the raw latencies' quantile, which it is not).
//   - request-count and error-count are increase()s, which Prometheus
//     extrapolates from the first and last sample in the window to the
//     window's edges. Every series is 0 at the window's first sample (Start
//     waits for a scrape before traffic; no extrapolation below zero), so
//     only the end is extended: by at most 1.1 × the mean scrape interval
//     (1 s) over a sampled span of at least the window (Measurable makes it
//     ≥ 10 s) less two intervals, i.e. ≤ 14 %. A count must then lie in
//     [N, 1.2·N] (20 % leaves room for late scrapes on a loaded machine);
//     counting the source reporter's series of the same workload (Serve
//     adds two slow failures there for every dark request) would be > 2·N.
type promHarness struct {
	x    *promtest.IstioExporter
	prom *promtest.Server
	defs []MetricDefinition

	mu   sync.Mutex
	next int // the next revision to hand out
}

// promMinWindow is the shortest window Measurable returns: see the counts'
// tolerance.
const promMinWindow = 10 * time.Second

var promTolerance = tolerance{
	count: func(n float64) (float64, float64) { return n * (1 - 1e-9), 1.2 * n },
	ratio: 1e-9,
	quantile: func(q float64, lat []float64) (float64, float64) {
		return bucketQuantile(q, lat, promtest.EnvoyBuckets), 1e-9
	},
}

func (h *promHarness) Source(t *testing.T) Source {
	t.Helper()
	src, err := NewPrometheusSource(h.prom.URL, h.defs, 5*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	return src
}

func (h *promHarness) Experiment(t *testing.T, name string, start time.Time) *experiment.Experiment {
	t.Helper()
	h.mu.Lock()
	i := h.next
	h.next += 2
	h.mu.Unlock()
	if i+1 >= promRevisions {
		t.Fatalf("the exporter serves %d revisions; raise promRevisions", promRevisions)
	}
	return testenv.Experiment(testenv.Named(name), testenv.Running(start), revisions(promRevision(i), promRevision(i+1)))
}

// revisions are the live revision the istio router reports and the dark
// one, the baseline's variable.
func revisions(live, dark string) testenv.Option {
	return func(e *experiment.Experiment) {
		e.Spec.VersionInfo.Baseline.Variables = []experiment.NamedValue{{Name: experiment.RevisionVariable, Value: dark}}
		e.Status.Routing = &experiment.RoutingStatus{Backend: "istio", Live: live, Dark: dark}
	}
}

// Start: the experiment starts once Prometheus holds the series at 0;
// traffic starts after a scrape at 0 within the window, as loadgen's delay
// does.
func (h *promHarness) Start(ctx context.Context, t *testing.T) time.Time {
	h.prom.WaitScrape(ctx, t, time.Time{})
	start := time.Now().UTC().Truncate(time.Millisecond)
	h.prom.WaitScrape(ctx, t, start)
	return start
}

func (h *promHarness) Serve(t *testing.T, exp *experiment.Experiment, role string, latMs []float64, failed int) {
	revision := exp.Status.Routing.Live
	if role == bus.RoleDark {
		revision = exp.Status.Routing.Dark
	}
	workload := revision + "-deployment"
	for i, ms := range latMs {
		code := "200"
		if i < failed {
			code = "500"
		}
		h.x.Serve("destination", workload, code, ms)
		if role == bus.RoleDark {
			// The mirrored copies as the source reporter would see them,
			// had it seen them: slow failures that must never be counted.
			h.x.Serve("source", workload, "500", 4000)
			h.x.Serve("source", workload, "500", 4000)
		}
	}
}

// Measurable: the window covers at least promMinWindow and ends after the
// last request was scraped; Prometheus must have stored a sample after its
// end, and hold every request served.
func (h *promHarness) Measurable(ctx context.Context, t *testing.T, start time.Time) time.Time {
	t.Helper()
	served := h.x.DestinationRequests()
	last, _ := h.prom.WaitScrape(ctx, t, time.Now())
	end := last.Add(500 * time.Millisecond)
	if min := start.Add(promMinWindow); end.Before(min) {
		end = min
	}
	at, _ := h.prom.WaitScrape(ctx, t, end)
	v, _, _, err := h.prom.API.Query(ctx, `sum(istio_requests_total{reporter="destination"})`, at)
	if err != nil {
		t.Fatal(err)
	}
	if vec, ok := v.(model.Vector); !ok || len(vec) != 1 || float64(vec[0].Value) < served {
		t.Fatalf("Prometheus holds %v requests at %s, want at least the %v served", v, at.Format(time.StampMilli), served)
	}
	return end
}

func (h *promHarness) Tolerance() tolerance { return promTolerance }

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
