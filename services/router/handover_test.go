package router

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/internal/testenv"
	"github.com/darklaunch/darklaunch/services/router/mirroring"
	"github.com/darklaunch/darklaunch/services/router/routertest"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

// handoverPairs is how many experiments follow one another on one host.
const handoverPairs = 20

// hostWorld is a router on one host and the experiments it is given.
type hostWorld struct {
	r *testRouter
	// next is a new experiment named name on the host, Initializing.
	next func(name string) *experiment.Experiment
}

func proxyWorld(t *testing.T, cfg Config) *hostWorld {
	live := routertest.NewVersion(t, nil)
	dark := routertest.NewVersion(t, nil)
	return &hostWorld{
		r: startRouter(t, testenv.StartNATS(t), cfg, nil),
		next: func(name string) *experiment.Experiment {
			return routertest.Experiment(name, "customdomain.com", live.URL, dark.URL, 40, experiment.StageInitializing)
		},
	}
}

func (w *hostWorld) create(t *testing.T, e *experiment.Experiment) {
	t.Helper()
	if _, err := w.r.infra.Store.Create(context.Background(), e); err != nil {
		t.Fatal(err)
	}
}

// running creates e and waits until it is routed, then moves it on to
// Running with its routing, as the judge does.
func (w *hostWorld) running(t *testing.T, e *experiment.Experiment) {
	t.Helper()
	w.create(t, e)
	ev, _ := w.r.routingEvent(t, e)
	if ev.Routing == nil || !ev.Routing.Ready {
		t.Fatalf("routing event of %s %+v, want Ready", e.Key(), ev.Routing)
	}
	w.update(t, e, func(x *experiment.Experiment) {
		x.Status.Stage = experiment.StageRunning
		x.Status.Routing = &ev.Routing.Status
	})
}

func (w *hostWorld) update(t *testing.T, e *experiment.Experiment, fn func(*experiment.Experiment)) {
	t.Helper()
	_, err := w.r.infra.Store.Update(context.Background(), e.Metadata.Namespace, e.Metadata.Name, func(x *experiment.Experiment) error {
		fn(x)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// handovers are the ways an experiment leaves its host to the next one,
// created at the same moment: end then create, or create then end (which
// the router sees while the holder still runs: holderGrace).
var handovers = []struct {
	name string
	do   func(t *testing.T, w *hostWorld, prev, next *experiment.Experiment)
}{
	{"delete then create", func(t *testing.T, w *hostWorld, prev, next *experiment.Experiment) {
		w.delete(t, prev)
		w.create(t, next)
	}},
	{"complete then create", func(t *testing.T, w *hostWorld, prev, next *experiment.Experiment) {
		w.complete(t, prev)
		w.create(t, next)
	}},
	{"create then delete", func(t *testing.T, w *hostWorld, prev, next *experiment.Experiment) {
		w.create(t, next)
		time.Sleep(50 * time.Millisecond) // the gap between the two requests, not a wait
		w.delete(t, prev)
	}},
}

func (w *hostWorld) delete(t *testing.T, e *experiment.Experiment) {
	t.Helper()
	if err := w.r.infra.Store.Delete(context.Background(), e.Metadata.Namespace, e.Metadata.Name, 0); err != nil {
		t.Fatal(err)
	}
}

func (w *hostWorld) complete(t *testing.T, e *experiment.Experiment) {
	t.Helper()
	w.update(t, e, func(x *experiment.Experiment) { x.Status.Stage = experiment.StageCompleted })
}

// followOneAnother hands a running experiment's host over to a new one,
// handoverPairs times in each way: every new one is routed.
func followOneAnother(t *testing.T, world func(t *testing.T) *hostWorld) {
	for _, h := range handovers {
		t.Run(h.name, func(t *testing.T) {
			w := world(t)
			prev := w.next("run-0")
			w.running(t, prev)
			ready := 0
			for i := 1; i <= handoverPairs; i++ {
				e := w.next(fmt.Sprintf("run-%d", i))
				h.do(t, w, prev, e)
				ev, _ := w.r.routingEvent(t, e)
				if ev.Routing != nil && ev.Routing.Ready {
					ready++
					w.update(t, e, func(x *experiment.Experiment) {
						x.Status.Stage = experiment.StageRunning
						x.Status.Routing = &ev.Routing.Status
					})
				} else {
					t.Errorf("%s, as %s ended: not routed: %+v", e.Key(), prev.Key(), ev.Routing)
				}
				prev = e
			}
			t.Logf("%s on one host: %d/%d routed", h.name, ready, handoverPairs)
		})
	}
}

// TestHostHandedOverProxy: an experiment created the moment the previous
// one on its host is deleted or completes takes the host over; the
// previous one's teardown is under way in the background then.
func TestHostHandedOverProxy(t *testing.T) {
	followOneAnother(t, func(t *testing.T) *hostWorld { return proxyWorld(t, Config{}) })
}

// TestHostOfRunningExperimentRefused: a host held by an experiment
// being set up (routed, the judge not yet told) or running is refused with
// the backend's reason once holderGrace has passed, not after InitTimeout.
func TestHostOfRunningExperimentRefused(t *testing.T) {
	const initTimeout = 20 * time.Second
	w := proxyWorld(t, Config{Settings: mirroring.Settings{InitTimeout: initTimeout}})
	holder := w.next("holder")
	w.create(t, holder)
	if ev, _ := w.r.routingEvent(t, holder); ev.Routing == nil || !ev.Routing.Ready {
		t.Fatalf("routing event of the holder %+v, want Ready", ev.Routing)
	}
	for _, stage := range []experiment.Stage{experiment.StageInitializing, experiment.StageRunning} {
		w.update(t, holder, func(x *experiment.Experiment) { x.Status.Stage = stage })
		e := w.next("while-" + string(stage))
		start := time.Now()
		w.create(t, e)
		ev, _ := w.r.routingEvent(t, e)
		want := "host customdomain.com is already mirrored for experiment default/holder"
		if ev.Routing == nil || ev.Routing.Ready || ev.Routing.Reason != want {
			t.Errorf("holder %s: routing event %+v, want not Ready with reason %q", stage, ev.Routing, want)
		}
		if took := time.Since(start); took > initTimeout/2 {
			t.Errorf("holder %s: refused after %s, want within %s", stage, took, holderGrace)
		}
	}
	if got := routertest.Send(t, w.r.url, "customdomain.com", "GET", "/", nil); got.Status != http.StatusOK {
		t.Errorf("the holder's route after the refusals: %d %q", got.Status, got.Body)
	}
}

// TestHostHandedOverFromSlowTeardownProxy: the host is free as soon as the
// previous experiment's teardown begins, though its teardown waits for a
// copy in flight.
func TestHostHandedOverFromSlowTeardownProxy(t *testing.T) {
	gate := make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(gate) }) }
	t.Cleanup(release)
	live := routertest.NewVersion(t, nil)
	dark := routertest.NewVersion(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			<-gate
		}
	})
	w := &hostWorld{r: startRouter(t, testenv.StartNATS(t), Config{}, nil), next: func(name string) *experiment.Experiment {
		return routertest.Experiment(name, "customdomain.com", live.URL, dark.URL, 100, experiment.StageInitializing)
	}}
	prev := w.next("prev")
	w.running(t, prev)
	if got := routertest.Send(t, w.r.url, "customdomain.com", "GET", "/hold", nil); got.Status != http.StatusOK {
		t.Fatalf("request through the proxy: %d %q", got.Status, got.Body)
	}
	testenv.Until(t, 5*time.Second, "the copy to reach dark", func() bool {
		return slices.ContainsFunc(dark.Requests(), func(r routertest.Request) bool { return r.URI == "/hold" })
	})

	w.complete(t, prev)
	next := w.next("next")
	w.create(t, next)
	ev, _ := w.r.routingEvent(t, next)
	select {
	case <-gate:
		t.Fatal("the copy was released before the next experiment was routed")
	default:
	}
	if ev.Routing == nil || !ev.Routing.Ready {
		t.Fatalf("routing event of the next experiment, while the previous one's copy is in flight: %+v, want Ready", ev.Routing)
	}
	release()
}

// TestKeptRoutingHandedOver: with KeepRouting, a completed experiment's
// route stays until a new experiment asks for its host.
func TestKeptRoutingHandedOver(t *testing.T) {
	live := routertest.NewVersion(t, nil)
	newLive := routertest.NewVersion(t, nil)
	dark := routertest.NewVersion(t, nil)
	w := proxyWorld(t, Config{KeepRouting: true})
	prev := routertest.Experiment("prev", "customdomain.com", live.URL, dark.URL, 40, experiment.StageInitializing)
	w.running(t, prev)
	w.complete(t, prev)
	next := routertest.Experiment("next", "customdomain.com", newLive.URL, dark.URL, 40, experiment.StageInitializing)
	w.create(t, next)
	if ev, _ := w.r.routingEvent(t, next); ev.Routing == nil || !ev.Routing.Ready {
		t.Fatalf("routing event of the next experiment %+v, want Ready", ev.Routing)
	}
	before := len(newLive.Requests())
	if got := routertest.Send(t, w.r.url, "customdomain.com", "GET", "/", nil); got.Status != http.StatusOK || len(newLive.Requests()) != before+1 {
		t.Errorf("request after the handover: %d, %d requests at the new live version, want 200 and %d", got.Status, len(newLive.Requests()), before+1)
	}
}
