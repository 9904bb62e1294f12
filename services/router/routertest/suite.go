package routertest

import (
	"context"
	"errors"
	"maps"
	"reflect"
	"strings"
	"testing"

	"github.com/darklaunch/darklaunch/services/router/mirroring"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

// Backend is router.Backend, said again here: the router imports the
// backends, so their tests, which run this suite, cannot import the router.
type Backend interface {
	Setup(ctx context.Context, exp *experiment.Experiment) (experiment.RoutingStatus, error)
	Teardown(ctx context.Context, exp *experiment.Experiment) error
}

// Harness is one backend's world for the suite; TestBackend asks for a
// fresh one for each case.
type Harness struct {
	// New returns an instance of the backend. A second call is a restarted
	// router: a new instance on the same world (what the proxy kept in
	// memory is gone; the cluster's objects stay).
	New func(t *testing.T) Backend
	// Experiment returns a new experiment (a new UID) named name, at stage
	// Initializing, mirroring host; its target passes the init check until
	// Break.
	Experiment func(t *testing.T, name, host string) *experiment.Experiment
	// Break makes every target fail the init check from now on (the dark
	// version stops answering; the Knative Service is no longer Ready).
	// The init check must then fail quickly: the suite waits for it.
	Break func(t *testing.T)
	// Routes is what b mirrors now: each host and the UID of the
	// experiment it is mirrored for. A backend that writes several
	// objects per route checks here that they are whole and agree.
	Routes func(t *testing.T, b Backend) map[string]string
}

// TestBackend runs the contract of a router backend: what the Service
// relies on, whatever the backend does to mirror.
func TestBackend(t *testing.T, newHarness func(t *testing.T) Harness) {
	for _, c := range []struct {
		name string
		run  func(*testing.T, Harness)
	}{
		{"SetupIsIdempotent", setupIsIdempotent},
		{"TeardownRemovesEverything", teardownRemovesEverything},
		{"RestartedInstanceConvergesWithoutInitCheck", restartedConverges},
		{"FailedInitCheckRoutesNothing", failedInitCheck},
		{"HostOfAnotherExperimentIsRefused", hostTaken},
		{"RecreatedExperimentTakesOver", recreatedTakesOver},
	} {
		t.Run(c.name, func(t *testing.T) { c.run(t, newHarness(t)) })
	}
}

func setup(t *testing.T, b Backend, e *experiment.Experiment) experiment.RoutingStatus {
	t.Helper()
	st, err := b.Setup(context.Background(), e)
	if err != nil {
		t.Fatalf("setup of %s: %v", e.Key(), err)
	}
	return st
}

func teardown(t *testing.T, b Backend, e *experiment.Experiment) {
	t.Helper()
	if err := b.Teardown(context.Background(), e); err != nil {
		t.Fatalf("teardown of %s: %v", e.Key(), err)
	}
}

// wantRoutes checks that b mirrors exactly these hosts, each for the
// experiment given.
func wantRoutes(t *testing.T, h Harness, b Backend, want map[string]*experiment.Experiment) {
	t.Helper()
	uids := map[string]string{}
	for host, e := range want {
		uids[host] = e.Metadata.UID
	}
	if got := h.Routes(t, b); !maps.Equal(got, uids) {
		t.Errorf("routes (host: experiment UID) %v, want %v", got, uids)
	}
}

// setupIsIdempotent: a second Setup (the watch delivering the same state
// again) changes nothing and reports the same.
func setupIsIdempotent(t *testing.T, h Harness) {
	b := h.New(t)
	e := h.Experiment(t, "idem", "idem.example.com")
	first := setup(t, b, e)
	if first.Host != "idem.example.com" || first.Backend == "" {
		t.Errorf("status %+v, want the backend named and host idem.example.com", first)
	}
	if again := setup(t, b, e); !reflect.DeepEqual(again, first) {
		t.Errorf("second Setup reported %+v, want %+v as the first", again, first)
	}
	wantRoutes(t, h, b, map[string]*experiment.Experiment{"idem.example.com": e})
}

// teardownRemovesEverything: Teardown removes all of its experiment's and
// nothing of another's, a second one or one of an experiment never set up
// is a no-op, and the experiment can be routed again.
func teardownRemovesEverything(t *testing.T, h Harness) {
	b := h.New(t)
	first := h.Experiment(t, "first", "first.example.com")
	second := h.Experiment(t, "second", "second.example.com")
	setup(t, b, first)
	setup(t, b, second)
	wantRoutes(t, h, b, map[string]*experiment.Experiment{"first.example.com": first, "second.example.com": second})

	teardown(t, b, first)
	wantRoutes(t, h, b, map[string]*experiment.Experiment{"second.example.com": second})
	teardown(t, b, first)
	teardown(t, b, h.Experiment(t, "never", "never.example.com"))
	wantRoutes(t, h, b, map[string]*experiment.Experiment{"second.example.com": second})
	teardown(t, b, second)
	wantRoutes(t, h, b, nil)

	setup(t, b, first)
	wantRoutes(t, h, b, map[string]*experiment.Experiment{"first.example.com": first})
}

// restartedConverges: a new instance given an experiment whose routing was
// reported routes it at once, with the same status, even though its
// target would fail the init check now.
func restartedConverges(t *testing.T, h Harness) {
	e := h.Experiment(t, "restarted", "restarted.example.com")
	st := setup(t, h.New(t), e)
	e.Status.Stage = experiment.StageRunning
	e.Status.Routing = &st
	h.Break(t)

	restarted := h.New(t)
	again, err := restarted.Setup(context.Background(), e)
	if err != nil {
		t.Fatalf("restarted instance, running experiment: %v, want it routed without an init check", err)
	}
	if !reflect.DeepEqual(again, st) {
		t.Errorf("restarted instance reported %+v, want %+v as before", again, st)
	}
	wantRoutes(t, h, restarted, map[string]*experiment.Experiment{"restarted.example.com": e})
	if third := setup(t, restarted, e); !reflect.DeepEqual(third, st) {
		t.Errorf("another Setup reported %+v, want %+v", third, st)
	}
}

// failedInitCheck: a new experiment whose target does not pass the init
// check is not routed, and the status names what was asked.
func failedInitCheck(t *testing.T, h Harness) {
	b := h.New(t)
	h.Break(t)
	e := h.Experiment(t, "broken", "broken.example.com")
	st, err := b.Setup(context.Background(), e)
	if err == nil {
		t.Fatal("Setup passed the init check of a broken target")
	}
	if st.Host != "broken.example.com" || st.Backend == "" {
		t.Errorf("status of the failed setup %+v, want the backend and host broken.example.com", st)
	}
	wantRoutes(t, h, b, nil)
}

// hostTaken: a host mirrored for one experiment is refused to another,
// with a *mirroring.HostHeld naming the holding run, and the refused one's
// teardown then leaves the first one's routing alone. The holder the
// refusal names is enough for Teardown (it is all the router has of a run
// deleted while it was down), which frees the host for the other.
func hostTaken(t *testing.T, h Harness) {
	b := h.New(t)
	first := h.Experiment(t, "first", "shared.example.com")
	setup(t, b, first)
	second := h.Experiment(t, "second", "shared.example.com")
	held := refused(t, b, second, first)
	wantRoutes(t, h, b, map[string]*experiment.Experiment{"shared.example.com": first})
	teardown(t, b, second)
	wantRoutes(t, h, b, map[string]*experiment.Experiment{"shared.example.com": first})
	if held == nil {
		return
	}
	if held.Holder.Metadata.UID != first.Metadata.UID {
		t.Errorf("the refusal names the holder's UID %q, want %q", held.Holder.Metadata.UID, first.Metadata.UID)
	}
	teardown(t, b, held.Holder)
	wantRoutes(t, h, b, nil)
	setup(t, b, second)
	wantRoutes(t, h, b, map[string]*experiment.Experiment{"shared.example.com": second})
}

// refused checks that Setup of e is refused with a *mirroring.HostHeld
// whose message and holder name the experiment holder, and returns it.
func refused(t *testing.T, b Backend, e, holder *experiment.Experiment) *mirroring.HostHeld {
	t.Helper()
	_, err := b.Setup(context.Background(), e)
	var held *mirroring.HostHeld
	switch {
	case err == nil || !strings.Contains(err.Error(), holder.Metadata.Name):
		t.Errorf("Setup of %s on a host mirrored for %s: err %v, want one naming %s", e.Key(), holder.Key(), err, holder.Metadata.Name)
	case !errors.As(err, &held) || held.Holder == nil:
		t.Errorf("Setup of %s refused with %T %v, want a *mirroring.HostHeld with its holder", e.Key(), err, err)
	case held.Holder.Key() != holder.Key():
		t.Errorf("the refusal names the holder %s, want %s", held.Holder.Key(), holder.Key())
	default:
		return held
	}
	return nil
}

// recreatedTakesOver: an experiment deleted and created again (same name,
// new UID) takes over the routing, and the old run's teardown, which may
// come later, removes nothing of the new one.
func recreatedTakesOver(t *testing.T, h Harness) {
	b := h.New(t)
	old := h.Experiment(t, "again", "again.example.com")
	setup(t, b, old)
	recreated := h.Experiment(t, "again", "again.example.com")
	setup(t, b, recreated)
	wantRoutes(t, h, b, map[string]*experiment.Experiment{"again.example.com": recreated})
	teardown(t, b, old)
	wantRoutes(t, h, b, map[string]*experiment.Experiment{"again.example.com": recreated})
	teardown(t, b, recreated)
	wantRoutes(t, h, b, nil)
}
