package judge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/darklaunch/darklaunch/internal/testenv"
	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

// env is one test's world: a real nats-server, a connection, JetStream and
// the state store, as the other services see them.
type env struct {
	t     *testing.T
	srv   *testenv.NATS
	nc    *nats.Conn
	js    jetstream.JetStream
	store *bus.Store
	api   *bus.Client
}

func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvOn(t, testenv.StartNATS(t))
}

// newEnvOn is newEnv on a server of the test's own.
func newEnvOn(t *testing.T, srv *testenv.NATS) *env {
	t.Helper()
	b := testenv.NewBusOn(t, srv)
	return &env{t: t, srv: b.NATS, nc: b.NC, js: b.JS, store: b.Store, api: b.API}
}

// startJudge runs a judge until the test ends or stop is called; it
// returns once the API answers.
func (e *env) startJudge(cfg Config) (stop func()) {
	e.t.Helper()
	_, stop = e.runJudge(cfg)
	return stop
}

// runJudge is startJudge that also returns the running Service.
func (e *env) runJudge(cfg Config) (*Service, func()) {
	e.t.Helper()
	level := slog.LevelWarn
	if testing.Verbose() {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	s, err := New(cfg, e.srv.Conn(e.t), log)
	if err != nil {
		e.t.Fatal(err)
	}
	stop := testenv.Run(e.t, s)
	e.waitFor("the judge to answer", func() (bool, string) {
		_, err := e.api.List(context.Background(), "")
		return err == nil, fmt.Sprint(err)
	})
	return s, stop
}

// waitFor polls cond until it holds, failing the test after a deadline.
func (e *env) waitFor(what string, cond func() (bool, string)) {
	e.t.Helper()
	testenv.Eventually(e.t, what, cond)
}

func (e *env) waitForWithin(what string, within time.Duration, cond func() (bool, string)) {
	e.t.Helper()
	testenv.EventuallyWithin(e.t, within, what, cond)
}

// get reads an experiment from the KV bucket, nil when absent.
func (e *env) get(ns, name string) *experiment.Experiment {
	e.t.Helper()
	x, _, err := e.store.Get(context.Background(), ns, name)
	if err != nil {
		return nil
	}
	return x
}

// waitStatus waits until the stored experiment satisfies cond.
func (e *env) waitStatus(name, what string, cond func(*experiment.Experiment) bool) *experiment.Experiment {
	e.t.Helper()
	return e.waitStatusWithin(name, what, 5*time.Second, cond)
}

func (e *env) waitStatusWithin(name, what string, within time.Duration, cond func(*experiment.Experiment) bool) *experiment.Experiment {
	e.t.Helper()
	var x *experiment.Experiment
	e.waitForWithin(what, within, func() (bool, string) {
		x = e.get("default", name)
		if x == nil {
			return false, "no experiment"
		}
		return cond(x), fmt.Sprintf("stage %s, completed %d, message %q", x.Status.Stage, x.Status.CompletedIterations, x.Status.Message)
	})
	return x
}

// doc is the seed experiment with a short duration, as msgpack.
func (e *env) doc(name string, iterations int32, objectives ...experiment.Objective) *experiment.Experiment {
	e.t.Helper()
	x := must(experiment.Decode(seedBytes(e.t)))(e.t)
	x.Metadata.Name = name
	one := int32(1)
	x.Spec.Duration.IntervalSeconds = &one
	x.Spec.Duration.IterationsPerLoop = &iterations
	if len(objectives) > 0 {
		x.Spec.Criteria.Objectives = objectives
	}
	return x
}

// create submits x through the API.
func (e *env) create(x *experiment.Experiment) *experiment.Experiment {
	e.t.Helper()
	b, err := bus.Marshal(bus.ContentTypeMsgpack, x)
	if err != nil {
		e.t.Fatal(err)
	}
	got, err := e.api.Create(context.Background(), b)
	if err != nil {
		e.t.Fatalf("create %s: %v", x.Metadata.Name, err)
	}
	return got
}

// publish sends an event about x as the other services would.
func (e *env) publish(x *experiment.Experiment, typ, msgID string, fill func(*bus.Event)) {
	e.t.Helper()
	ev := bus.NewEvent(typ, "test", x, time.Now())
	fill(ev)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := bus.Publish(ctx, e.js, ev, msgID); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) routing(x *experiment.Experiment, ready bool, reason string) {
	e.t.Helper()
	e.publish(x, bus.EventRouting, bus.MsgID(x.Metadata.UID, bus.EventRouting), func(ev *bus.Event) {
		ev.Routing = &bus.Routing{Ready: ready, Reason: reason, Status: experiment.RoutingStatus{
			Backend: "proxy", Host: "customdomain.com", Percent: 40, Live: "http://127.0.0.1:1", Dark: "sample-app-v2",
		}}
	})
}

// snapshot publishes the collector's measurement of one role at iteration k.
func (e *env) snapshot(x *experiment.Experiment, role string, k int32, values map[string]*float64) {
	e.t.Helper()
	e.snapshotWithID(x, role, k, values, bus.MsgID(x.Metadata.UID, bus.EventMetrics, role, fmt.Sprint(k)))
}

func (e *env) snapshotWithID(x *experiment.Experiment, role string, k int32, values map[string]*float64, msgID string) {
	e.t.Helper()
	e.publishSnapshot(x, &bus.Snapshot{Iteration: k, Role: role, Version: role, Values: values, Source: "test",
		Mirror: &experiment.MirrorStats{Mirrored: int64(10 * k)}}, msgID)
}

func (e *env) publishSnapshot(x *experiment.Experiment, snap *bus.Snapshot, msgID string) {
	e.t.Helper()
	e.publish(x, bus.EventMetrics, msgID, func(ev *bus.Event) { ev.Snapshot = snap })
}

// events reads every event of one experiment from the stream, in order.
func (e *env) events(name string) []*bus.Event {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := e.js.OrderedConsumer(ctx, bus.StreamEvents, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{bus.EventsFilter("default", name)},
	})
	if err != nil {
		e.t.Fatal(err)
	}
	var out []*bus.Event
	for {
		batch, err := c.FetchNoWait(100)
		if err != nil {
			e.t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			var ev bus.Event
			if err := bus.Unmarshal(m.Headers().Get(bus.HeaderContentType), m.Data(), &ev); err != nil {
				e.t.Fatal(err)
			}
			if got, want := m.Headers().Get(bus.HeaderEventType), ev.Type; got != want {
				e.t.Errorf("event header %q, type %q", got, want)
			}
			out = append(out, &ev)
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			e.t.Fatal(err)
		}
		if n == 0 {
			return out
		}
	}
}

// eventsOf returns the events of one type.
func eventsOf(evs []*bus.Event, typ string) []*bus.Event {
	var out []*bus.Event
	for _, ev := range evs {
		if ev.Type == typ {
			out = append(out, ev)
		}
	}
	return out
}

// waitEvent waits until the experiment has n events of type typ.
func (e *env) waitEvents(name, typ string, n int) []*bus.Event {
	e.t.Helper()
	var got []*bus.Event
	e.waitFor(fmt.Sprintf("%d %s events of %s", n, typ, name), func() (bool, string) {
		got = eventsOf(e.events(name), typ)
		return len(got) >= n, fmt.Sprintf("%d events", len(got))
	})
	return got
}

func f64(v float64) *float64 { return &v }

// seedBytes is the seed experiment's document.
func seedBytes(t testing.TB) []byte {
	t.Helper()
	return must(os.ReadFile("../../shared/experiment/testdata/seed-experiment.yaml"))(t)
}

// must(f())(t) is what f returns, or the test fails with f's error.
func must[T any](v T, err error) func(testing.TB) T {
	return func(t testing.TB) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// good and slow are the dark version's values in the flow tests.
func good(k int32) map[string]*float64 {
	return map[string]*float64{
		experiment.MetricRequestCount: f64(float64(20 * k)), experiment.MetricMeanLatency: f64(12.5),
		experiment.MetricP95Latency: f64(40), experiment.MetricErrorRate: f64(0), experiment.MetricErrorCount: f64(0),
	}
}

func slow(k int32) map[string]*float64 {
	v := good(k)
	v[experiment.MetricMeanLatency] = f64(62.1)
	return v
}

// partitionOf is the partition of the judge's queue that experiment
// name's events are on.
func (e *env) partitionOf(name string) int { return bus.JudgePartition("default", name) }

// sharingPartition is a name, beginning with prefix, of an experiment
// whose events are on the same partition as name's.
func sharingPartition(prefix, name string) string {
	for i := 0; ; i++ {
		if n := fmt.Sprintf("%s-%d", prefix, i); bus.JudgePartition("default", n) == bus.JudgePartition("default", name) {
			return n
		}
	}
}
