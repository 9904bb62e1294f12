package k8s

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/darklaunch/darklaunch/internal/sampleapp"
	"github.com/darklaunch/darklaunch/internal/stack"
	"github.com/darklaunch/darklaunch/internal/testenv"
	"github.com/darklaunch/darklaunch/internal/testenv/promtest"
	"github.com/darklaunch/darklaunch/services/collector"
	"github.com/darklaunch/darklaunch/services/loadgen"
	"github.com/darklaunch/darklaunch/services/router"
	istiobackend "github.com/darklaunch/darklaunch/services/router/istio"
	"github.com/darklaunch/darklaunch/services/router/mirroring"
	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
	"github.com/darklaunch/darklaunch/shared/service"
)

// mesh plays the part of Istio's data plane, which cannot run here: for
// requests to the experiment's host it routes to the live revision and
// mirrors the share the mirroring VirtualService asks for to the dark one,
// and reports both as Envoy's destination reporter does, in
// istio_requests_total and istio_request_duration_milliseconds.
type mesh struct {
	live, dark string
	percent    float64
	n          atomic.Int64
	x          *promtest.IstioExporter
	client     *http.Client
}

func (m *mesh) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := m.n.Add(1)
	if int64(float64(n)*m.percent/100) > int64(float64(n-1)*m.percent/100) {
		go m.forward(context.Background(), m.dark, "sample-app-v2-deployment", r.URL.Path, nil)
	}
	m.forward(r.Context(), m.live, "sample-app-v1-deployment", r.URL.Path, w)
}

func (m *mesh) forward(ctx context.Context, base, workload, path string, w http.ResponseWriter) {
	start := time.Now()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
	resp, err := m.client.Do(req)
	code := "503"
	if err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		code = strconv.Itoa(resp.StatusCode)
	}
	m.x.Serve("destination", workload, code, float64(time.Since(start).Microseconds())/1000)
	if w != nil {
		w.WriteHeader(http.StatusOK)
	}
}

// TestSeedExperimentOnKubernetes runs the seed tutorial with darklaunch's
// Kubernetes backends, against a real API server and a real Prometheus: the
// seed's service.yaml is applied (its status written as Knative would), the
// seed's experiment.yaml — only intervalSeconds shortened — is created on
// the bus, the router checks the Knative Service and creates the Istio
// VirtualServices, loadgen sends traffic, the collector reads the dark and
// live revisions' Istio metrics from Prometheus with the shipped PromQL, the
// judge reaches the verdict, and the router removes the VirtualServices.
func TestSeedExperimentOnKubernetes(t *testing.T) {
	cfg := cluster(t)
	admin := clientsFor(t, cfg)
	const ns = "default"
	admin.applySeedService(t, ns)

	user, err := clusterEnv.AddUser(envtest.User{Name: "darklaunch-router", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	kcFile := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kcFile, kc, 0o600); err != nil {
		t.Fatal(err)
	}

	x := promtest.NewIstioExporter(t)
	prom := promtest.Start(t, strings.TrimPrefix(x.Srv.URL, "http://"))

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	prom.WaitScrape(ctx, t, time.Time{}) // every series at 0 before the traffic

	live, dark := startApp(t, "blue"), startApp(t, "green")
	m := &mesh{live: live, dark: dark, percent: 40, x: x, client: &http.Client{Timeout: 5 * time.Second}}
	meshSrv := httptest.NewServer(m)
	t.Cleanup(meshSrv.Close)

	st, err := stack.Start(ctx, stack.Config{
		StoreDir: t.TempDir(),
		LiveURL:  live,
		DarkURL:  dark,
		Services: []service.Config{
			&router.Config{
				Backend:  router.BackendIstio,
				Istio:    istiobackend.Config{Kubeconfig: kcFile, Namespaces: []string{ns}},
				Settings: mirroring.Settings{InitTimeout: 20 * time.Second, InitInterval: 200 * time.Millisecond},
			},
			&collector.Config{
				Source:          collector.SourcePrometheus,
				PrometheusURL:   prom.URL,
				MetricsProvider: collector.ProviderIstio,
				Grace:           1500 * time.Millisecond,
			},
			&loadgen.Config{URL: meshSrv.URL, Rate: 20, Delay: -1},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	client, nc, err := st.Client()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)

	doc := strings.Replace(string(repoFile(t, "examples", "mirroring", "experiment.yaml")), "intervalSeconds: 10", "intervalSeconds: 2", 1)
	created, err := client.Create(ctx, []byte(doc))
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	vss := admin.istio.NetworkingV1().VirtualServices(ns)
	sawVS := false
	var final *experiment.Experiment
	for final == nil {
		cur, err := client.Get(ctx, bus.Ref{Namespace: ns, Name: created.Metadata.Name})
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case cur.Status.Terminal():
			final = cur
		case cur.Status.Stage == experiment.StageRunning && !sawVS:
			if _, err := vss.Get(ctx, "customdomain-mirroring", metav1.GetOptions{}); err == nil {
				sawVS = true
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the experiment did not complete: %s, %d iterations, %q", cur.Status.Stage, cur.Status.CompletedIterations, cur.Status.Message)
		case <-time.After(200 * time.Millisecond):
		}
	}
	if final.Status.Failed() {
		t.Fatalf("experiment failed: %s", final.Status.Message)
	}
	if !sawVS {
		t.Error("the mirroring VirtualService was never seen on the API server while the experiment ran")
	}
	if final.Status.CompletedIterations != 7 {
		t.Errorf("%d iterations, want 7", final.Status.CompletedIterations)
	}
	if !final.Passed() {
		t.Errorf("the dark version did not pass: %+v", final.Status.Analysis.Objectives)
	}
	a := final.Status.Analysis
	darkCount, liveCount := a.AggregatedMetrics[experiment.MetricRequestCount]["current"], a.AggregatedMetrics[experiment.MetricRequestCount]["live"]
	if darkCount == nil || liveCount == nil || *darkCount < 20 || *liveCount < *darkCount {
		t.Errorf("request counts from Prometheus: dark %v, live %v", darkCount, liveCount)
	} else if share := *darkCount / *liveCount; share < 0.3 || share > 0.5 {
		t.Errorf("mirrored share measured through Prometheus %.2f, want about 0.40", share)
	}
	if routing := final.Status.Routing; routing == nil || routing.Backend != router.BackendIstio || routing.Live != "sample-app-v1" || routing.Dark != "sample-app-v2" {
		t.Errorf("routing status %+v", final.Status.Routing)
	}
	// On completion the router removes what it created.
	testenv.EventuallyWithin(t, 10*time.Second, "the VirtualServices to be removed after completion", func() (bool, string) {
		_, e1 := vss.Get(ctx, "customdomain-mirroring", metav1.GetOptions{})
		_, e2 := vss.Get(ctx, "customdomain-routing", metav1.GetOptions{})
		return apierrors.IsNotFound(e1) && apierrors.IsNotFound(e2), fmt.Sprintf("%v, %v", e1, e2)
	})
}

func startApp(t *testing.T, name string) string {
	t.Helper()
	app, err := sampleapp.New(sampleapp.Config{Name: name, Latency: 5 * time.Millisecond, Jitter: 2 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := app.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { app.Stop(context.Background()) })
	return app.URL()
}
