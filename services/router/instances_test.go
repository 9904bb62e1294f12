package router

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/darklaunch/darklaunch/internal/testenv"
	"github.com/darklaunch/darklaunch/services/router/istio"
	"github.com/darklaunch/darklaunch/services/router/istio/istiotest"
	"github.com/darklaunch/darklaunch/services/router/mirroring"
	"github.com/darklaunch/darklaunch/services/router/routertest"
	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

// countingBackend records its Setups, with and without the init check;
// block makes a checked Setup wait for its context's end (an owner that
// goes away in the middle of the check).
type countingBackend struct {
	block bool

	mu        sync.Mutex
	checked   int
	unchecked int
	teardowns int
}

func (b *countingBackend) Setup(ctx context.Context, exp *experiment.Experiment) (experiment.RoutingStatus, error) {
	check := mirroring.NeedsInitCheck(exp)
	b.mu.Lock()
	if check {
		b.checked++
	} else {
		b.unchecked++
	}
	b.mu.Unlock()
	if check && b.block {
		<-ctx.Done()
		return experiment.RoutingStatus{}, ctx.Err()
	}
	return experiment.RoutingStatus{Backend: "counting", Host: "customdomain.com", Percent: 40}, nil
}

func (b *countingBackend) Teardown(context.Context, *experiment.Experiment) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.teardowns++
	return nil
}

func (b *countingBackend) counts() (checked, unchecked, teardowns int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.checked, b.unchecked, b.teardowns
}

// endpointBackend is a countingBackend that serves the traffic itself,
// as the proxy does: every router must route every experiment.
type endpointBackend struct{ countingBackend }

func (*endpointBackend) URL() string { return "http://127.0.0.1:1" }

// startNamedRouter runs a router named instance with backend.
func startNamedRouter(t *testing.T, ns *testenv.NATS, instance string, backend Backend) (svc *Service, stop func()) {
	t.Helper()
	cfg := Config{Instance: instance, Registry: prometheus.NewRegistry()}
	cfg.InitInterval = 50 * time.Millisecond
	svc, err := newService(cfg, ns.Conn(t), routertest.Logger(t), backend)
	if err != nil {
		t.Fatal(err)
	}
	return svc, testenv.Run(t, svc)
}

func routingEvents(t *testing.T, infra *bus.Infra, e *experiment.Experiment) uint64 {
	t.Helper()
	subject := bus.EventSubject(e.Metadata.Namespace, e.Metadata.Name, bus.EventRouting)
	info, err := infra.Events.Info(t.Context(), jetstream.WithSubjectFilter(subject))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Subjects[subject]
}

// TestRoutersInitializeOnce: two routers on a new experiment. With a
// backend whose routing is one for all (Istio), only the owner checks the
// target and sets it up; with one each router routes itself (the proxy),
// the owner checks and the other routes at once without a check. Either
// way one routing event is stored, and each router tears down when the
// run completes (idempotent).
func TestRoutersInitializeOnce(t *testing.T) {
	t.Parallel()
	for _, shared := range []bool{true, false} {
		t.Run(map[bool]string{true: "shared routing", false: "routing per router"}[shared], func(t *testing.T) {
			t.Parallel()
			b := testenv.NewBus(t)
			var backends [2]*countingBackend
			for i := range backends {
				var be Backend
				if shared {
					backends[i] = &countingBackend{}
					be = backends[i]
				} else {
					eb := &endpointBackend{}
					backends[i], be = &eb.countingBackend, eb
				}
				startNamedRouter(t, b.NATS, fmt.Sprintf("router%d", i), be)
			}
			testenv.Eventually(t, "both routers' leases", func() (bool, string) {
				ks, err := b.Members.Keys(t.Context())
				return err == nil && len(ks) == 2, fmt.Sprint(ks, err)
			})
			time.Sleep(100 * time.Millisecond) // the watches deliver the leases
			e := routertest.Experiment("once", "customdomain.com", "http://live", "http://dark", 40, experiment.StageInitializing)
			if _, err := b.Store.Create(t.Context(), e); err != nil {
				t.Fatal(err)
			}
			testenv.Eventually(t, "the routing event", func() (bool, string) {
				n := routingEvents(t, b.Infra, e)
				return n > 0, fmt.Sprint(n)
			})
			// The judge reports the routing; the waiting router's task ends.
			if _, err := b.Store.Update(t.Context(), "default", "once", func(x *experiment.Experiment) error {
				x.Status.Routing = &experiment.RoutingStatus{Backend: "counting"}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			time.Sleep(200 * time.Millisecond) // a second check would have come by now
			var checked, unchecked int
			for i, be := range backends {
				c, u, _ := be.counts()
				t.Logf("router%d: %d setups with the init check, %d without", i, c, u)
				checked, unchecked = checked+c, unchecked+u
			}
			wantUnchecked := 1
			if shared {
				wantUnchecked = 0
			}
			if checked != 1 || unchecked != wantUnchecked {
				t.Errorf("%d setups with the init check and %d without, want 1 and %d", checked, unchecked, wantUnchecked)
			}
			if n := routingEvents(t, b.Infra, e); n != 1 {
				t.Errorf("%d routing events stored, want 1", n)
			}
			setStage(t, b.Store, e, experiment.StageCompleted)
			testenv.Eventually(t, "both routers' teardowns", func() (bool, string) {
				_, _, t0 := backends[0].counts()
				_, _, t1 := backends[1].counts()
				return t0 >= 1 && t1 >= 1, fmt.Sprint(t0, t1)
			})
		})
	}
}

// TestRouterTakesInitializationOver: the owner of a new experiment goes
// away in the middle of its init check; the other router checks and
// publishes the routing event instead, at once (the stop deletes the
// owner's lease). With routing per router, the other one had routed at
// once without a check: it removes that route and checks.
func TestRouterTakesInitializationOver(t *testing.T) {
	t.Parallel()
	for _, shared := range []bool{true, false} {
		t.Run(map[bool]string{true: "shared routing", false: "routing per router"}[shared], func(t *testing.T) {
			t.Parallel()
			takeInitializationOver(t, shared)
		})
	}
}

func takeInitializationOver(t *testing.T, shared bool) {
	b := testenv.NewBus(t)
	var backends [2]*countingBackend
	var stops [2]func()
	for i := range backends {
		var be Backend
		if shared {
			backends[i] = &countingBackend{block: true}
			be = backends[i]
		} else {
			eb := &endpointBackend{countingBackend{block: true}}
			backends[i], be = &eb.countingBackend, eb
		}
		_, stops[i] = startNamedRouter(t, b.NATS, fmt.Sprintf("router%d", i), be)
	}
	testenv.Eventually(t, "both routers' leases", func() (bool, string) {
		ks, err := b.Members.Keys(t.Context())
		return err == nil && len(ks) == 2, fmt.Sprint(ks, err)
	})
	time.Sleep(100 * time.Millisecond)
	e := routertest.Experiment("takeover", "customdomain.com", "http://live", "http://dark", 40, experiment.StageInitializing)
	if _, err := b.Store.Create(t.Context(), e); err != nil {
		t.Fatal(err)
	}
	owner := -1
	testenv.Eventually(t, "the owner's init check", func() (bool, string) {
		for i, be := range backends {
			if c, _, _ := be.counts(); c > 0 {
				owner = i
			}
		}
		return owner >= 0, ""
	})
	other := 1 - owner
	if !shared {
		testenv.Eventually(t, "the other router's unchecked route", func() (bool, string) {
			_, u, _ := backends[other].counts()
			return u == 1, fmt.Sprint(u)
		})
	}
	backends[other].mu.Lock()
	backends[other].block = false
	backends[other].mu.Unlock()
	stopped := time.Now()
	stops[owner]()
	testenv.Eventually(t, "the other router's routing event", func() (bool, string) {
		n := routingEvents(t, b.Infra, e)
		return n == 1, fmt.Sprint(n)
	})
	t.Logf("router%d stopped in its check; router%d's event %v later", owner, other, time.Since(stopped).Round(time.Millisecond))
	c, u, td := backends[other].counts()
	wantU, wantTd := 1, 1
	if shared {
		wantU, wantTd = 0, 0
	}
	if c != 1 || u != wantU || td != wantTd {
		t.Errorf("router%d: %d setups checked, %d unchecked, %d teardowns; want 1, %d, %d", other, c, u, td, wantU, wantTd)
	}
}

// TestTwoRoutersIstio: two routers with the Istio backend on one cluster.
// The seed experiment is checked and its two VirtualServices written once
// (two creates in all), one routing event is stored, and on completion
// both routers tear down: the VirtualServices are gone.
func TestTwoRoutersIstio(t *testing.T) {
	t.Parallel()
	b := testenv.NewBus(t)
	f := newIstioFixture(t, istiotest.KnativeService(t, istiotest.SeedTraffic(), nil))
	for i := range 2 {
		be, err := istio.New(istio.Config{}, mirroring.Settings{InitTimeout: 2 * time.Second, InitInterval: 10 * time.Millisecond}, f.Istio, f.Dynamic, routertest.Logger(t))
		if err != nil {
			t.Fatal(err)
		}
		cfg := Config{Backend: BackendIstio, Instance: fmt.Sprintf("router%d", i), Registry: prometheus.NewRegistry()}
		svc, err := newService(cfg, b.NATS.Conn(t), routertest.Logger(t), be)
		if err != nil {
			t.Fatal(err)
		}
		testenv.Run(t, svc)
	}
	testenv.Eventually(t, "both routers' leases", func() (bool, string) {
		ks, err := b.Members.Keys(t.Context())
		return err == nil && len(ks) == 2, fmt.Sprint(ks, err)
	})
	time.Sleep(100 * time.Millisecond)
	count := func() int { return len(f.VirtualServices(t, "default")) }
	creates := func() int {
		n := 0
		for _, a := range f.Istio.Actions() {
			if a.GetVerb() == "create" && a.GetResource().Resource == "virtualservices" {
				n++
			}
		}
		return n
	}
	e := istiotest.SeedExperiment(t)
	if _, err := b.Store.Create(t.Context(), e); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, "the routing event", func() (bool, string) {
		n := routingEvents(t, b.Infra, e)
		return n > 0, fmt.Sprint(n)
	})
	if _, err := b.Store.Update(t.Context(), e.Metadata.Namespace, e.Metadata.Name, func(x *experiment.Experiment) error {
		x.Status.Routing = &experiment.RoutingStatus{Backend: "istio"}
		x.Status.Stage = experiment.StageRunning
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // a second router's writes would have come by now
	if n, c, ev := count(), creates(), routingEvents(t, b.Infra, e); n != 2 || c != 2 || ev != 1 {
		t.Errorf("%d VirtualServices after %d creates, %d routing events; want 2, 2, 1", n, c, ev)
	}
	setStage(t, b.Store, e, experiment.StageCompleted)
	testenv.Until(t, 10*time.Second, "the VirtualServices to be removed", func() bool { return count() == 0 })
}
