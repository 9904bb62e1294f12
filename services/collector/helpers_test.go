package collector

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/darklaunch/darklaunch/internal/testenv"
	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
	"github.com/darklaunch/darklaunch/shared/sketch"
)

// env is a test's bus: a real nats-server with darklaunch's streams.
type env struct{ *testenv.Bus }

func newEnv(t *testing.T) *env { return &env{testenv.NewBus(t)} }

// running is an experiment at stage Running since start.
func running(name string, start time.Time, interval, iterations int32) *experiment.Experiment {
	return testenv.Experiment(testenv.Named(name), testenv.Every(interval, iterations), testenv.Running(start))
}

// newRunning is a test's bus and an experiment named name running on it
// since now + since (iterations of interval seconds), not yet stored.
func newRunning(t *testing.T, name string, since time.Duration, interval, iterations int32) (*env, *experiment.Experiment, time.Time) {
	e := newEnv(t)
	start := time.Now().Add(since)
	return e, running(name, start, interval, iterations), start
}

func (e *env) newService(t *testing.T, cfg Config) *Service {
	t.Helper()
	s, err := New(cfg, e.NC, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// observed is the batch of a 1 ns slot at start, built with the proxy's
// recorder from known latencies, the first `failed` of them failures: it
// counts in the windows that end after start.
func observed(uid, role string, start time.Time, latMs []float64, failed int) *bus.ObservationBatch {
	rec := sketch.NewRecorder(sketch.Grid{Origin: start, Width: 1}, 0)
	for i, ms := range latMs {
		rec.Observe(start, ms, i < failed)
	}
	s := sketch.Slot{Start: start, End: start.Add(1)}
	if slots := rec.Flush(time.Time{}); len(slots) == 1 {
		s = slots[0]
	}
	return s.Batch(uid, role, "test")
}

// legacy is observed as a router before slots published it: a flush period
// of 100 ms from start.
func legacy(uid, role string, start time.Time, latMs []float64, failed int) *bus.ObservationBatch {
	b := observed(uid, role, start, latMs, failed)
	b.Slotted, b.End = false, start.Add(100*time.Millisecond).UTC()
	return b
}

func (e *env) publishObs(t *testing.T, exp *experiment.Experiment, b *bus.ObservationBatch) {
	t.Helper()
	m, err := bus.NewMsg(bus.ObsSubject(exp.Metadata.Namespace, exp.Metadata.Name, exp.Metadata.UID), b)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.JS.PublishMsg(t.Context(), m); err != nil {
		t.Fatal(err)
	}
}

type metricsEvent struct {
	id string
	ev bus.Event
}

// metricsEvents reads the n metrics events of exp from the stream, then
// checks that no more are stored once nothing more can come: the clock has
// returned (running is nil) or running's clocks have all ended.
func (e *env) metricsEvents(t *testing.T, exp *experiment.Experiment, n int, running *Service) []metricsEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*testenv.Within)
	defer cancel()
	subject := bus.EventSubject(exp.Metadata.Namespace, exp.Metadata.Name, bus.EventMetrics)
	cons, err := e.Events.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		t.Fatal(err)
	}
	var out []metricsEvent
	for len(out) < n {
		m, err := cons.Next(jetstream.FetchContext(ctx))
		if err != nil {
			t.Fatalf("waiting for metrics event %d of %d: %v", len(out)+1, n, err)
		}
		out = append(out, decodeMetrics(t, m.Headers(), m.Data()))
	}
	if running != nil {
		testenv.Until(t, testenv.Within, "the clock to end", func() bool { return testutil.ToFloat64(running.prom.clocks) == 0 })
	}
	info, err := e.Events.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		t.Fatal(err)
	}
	if stored := info.State.Subjects[subject]; stored != uint64(n) {
		t.Errorf("%d metrics events stored, want %d: %d unexpected", stored, n, int(stored)-n)
	}
	return out
}

// closedWithin fails the test unless ch is closed within d.
func closedWithin(t *testing.T, ch <-chan struct{}, d time.Duration, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(d):
		t.Fatalf("%s within %v", what, d)
	}
}

func decodeMetrics(t *testing.T, h nats.Header, data []byte) metricsEvent {
	t.Helper()
	var ev bus.Event
	if err := bus.Unmarshal(h.Get(bus.HeaderContentType), data, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Snapshot == nil {
		t.Fatalf("metrics event without snapshot: %+v", ev)
	}
	return metricsEvent{id: h.Get(bus.HeaderMsgID), ev: ev}
}
