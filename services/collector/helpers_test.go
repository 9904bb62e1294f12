package collector

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
	"github.com/darklaunch/darklaunch/shared/natstest"
	"github.com/darklaunch/darklaunch/shared/sketch"
)

type env struct {
	nc    *nats.Conn
	infra *bus.Infra
}

func newEnv(t *testing.T) *env {
	t.Helper()
	srv := natstest.Run(t)
	nc := srv.Conn(t)
	infra, err := bus.EnsureInfra(t.Context(), nc, bus.StreamLimits{})
	if err != nil {
		t.Fatal(err)
	}
	return &env{nc: nc, infra: infra}
}

// running is an experiment at stage Running since start.
func running(name string, start time.Time, interval, iterations int32) *experiment.Experiment {
	e := &experiment.Experiment{
		APIVersion: experiment.APIVersionV2Alpha1,
		Kind:       experiment.Kind,
		Metadata:   experiment.Metadata{Name: name, Namespace: "default", UID: nuid.Next()},
		Spec: experiment.Spec{
			Target:      "default/sample-app",
			Strategy:    experiment.Strategy{TestingPattern: "Conformance"},
			Duration:    &experiment.Duration{IntervalSeconds: &interval, IterationsPerLoop: &iterations},
			VersionInfo: &experiment.VersionInfo{Baseline: experiment.VersionDetail{Name: "sample-app-v2"}},
		},
	}
	e.Default()
	e.Status.Stage = experiment.StageRunning
	e.Status.StartTime = &start
	return e
}

// start runs a collector until stop is called (or the test ends) and checks
// that Run returns nil.
func (e *env) start(t *testing.T, s *Service) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Run did not return within 5s of cancel")
		}
	}
	t.Cleanup(stop)
	return stop
}

func (e *env) newService(t *testing.T, cfg Config) *Service {
	t.Helper()
	s, err := New(cfg, e.nc, nil)
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
	if _, err := e.infra.JS.PublishMsg(t.Context(), m); err != nil {
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
	cons, err := e.infra.Events.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
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

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
