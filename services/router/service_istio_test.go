package router

import (
	"context"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime"

	"github.com/darklaunch/darklaunch/internal/testenv"
	"github.com/darklaunch/darklaunch/services/router/istio"
	"github.com/darklaunch/darklaunch/services/router/istio/istiotest"
	"github.com/darklaunch/darklaunch/services/router/mirroring"
	"github.com/darklaunch/darklaunch/services/router/routertest"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

// istioFixture is an istio backend on a fake cluster holding objs.
type istioFixture struct {
	b *istio.Istio
	*istiotest.Cluster
}

func newIstioFixture(t *testing.T, objs ...runtime.Object) *istioFixture {
	t.Helper()
	f := &istioFixture{Cluster: istiotest.NewCluster(t, objs...)}
	b, err := istio.New(istio.Config{}, mirroring.Settings{InitTimeout: 2 * time.Second, InitInterval: 10 * time.Millisecond}, f.Istio, f.Dynamic, routertest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	f.b = b
	return f
}

// TestServiceIstio runs the seed experiment through the router with the
// istio backend: routed and reported on creation, removed on completion,
// or with KeepRouting only on deletion.
func TestServiceIstio(t *testing.T) {
	for _, keep := range []bool{false, true} {
		t.Run(map[bool]string{false: "remove on completion", true: "keep routing"}[keep], func(t *testing.T) {
			ns := testenv.StartNATS(t)
			f := newIstioFixture(t, istiotest.KnativeService(t, istiotest.SeedTraffic(), nil))
			r := startRouter(t, ns, Config{Backend: BackendIstio, KeepRouting: keep}, f.b)
			ctx := context.Background()
			count := func() int { return len(f.VirtualServices(t, "default")) }

			e := istiotest.SeedExperiment(t)
			if _, err := r.infra.Store.Create(ctx, e); err != nil {
				t.Fatal(err)
			}
			ev, _ := r.routingEvent(t, e)
			if ev.Routing == nil || !ev.Routing.Ready || ev.Routing.Status.Backend != "istio" || len(ev.Routing.Status.Objects) != 2 {
				t.Fatalf("routing event %+v, want Ready with two VirtualServices", ev.Routing)
			}
			if n := count(); n != 2 {
				t.Fatalf("%d VirtualServices, want 2", n)
			}

			setStage(t, r.infra.Store, e, experiment.StageRunning)
			setStage(t, r.infra.Store, e, experiment.StageCompleted)
			if !keep {
				testenv.Until(t, 10*time.Second, "the VirtualServices to be removed on completion", func() bool { return count() == 0 })
				return
			}
			// The watch handles changes in order: once a later experiment
			// is routed, the completion was handled too.
			other := istiotest.SeedExperiment(t)
			other.Metadata.Name = "other"
			other.Spec.Mirroring = &experiment.Mirroring{Host: "other.example.com"}
			if _, err := r.infra.Store.Create(ctx, other); err != nil {
				t.Fatal(err)
			}
			if ev, _ := r.routingEvent(t, other); ev.Routing == nil || !ev.Routing.Ready {
				t.Fatalf("routing event of the other experiment %+v, want Ready", ev.Routing)
			}
			// A teardown runs in the background: wait for any that was
			// started, then the completed experiment's must still be there.
			r.svc.teardowns.Wait()
			if n := count(); n != 4 {
				t.Fatalf("%d VirtualServices after completion with KeepRouting, want 4 (kept, and the other's)", n)
			}
			if err := r.infra.Store.Delete(ctx, "default", "mirroring", 0); err != nil {
				t.Fatal(err)
			}
			testenv.Until(t, 10*time.Second, "the VirtualServices to be removed on deletion", func() bool {
				vss := f.VirtualServices(t, "default")
				return len(vss) == 2 && vss["other-mirroring"] != nil && vss["other-routing"] != nil
			})
		})
	}
}

func TestServiceIstioReportsForeignVirtualService(t *testing.T) {
	ns := testenv.StartNATS(t)
	f := newIstioFixture(t, istiotest.KnativeService(t, istiotest.SeedTraffic(), nil), istiotest.ForeignVirtualService("customdomain-mirroring", nil))
	r := startRouter(t, ns, Config{Backend: BackendIstio}, f.b)
	e := istiotest.SeedExperiment(t)
	if _, err := r.infra.Store.Create(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	ev, _ := r.routingEvent(t, e)
	want := "VirtualService default/customdomain-mirroring exists and is not managed by darklaunch; refusing to overwrite it"
	if ev.Routing == nil || ev.Routing.Ready || ev.Routing.Reason != want {
		t.Fatalf("routing event %+v, want not Ready with reason %q", ev.Routing, want)
	}
}
