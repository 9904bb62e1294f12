package collector

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

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

func (e *env) newService(t *testing.T, cfg Config) *Service {
	t.Helper()
	s, err := New(cfg, e.NC, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// observed is a batch built with the proxy's recorder from known latencies,
// the first `failed` of them failures.
func observed(uid, role string, start time.Time, latMs []float64, failed int) *bus.ObservationBatch {
	rec := sketch.NewRecorder()
	for i, ms := range latMs {
		rec.Observe(ms, i < failed)
	}
	b := &bus.ObservationBatch{UID: uid, Role: role, Router: "test", Start: start.UTC(), End: start.Add(100 * time.Millisecond).UTC()}
	b.Count, b.Errors, b.SumMs, b.Sketch = rec.Flush()
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

// metricsEvents reads n metrics events of exp from the stream (waiting up
// to timeout), then checks that no more are stored.
func (e *env) metricsEvents(t *testing.T, exp *experiment.Experiment, n int, timeout time.Duration) []metricsEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	cons, err := e.Events.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{bus.EventSubject(exp.Metadata.Namespace, exp.Metadata.Name, bus.EventMetrics)},
	})
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
	if m, err := cons.Next(jetstream.FetchMaxWait(100 * time.Millisecond)); err == nil {
		got := decodeMetrics(t, m.Headers(), m.Data())
		t.Errorf("unexpected extra metrics event %s", got.id)
	}
	return out
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
