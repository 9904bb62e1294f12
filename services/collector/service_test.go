package collector

import (
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/darklaunch/darklaunch/internal/testenv"
	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

// recorder keeps every metrics event published on a subject, duplicates
// included: a core subscription sees what the stream de-duplicates.
type recorder struct {
	mu  sync.Mutex
	got []metricsEvent
}

func (e *env) record(t *testing.T, exp *experiment.Experiment) *recorder {
	rec := &recorder{}
	sub, err := e.NC.Subscribe(bus.EventSubject(exp.Metadata.Namespace, exp.Metadata.Name, bus.EventMetrics), func(m *nats.Msg) {
		me := decodeMetrics(t, m.Header, m.Data)
		rec.mu.Lock()
		rec.got = append(rec.got, me)
		rec.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Unsubscribe() })
	if err := e.NC.Flush(); err != nil {
		t.Fatal(err)
	}
	return rec
}

func (r *recorder) has(role string, k int32) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.ContainsFunc(r.got, func(me metricsEvent) bool {
		return me.ev.Snapshot.Role == role && me.ev.Snapshot.Iteration == k
	})
}

// TestCollectorBusSnapshots is the collector end to end on a real NATS:
// observation batches in, 3 iterations × (live, dark) snapshots out with the
// right cumulative values; a second collector taking over mid-way goes on
// after the last snapshot stored, and what it publishes again (a live
// snapshot whose dark one was not stored) is exactly the same.
func TestCollectorBusSnapshots(t *testing.T) {
	t.Parallel()
	e, exp, start := newRunning(t, "mirroring", 0, 1, 3)
	uid := exp.Metadata.UID
	at := func(d time.Duration) time.Time { return start.Add(d) }
	var live, dark [4]truth // cumulative expectation per iteration

	publish := func(role string, from time.Duration, lat []float64, failed int, firstK int) {
		b := observed(uid, role, at(from), lat, failed)
		if role == bus.RoleDark {
			b.Mirrored = int64(len(lat))
		}
		e.publishObs(t, exp, b)
		tr := &live
		if role == bus.RoleDark {
			tr = &dark
		}
		for k := firstK; k <= 3; k++ {
			tr[k].add(lat, failed)
		}
	}
	// Iteration 1 (and 3), stored before the collector starts.
	publish(bus.RoleLive, 100*time.Millisecond, spread(10, 1, 40), 2, 1)
	publish(bus.RoleDark, 200*time.Millisecond, spread(20, 3, 30), 3, 1)
	publish(bus.RoleDark, 900*time.Millisecond, spread(500, 10, 3), 0, 1)
	publish(bus.RoleLive, 2500*time.Millisecond, spread(15, 2, 10), 1, 3)
	publish(bus.RoleDark, 2600*time.Millisecond, spread(30, 5, 10), 5, 3)
	// Noise: another experiment's UID, and a batch after the last iteration.
	e.publishObs(t, exp, observed("older", bus.RoleLive, at(100*time.Millisecond), []float64{9000}, 1))
	e.publishObs(t, exp, observed(uid, bus.RoleDark, at(3200*time.Millisecond), []float64{9000}, 1))

	rec := e.record(t, exp)
	if _, err := e.Store.Create(t.Context(), exp); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Grace: 300 * time.Millisecond}
	stopFirst := testenv.Run(t, e.newService(t, cfg))
	testenv.Until(t, 3*time.Second, "iteration 1 snapshots", func() bool { return rec.has(bus.RoleDark, 1) })

	// Iteration 2 arrives live; one batch starts exactly at iteration 1's end.
	publish(bus.RoleLive, time.Second, spread(100, 1, 20), 0, 2)
	publish(bus.RoleDark, time.Second, spread(50, 1, 20), 10, 2)
	publish(bus.RoleLive, 1500*time.Millisecond, spread(12, 1, 30), 3, 2)

	// The first collector stops mid-way; a second one takes over after the
	// last snapshot stored (completedIterations, which no judge advances
	// here, says 1).
	stopFirst()
	second := e.newService(t, cfg)
	testenv.Run(t, second)
	testenv.Until(t, 4*time.Second, "iteration 3 snapshots", func() bool { return rec.has(bus.RoleDark, 3) })

	events := e.metricsEvents(t, exp, 6, second)
	for i, me := range events {
		k, role := int32(1+i/2), roles[i%2]
		s := me.ev.Snapshot
		if s.Iteration != k || s.Role != role {
			t.Fatalf("event %d is %s k=%d, want %s k=%d (live then dark per iteration)", i, s.Role, s.Iteration, role, k)
		}
		if want := bus.MsgID(uid, "metrics", role, fmt.Sprint(k)); me.id != want {
			t.Errorf("event %d Msg-Id %q, want %q", i, me.id, want)
		}
		if !s.Start.Equal(start) || !s.End.Equal(at(time.Duration(k)*time.Second)) || s.Source != "bus" {
			t.Errorf("event %d window [%v, %v) source %q", i, s.Start, s.End, s.Source)
		}
		what := fmt.Sprintf("%s k=%d", role, k)
		if role == bus.RoleLive {
			live[k].check(t, busTolerance, what, s.Values)
		} else {
			dark[k].check(t, busTolerance, what, s.Values)
			if s.Mirror == nil || s.Mirror.Mirrored != int64(len(dark[k].lat)) {
				t.Errorf("%s: mirror %+v, want %d mirrored", what, s.Mirror, len(dark[k].lat))
			}
			if s.Version != "sample-app-v2" {
				t.Errorf("%s: version %q, want the baseline's name", what, s.Version)
			}
		}
	}

	// Every publication of a (role, k), by either collector, is the same.
	rec.mu.Lock()
	defer rec.mu.Unlock()
	copies := map[string][]*bus.Snapshot{}
	for _, me := range rec.got {
		key := fmt.Sprintf("%s/%d", me.ev.Snapshot.Role, me.ev.Snapshot.Iteration)
		copies[key] = append(copies[key], me.ev.Snapshot)
	}
	if len(copies["live/1"]) != 1 || len(copies["dark/1"]) != 1 {
		t.Errorf("iteration 1 published %d/%d times, want once: the second collector resumes after the last snapshot stored", len(copies["live/1"]), len(copies["dark/1"]))
	}
	for key, snaps := range copies {
		for _, s := range snaps[1:] {
			if !reflect.DeepEqual(s, snaps[0]) {
				t.Errorf("%s republished differently:\n%+v\n%+v", key, snaps[0], s)
			}
		}
	}
}

// TestCollectorNoObservations: a version nobody called has request-count 0
// and every ratio and latency unavailable, never 0.
func TestCollectorNoObservations(t *testing.T) {
	t.Parallel()
	e, exp, _ := newRunning(t, "silent", -time.Second, 1, 1)
	if _, err := e.Store.Create(t.Context(), exp); err != nil {
		t.Fatal(err)
	}
	svc := e.newService(t, Config{Grace: 10 * time.Millisecond})
	testenv.Run(t, svc)
	for _, me := range e.metricsEvents(t, exp, 2, svc) {
		s := me.ev.Snapshot
		if got := val(t, s.Values, experiment.MetricRequestCount); got != 0 {
			t.Errorf("%s: request-count %v, want 0", s.Role, got)
		}
		for _, name := range []string{experiment.MetricErrorRate, experiment.MetricMeanLatency, experiment.MetricP95Latency, experiment.MetricP99Latency} {
			if v, ok := s.Values[name]; !ok || v != nil {
				t.Errorf("%s: %s = %v (present %v), want unavailable", s.Role, name, v, ok)
			}
			if s.Errors[name] == "" {
				t.Errorf("%s: %s unavailable without a reason", s.Role, name)
			}
		}
	}
}

// TestCollectorStopsAndPurges: Completed stops the clock; deleting the
// experiment purges its observations.
func TestCollectorStopsAndPurges(t *testing.T) {
	t.Parallel()
	e, exp, start := newRunning(t, "gone", 0, 1, 100)
	src := &fakeSource{start: start.UTC()}
	s := e.newService(t, Config{Grace: 10 * time.Millisecond})
	s.newSource = func(Config, *bus.Infra, *slog.Logger) (Source, error) { return src, nil }
	e.publishObs(t, exp, observed(exp.Metadata.UID, bus.RoleLive, start, []float64{1}, 0))
	if _, err := e.Store.Create(t.Context(), exp); err != nil {
		t.Fatal(err)
	}
	testenv.Run(t, s)
	testenv.Until(t, 3*time.Second, "the first measurement", func() bool { c, _, _ := src.snapshot(); return len(c) > 0 })

	if _, err := e.Store.Update(t.Context(), "default", "gone", func(x *experiment.Experiment) error {
		x.Status.Stage = experiment.StageCompleted
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	testenv.Until(t, time.Second, "the clock to stop", func() bool { _, _, closes := src.snapshot(); return closes == 1 })

	if err := e.Store.Delete(t.Context(), "default", "gone", 0); err != nil {
		t.Fatal(err)
	}
	testenv.Until(t, 2*time.Second, "the observations to be purged", func() bool {
		_, err := e.Obs.GetLastMsgForSubject(t.Context(), bus.ObsSubject("default", "gone", exp.Metadata.UID))
		return errors.Is(err, jetstream.ErrMsgNotFound)
	})
}

// TestCollectorPurgesReplacedRun: a create that takes over the name of a
// completed run (a new UID in the same key) purges the old run's
// observations, as a delete does.
func TestCollectorPurgesReplacedRun(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	start := time.Now()
	old := running("rerun", start, 1, 1)
	old.Status.Stage = experiment.StageCompleted
	e.publishObs(t, old, observed(old.Metadata.UID, bus.RoleLive, start, []float64{1}, 0))
	if _, err := e.Store.Create(t.Context(), old); err != nil {
		t.Fatal(err)
	}
	s := e.newService(t, Config{Grace: 10 * time.Millisecond})
	s.newSource = func(Config, *bus.Infra, *slog.Logger) (Source, error) { return &fakeSource{start: start.UTC()}, nil }
	swept := make(chan struct{})
	s.swept = func() { close(swept) }
	testenv.Run(t, s)

	stored := func(x *experiment.Experiment) bool {
		_, err := e.Obs.GetLastMsgForSubject(t.Context(), bus.ObsSubject("default", "rerun", x.Metadata.UID))
		return err == nil
	}
	// The start-up sweep keeps it: the run still exists.
	closedWithin(t, swept, testenv.Within, "the start-up sweep to end")
	if !stored(old) {
		t.Fatal("the completed run's observations were purged while it still exists")
	}
	// The watch must have seen the old run: a watch whose first value is
	// already the new one has nothing to compare it with (the start-up
	// sweep of the next start takes those).
	testenv.Until(t, testenv.Within, "the collector to watch", func() bool { return s.Ready() == nil })
	next := running("rerun", time.Now(), 1, 100)
	_, rev, err := e.Store.Get(t.Context(), "default", "rerun")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Store.Replace(t.Context(), next, rev); err != nil {
		t.Fatal(err)
	}
	testenv.Until(t, 10*time.Second, "the replaced run's observations to be purged", func() bool { return !stored(old) })
}

// TestPurgeKeepsCurrentExperiment: purging after a delete takes the
// observations of the deleted experiment and of any other experiment that no
// longer exists, never those of a new experiment of the same name that has
// already started publishing (the interleaving a delete-then-create allows).
func TestPurgeKeepsCurrentExperiment(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	start := time.Now()
	old := running("again", start, 1, 10)
	recreated := running("again", start, 1, 10) // same name, new UID
	gone := running("gone-while-down", start, 1, 10)
	kept := running("kept", start, 1, 10)
	for _, x := range []*experiment.Experiment{old, recreated, gone, kept} {
		e.publishObs(t, x, observed(x.Metadata.UID, bus.RoleLive, start, []float64{1}, 0))
	}
	for _, x := range []*experiment.Experiment{recreated, kept} {
		if _, err := e.Store.Create(t.Context(), x); err != nil {
			t.Fatal(err)
		}
	}
	stored := func(x *experiment.Experiment) bool {
		_, err := e.Obs.GetLastMsgForSubject(t.Context(), bus.ObsSubject(x.Metadata.Namespace, x.Metadata.Name, x.Metadata.UID))
		if err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			t.Fatal(err)
		}
		return err == nil
	}
	// One in the subject form from before subjects named the UID.
	legacy := bus.ObsPrefix + ".default.legacy"
	if _, err := e.JS.Publish(t.Context(), legacy, []byte("old")); err != nil {
		t.Fatal(err)
	}
	r := testRunner(e, &fakeSource{}, Config{})

	// The delete of default/again, handled after the new one published.
	r.purge(t.Context(), bus.ObsFilter("default", "again"))
	if stored(old) || !stored(recreated) {
		t.Errorf("after purging default/again: old stored %v (want false), re-created stored %v (want true)", stored(old), stored(recreated))
	}
	if !stored(gone) {
		t.Error("purging default/again took another experiment's observations")
	}
	// The sweep at start-up: experiments deleted while no collector ran.
	r.purge(t.Context(), bus.ObsFilter("", ""))
	if stored(gone) || !stored(recreated) || !stored(kept) {
		t.Errorf("after the sweep: gone %v (want false), re-created %v, kept %v (want true)", stored(gone), stored(recreated), stored(kept))
	}
	if _, err := e.Obs.GetLastMsgForSubject(t.Context(), legacy); !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Errorf("old-form subject after the sweep: err %v, want it purged", err)
	}
}

func TestNewUnknownSource(t *testing.T) {
	e := newEnv(t)
	if _, err := New(Config{Source: "prometeus"}, e.NC, nil); !errors.Is(err, ErrUnknownSource) {
		t.Errorf("unknown source: err = %v, want ErrUnknownSource", err)
	}
	s := e.newService(t, Config{})
	if c := s.Config(); c.Source != SourceBus || c.Grace != DefaultGrace || c.CatchUp != DefaultCatchUp || c.Instance == "" {
		t.Errorf("defaults: %+v", c)
	}
	if _, err := newSource(Config{Source: "nope"}, e.Infra, nil); !errors.Is(err, ErrUnknownSource) {
		t.Errorf("factory: err = %v, want ErrUnknownSource", err)
	}
	if _, err := New(Config{}, nil, nil); err == nil {
		t.Error("New without a connection: want an error")
	}
}
