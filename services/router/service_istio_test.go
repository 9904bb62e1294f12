package router

import (
	"context"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"istio.io/client-go/pkg/clientset/versioned"
	networkingv1client "istio.io/client-go/pkg/clientset/versioned/typed/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
	return newWrappedIstioFixture(t, nil, objs...)
}

// newWrappedIstioFixture is newIstioFixture with the backend's Istio client
// wrapped (nil: not).
func newWrappedIstioFixture(t *testing.T, wrap func(versioned.Interface) versioned.Interface, objs ...runtime.Object) *istioFixture {
	t.Helper()
	f := &istioFixture{Cluster: istiotest.NewCluster(t, objs...)}
	var ic versioned.Interface = f.Istio
	if wrap != nil {
		ic = wrap(ic)
	}
	b, err := istio.New(istio.Config{}, mirroring.Settings{InitTimeout: 2 * time.Second, InitInterval: 10 * time.Millisecond}, ic, f.Dynamic, routertest.Logger(t))
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

// istioWorld is a router with the istio backend on a fake cluster holding
// the seed's Knative Service, its Istio client wrapped (nil: not), and the
// seed's experiment for next.
func istioWorld(t *testing.T, cfg Config, wrap func(versioned.Interface) versioned.Interface) (*hostWorld, *istiotest.Cluster) {
	f := newWrappedIstioFixture(t, wrap, istiotest.KnativeService(t, istiotest.SeedTraffic(), nil))
	cfg.Backend = BackendIstio
	return &hostWorld{r: startRouter(t, testenv.StartNATS(t), cfg, f.b), next: func(name string) *experiment.Experiment {
		e := istiotest.SeedExperiment(t)
		e.Metadata.Name = name
		return e
	}}, f.Cluster
}

// TestHostHandedOverIstio is TestHostHandedOverProxy with the istio
// backend: the VirtualServices are the old run's until they are deleted.
func TestHostHandedOverIstio(t *testing.T) {
	followOneAnother(t, func(t *testing.T) *hostWorld {
		w, _ := istioWorld(t, Config{}, nil)
		return w
	})
}

// gatedDeletes is an Istio client whose VirtualService deletions wait for
// gate, as on a slow API server; entered is closed at the first.
type gatedDeletes struct {
	versioned.Interface
	gate    <-chan struct{}
	once    sync.Once
	entered chan struct{}
}

func (c *gatedDeletes) NetworkingV1() networkingv1client.NetworkingV1Interface {
	return gatedNetworking{c.Interface.NetworkingV1(), c}
}

type gatedNetworking struct {
	networkingv1client.NetworkingV1Interface
	c *gatedDeletes
}

func (n gatedNetworking) VirtualServices(ns string) networkingv1client.VirtualServiceInterface {
	return gatedVirtualServices{n.NetworkingV1Interface.VirtualServices(ns), n.c}
}

type gatedVirtualServices struct {
	networkingv1client.VirtualServiceInterface
	c *gatedDeletes
}

func (v gatedVirtualServices) Delete(ctx context.Context, name string, opts metav1.DeleteOptions) error {
	v.c.once.Do(func() { close(v.c.entered) })
	select {
	case <-v.c.gate:
	case <-ctx.Done():
		return ctx.Err()
	}
	return v.VirtualServiceInterface.Delete(ctx, name, opts)
}

// TestHostHandedOverFromSlowTeardownIstio: a new experiment on the host of
// one that completed waits while the old VirtualServices are being
// deleted, and is routed once they are gone.
func TestHostHandedOverFromSlowTeardownIstio(t *testing.T) {
	gate := make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(gate) }) }
	t.Cleanup(release)
	gated := &gatedDeletes{gate: gate, entered: make(chan struct{})}
	w, c := istioWorld(t, Config{}, func(ic versioned.Interface) versioned.Interface {
		gated.Interface = ic
		return gated
	})
	prev := w.next("prev")
	w.running(t, prev)
	w.complete(t, prev)
	testenv.Until(t, 5*time.Second, "the teardown to begin", func() bool {
		select {
		case <-gated.entered:
			return true
		default:
			return false
		}
	})
	gets := func() int {
		n := 0
		for _, a := range c.Istio.Actions() {
			if a.GetVerb() == "get" && a.GetResource().Resource == "virtualservices" {
				n++
			}
		}
		return n
	}
	before := gets()
	next := w.next("next")
	w.create(t, next)
	// The next experiment's Setup has looked and found the host held.
	testenv.Until(t, 5*time.Second, "the next experiment to find the host held", func() bool { return gets() > before })
	released := time.Now()
	release()
	ev, _ := w.r.routingEvent(t, next)
	if ev.Routing == nil || !ev.Routing.Ready {
		t.Fatalf("routing event of the next experiment %+v, want Ready once the old VirtualServices are gone", ev.Routing)
	}
	if ev.Time.Before(released) {
		t.Errorf("routed at %s, before the old VirtualServices were deleted (%s)", ev.Time, released)
	}
	vss := c.VirtualServices(t, "default")
	if len(vss) != 2 || vss["customdomain-mirroring"].Annotations[istio.AnnotationExperimentUID] != next.Metadata.UID {
		t.Errorf("VirtualServices %v, want the next experiment's two", slices.Sorted(maps.Keys(vss)))
	}
}

// TestHostHandedOverAfterRestartIstio: a router started after the
// experiment holding a host ended, whose VirtualServices are still there,
// removes them for a new experiment on that host: whether the old one
// completed (the watch delivers it) or was deleted (it never sees it).
func TestHostHandedOverAfterRestartIstio(t *testing.T) {
	for _, deleted := range []bool{false, true} {
		t.Run(map[bool]string{false: "completed", true: "deleted"}[deleted], func(t *testing.T) {
			ns := testenv.StartNATS(t)
			f := newIstioFixture(t, istiotest.KnativeService(t, istiotest.SeedTraffic(), nil))
			infra := testenv.Infra(t, ns.Conn(t))
			ctx := context.Background()

			// The previous router set up prev, then went down.
			prev := istiotest.SeedExperiment(t)
			prev.Metadata.Name = "prev"
			st, err := f.b.Setup(ctx, prev)
			if err != nil {
				t.Fatal(err)
			}
			if !deleted {
				prev.Status.Stage, prev.Status.Routing = experiment.StageCompleted, &st
				if _, err := infra.Store.Create(ctx, prev); err != nil {
					t.Fatal(err)
				}
			}
			next := istiotest.SeedExperiment(t)
			next.Metadata.Name = "next"
			if _, err := infra.Store.Create(ctx, next); err != nil {
				t.Fatal(err)
			}

			r := startRouter(t, ns, Config{Backend: BackendIstio}, f.b)
			ev, _ := r.routingEvent(t, next)
			if ev.Routing == nil || !ev.Routing.Ready {
				t.Fatalf("routing event of the next experiment %+v, want Ready", ev.Routing)
			}
			for name, vs := range f.VirtualServices(t, "default") {
				if uid := vs.Annotations[istio.AnnotationExperimentUID]; uid != next.Metadata.UID {
					t.Errorf("VirtualService %s of run %s left, want only the next experiment's", name, uid)
				}
			}
		})
	}
}

// TestUnnamedHolderStillRefused: a VirtualService that does not say which
// experiment wrote it in full (an older router's) is not removed for a new
// experiment: the refusal stands, as before.
func TestUnnamedHolderStillRefused(t *testing.T) {
	ns := testenv.StartNATS(t)
	old := istiotest.ForeignVirtualService("customdomain-mirroring", map[string]string{istio.LabelManagedBy: istio.ManagedBy, istio.LabelExperiment: "default.old"})
	f := newIstioFixture(t, istiotest.KnativeService(t, istiotest.SeedTraffic(), nil), old)
	r := startRouter(t, ns, Config{Backend: BackendIstio}, f.b)
	e := istiotest.SeedExperiment(t)
	if _, err := r.infra.Store.Create(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	ev, _ := r.routingEvent(t, e)
	if ev.Routing == nil || ev.Routing.Ready {
		t.Fatalf("routing event %+v, want not Ready", ev.Routing)
	}
	if vss := f.VirtualServices(t, "default"); vss["customdomain-mirroring"] == nil {
		t.Error("the older router's VirtualService was removed")
	}
}
