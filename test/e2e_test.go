// Package e2e runs darklaunch end to end: a real embedded nats-server with
// JetStream, the four services each on its own connection, and two sample
// apps as live and dark versions, with 1-second iterations.
package e2e

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/darklaunch/darklaunch/internal/sampleapp"
	"github.com/darklaunch/darklaunch/internal/stack"
	"github.com/darklaunch/darklaunch/internal/testenv"
	"github.com/darklaunch/darklaunch/services"
	"github.com/darklaunch/darklaunch/services/collector"
	"github.com/darklaunch/darklaunch/services/router"
	"github.com/darklaunch/darklaunch/services/router/mirroring"
	"github.com/darklaunch/darklaunch/services/router/proxy"
	"github.com/darklaunch/darklaunch/shared"
	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
	"github.com/darklaunch/darklaunch/shared/service"
)

// env is one running stack and a client of its API.
type env struct {
	t      *testing.T
	st     *stack.Stack
	client *bus.Client
	nc     *nats.Conn
	js     jetstream.JetStream
}

func logger(t *testing.T) *slog.Logger {
	if os.Getenv("DARKLAUNCH_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return slog.New(slog.DiscardHandler)
}

// start runs a stack tuned for 1-second iterations: the proxy flushes its
// observations every 200 ms and the collector waits 600 ms past each
// iteration's end for the last of them.
func start(t *testing.T, live, dark sampleapp.Config) *env {
	t.Helper()
	return startStack(t, stack.Config{Live: live, Dark: dark})
}

// startStack runs the stack cfg describes until the test ends, with the
// test's store and logs; without services of its own, they are tuned as
// start says.
func startStack(t *testing.T, cfg stack.Config) *env {
	t.Helper()
	if cfg.StoreDir == "" {
		cfg.StoreDir = t.TempDir()
	}
	cfg.Log = logger(t)
	if cfg.Services == nil {
		cfg.Services = []service.Config{
			&router.Config{Proxy: proxy.Config{FlushInterval: 200 * time.Millisecond}, Settings: mirroring.Settings{InitTimeout: 5 * time.Second, InitInterval: 100 * time.Millisecond}},
			&collector.Config{Grace: 600 * time.Millisecond},
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	st, err := stack.Start(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		st.Close()
		cancel()
	})
	c, nc, err := st.Client()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, st: st, client: c, nc: nc, js: js}
}

// doc is the seed's experiment with 1-second iterations and loadgen at
// 25 req/s from the start.
func doc(name string) []byte {
	b, err := os.ReadFile("../examples/mirroring/experiment.yaml")
	if err != nil {
		panic(err)
	}
	s := strings.Replace(string(b), "name: mirroring", "name: "+name, 1)
	s = strings.Replace(s, "intervalSeconds: 10", "intervalSeconds: 1", 1)
	return []byte(s + "  load:\n    rate: 25\n    delay: 0s\n")
}

// run creates the experiment and waits until it is Completed.
func (e *env) run(name string, during func(*experiment.Experiment)) *experiment.Experiment {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	created, err := e.client.Create(ctx, doc(name))
	if err != nil {
		e.t.Fatalf("create: %v", err)
	}
	if created.Status.Stage != experiment.StageInitializing || created.Metadata.UID == "" {
		e.t.Fatalf("created: stage %q uid %q", created.Status.Stage, created.Metadata.UID)
	}
	ref := bus.Ref{Namespace: "default", Name: name}
	for {
		cur, err := e.client.Get(ctx, ref)
		var apiErr *bus.APIError
		switch {
		case errors.As(err, &apiErr) || (err != nil && ctx.Err() != nil):
			e.t.Fatalf("get: %v", err)
		case err != nil:
			// The connection failing over to another NATS node, say: a
			// request in flight is lost.
			e.t.Logf("get: %v; asking again", err)
			time.Sleep(100 * time.Millisecond) // not a wait for anything: a pause between requests
			continue
		}
		if during != nil {
			during(cur)
		}
		if cur.Status.Terminal() {
			return cur
		}
		select {
		case <-ctx.Done():
			e.t.Fatalf("experiment %s did not complete: stage %s, %d iterations, %q", name, cur.Status.Stage, cur.Status.CompletedIterations, cur.Status.Message)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// events returns the experiment's events of one type from the stream. It
// asks again while JetStream does not answer: on a cluster, while a new
// meta leader is elected.
func (e *env) events(name, typ string) []*bus.Event {
	e.t.Helper()
	var out []*bus.Event
	testenv.EventuallyWithin(e.t, 30*time.Second, "the "+typ+" events of "+name, func() (bool, string) {
		var err error
		out, err = e.readEvents(name, typ)
		return err == nil, fmt.Sprint(err)
	})
	return out
}

func (e *env) readEvents(name, typ string) ([]*bus.Event, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cons, err := e.js.OrderedConsumer(ctx, bus.StreamEvents, jetstream.OrderedConsumerConfig{FilterSubjects: []string{bus.EventSubject("default", name, typ)}})
	if err != nil {
		return nil, err
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return nil, err
	}
	var out []*bus.Event
	for range info.NumPending {
		m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			return nil, err
		}
		var ev bus.Event
		if err := bus.DecodeMsg(&nats.Msg{Data: m.Data(), Header: m.Headers()}, &ev); err != nil {
			e.t.Fatal(err) // not a failover: a bug
		}
		out = append(out, &ev)
	}
	return out, nil
}

// assessments returns the dark version's objective assessments.
func assessments(x *experiment.Experiment) []bool {
	if x.Status.Analysis == nil {
		return nil
	}
	return x.Status.Analysis.VersionAssessments[x.BaselineName()]
}

func value(x *experiment.Experiment, metric, version string) float64 {
	v := x.Status.Analysis.AggregatedMetrics[metric][version]
	if v == nil {
		return -1
	}
	return *v
}

// checkCompleted asserts the experiment ran every iteration, with one
// iteration event each, and a verdict event that agrees with the status.
func (e *env) checkCompleted(x *experiment.Experiment) {
	e.t.Helper()
	if x.Status.Failed() {
		e.t.Fatalf("experiment failed: %s", x.Status.Message)
	}
	if x.Status.CompletedIterations != 7 {
		e.t.Errorf("completed iterations = %d, want 7", x.Status.CompletedIterations)
	}
	e.awaitCompletedEvent(x.Metadata.Name)
	its := e.events(x.Metadata.Name, bus.EventIteration)
	if len(its) != 7 {
		e.t.Errorf("%d iteration events, want 7 (one per iteration)", len(its))
	}
	for i, ev := range its {
		if ev.Iteration.Number != int32(i+1) {
			e.t.Errorf("iteration event %d has number %d", i, ev.Iteration.Number)
		}
	}
	verdicts := e.events(x.Metadata.Name, bus.EventVerdict)
	if len(verdicts) != 1 {
		e.t.Fatalf("%d verdict events, want 1", len(verdicts))
	}
	if verdicts[0].Verdict.Passed != x.Passed() {
		e.t.Errorf("verdict event passed=%v, status passed=%v", verdicts[0].Verdict.Passed, x.Passed())
	}
}

// awaitCompletedEvent waits until the completed event of the experiment is
// stored: the judge stores the final state first, then publishes the last
// iteration's event, the verdict and the completed event, in that order.
func (e *env) awaitCompletedEvent(name string) {
	e.t.Helper()
	for deadline := time.Now().Add(10 * time.Second); len(e.events(name, bus.EventCompleted)) == 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			e.t.Fatalf("no completed event of %s 10 s after its completed state", name)
		}
	}
}

func TestHealthyDarkPassesAndMirrorsFortyPercent(t *testing.T) {
	t.Parallel()
	e := start(t, sampleapp.Config{}, sampleapp.Config{})
	x := e.run("healthy", nil)
	e.checkCompleted(x)
	if !x.Passed() {
		t.Fatalf("healthy dark version did not pass: %v %+v", assessments(x), x.Status.Analysis.Objectives)
	}
	if got := assessments(x); len(got) != 3 || !got[0] || !got[1] || !got[2] {
		t.Errorf("assessments = %v, want three true", got)
	}
	dark, live := value(x, experiment.MetricRequestCount, "current"), value(x, experiment.MetricRequestCount, "live")
	if live < 100 {
		t.Fatalf("live saw %v requests, want ≥ 100 (7 s at 25 req/s)", live)
	}
	if share := dark / live; share < 0.35 || share > 0.45 {
		t.Errorf("mirrored share = %.3f (%v of %v), want 0.40 ± 0.05", share, dark, live)
	}
	if x.Status.RecommendedBaseline != "current" || x.Status.Analysis.WinnerAssessment.Winner != "current" {
		t.Errorf("recommended %q, winner %+v", x.Status.RecommendedBaseline, x.Status.Analysis.WinnerAssessment)
	}
}

func TestDarkWithErrorsFailsErrorRate(t *testing.T) {
	t.Parallel()
	e := start(t, sampleapp.Config{}, sampleapp.Config{ErrorRate: 0.2})
	x := e.run("errors", nil)
	e.checkCompleted(x)
	if x.Passed() {
		t.Fatal("a dark version failing 20 % of requests passed")
	}
	if got := assessments(x); len(got) != 3 || !got[0] || !got[1] || got[2] {
		t.Errorf("assessments = %v, want [true true false] (error-rate false)", got)
	}
	if r := value(x, experiment.MetricErrorRate, "current"); r < 0.15 || r > 0.25 {
		t.Errorf("dark error-rate = %v, want ≈ 0.2", r)
	}
	if r := value(x, experiment.MetricErrorRate, "live"); r != 0 {
		t.Errorf("live error-rate = %v, want 0", r)
	}
}

func TestSlowDarkFailsMeanLatency(t *testing.T) {
	t.Parallel()
	e := start(t, sampleapp.Config{}, sampleapp.Config{Latency: 85 * time.Millisecond, Jitter: 5 * time.Millisecond})
	x := e.run("slow", nil)
	e.checkCompleted(x)
	if x.Passed() {
		t.Fatal("a dark version 80 ms slower passed")
	}
	if got := assessments(x); len(got) != 3 || got[0] || !got[2] {
		t.Errorf("assessments = %v, want mean-latency false and error-rate true", got)
	}
	if m := value(x, experiment.MetricMeanLatency, "current"); m < 80 {
		t.Errorf("dark mean latency = %v ms, want ≥ 80", m)
	}
	if m := value(x, experiment.MetricMeanLatency, "live"); m > 50 {
		t.Errorf("live mean latency = %v ms: the slow dark version slowed live down", m)
	}
}

// restartMidway stops one service after iteration 2 and starts a new one
// 1.5 s later: the experiment must still complete every iteration with the
// verdict an undisturbed run gives (pass).
func restartMidway(t *testing.T, service string) {
	e := start(t, sampleapp.Config{}, sampleapp.Config{})
	restarted := false
	x := e.run("restart-"+service, func(cur *experiment.Experiment) {
		if restarted || cur.Status.CompletedIterations < 2 {
			return
		}
		restarted = true
		if err := e.st.StopService(service); err != nil {
			t.Fatalf("stop %s: %v", service, err)
		}
		time.Sleep(1500 * time.Millisecond) // the downtime itself, not a wait for anything
		if err := e.st.StartService(service); err != nil {
			t.Fatalf("start %s: %v", service, err)
		}
	})
	if !restarted {
		t.Fatal("the experiment ended before the restart")
	}
	e.checkCompleted(x)
	if !x.Passed() {
		t.Errorf("after a %s restart the healthy dark version did not pass: %+v", service, x.Status.Analysis.Objectives)
	}
	metrics := e.events(x.Metadata.Name, bus.EventMetrics)
	if len(metrics) != 14 {
		t.Errorf("%d metrics events, want 14 (live and dark × 7, duplicates dropped)", len(metrics))
	}
}

// TestNATSRestartMidExperiment restarts the NATS server itself (same port,
// same JetStream store) after iteration 2: every service reconnects and the
// experiment completes with every iteration and the same verdict.
func TestNATSRestartMidExperiment(t *testing.T) {
	t.Parallel()
	e := start(t, sampleapp.Config{}, sampleapp.Config{})
	restarted := false
	x := e.run("restart-nats", func(cur *experiment.Experiment) {
		if restarted || cur.Status.CompletedIterations < 2 {
			return
		}
		restarted = true
		if err := e.st.RestartNATS(time.Second); err != nil {
			t.Fatalf("restart NATS: %v", err)
		}
	})
	if !restarted {
		t.Fatal("the experiment ended before the restart")
	}
	e.checkCompleted(x)
	if !x.Passed() {
		t.Errorf("after a NATS restart the healthy dark version did not pass: %+v", x.Status.Analysis.Objectives)
	}
	// The members bucket (memory storage) is gone with the restart: the
	// router's lease no longer heartbeats, which is no loss.
	if x.Status.Loss != nil {
		t.Errorf("after a NATS restart: %v, want nothing lost", x.Status.Loss)
	}
}

func TestJudgeRestartMidExperiment(t *testing.T) {
	t.Parallel()
	restartMidway(t, services.Judge)
}

func TestCollectorRestartMidExperiment(t *testing.T) {
	t.Parallel()
	restartMidway(t, services.Collector)
}

func TestBadInputCreatesNothing(t *testing.T) {
	t.Parallel()
	e := start(t, sampleapp.Config{}, sampleapp.Config{})
	ctx := context.Background()
	good := string(doc("bad"))
	for name, tc := range map[string]struct {
		doc  string
		code int
		want string
	}{
		"malformed yaml":   {"apiVersion: iter8.tools/v2alpha1\nspec: [", 400, "document"},
		"missing target":   {strings.Replace(good, "  target: default/sample-app\n", "", 1), 400, "spec.target: Required value"},
		"negative percent": {good + "  mirroring:\n    percent: -5\n", 400, "spec.mirroring.percent: Invalid value: -5"},
		"unknown metric":   {strings.Replace(good, "metric: mean-latency", "metric: median-latency", 1), 400, `spec.criteria.objectives[0].metric: Unsupported value: "median-latency"`},
		"huge payload":     {good + "# " + strings.Repeat("x", 2<<20) + "\n", 413, "limit"},
		// issue 8: confidence, stopEarly, reference and relative limits.
		"confidence 1.5":     {strings.Replace(good, "objectives:", "confidence: 1.5\n    objectives:", 1), 400, "spec.criteria.confidence: Invalid value: 1.5"},
		"stopEarly alone":    {strings.Replace(good, "objectives:", "stopEarly: true\n    objectives:", 1), 400, "spec.criteria.confidence: Required value"},
		"reference baseline": {strings.Replace(good, "- metric: mean-latency", "- reference: baseline\n      metric: mean-latency", 1), 400, `spec.criteria.objectives[0].reference: Unsupported value: "baseline"`},
		"negative relative":  {strings.Replace(good, "- metric: mean-latency\n      upperLimit: 50", "- metric: mean-latency\n      reference: live\n      upperLimit: \"-1.1\"", 1), 400, "spec.criteria.objectives[0].upperLimit: Invalid value"},
	} {
		_, err := e.client.Create(ctx, []byte(tc.doc))
		var apiErr *bus.APIError
		if !errors.As(err, &apiErr) {
			t.Errorf("%s: error %v is not an API error", name, err)
			continue
		}
		if apiErr.Code != tc.code || !strings.Contains(apiErr.Description, tc.want) {
			t.Errorf("%s: %d %q, want %d and %q", name, apiErr.Code, apiErr.Description, tc.code, tc.want)
		}
		if !errors.Is(err, shared.ErrInvalid) {
			t.Errorf("%s: errors.Is(ErrInvalid) = false", name)
		}
	}
	items, err := e.client.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 0 {
		t.Errorf("bad input created %d experiments", len(items))
	}
	if evs := e.events("bad", bus.EventCreated); len(evs) != 0 {
		t.Errorf("bad input published %d created events", len(evs))
	}
	if _, err := e.client.Get(ctx, bus.Ref{Namespace: "default", Name: "nope"}); !errors.Is(err, shared.ErrNotFound) {
		t.Errorf("get unknown: %v, want not found", err)
	}
}
