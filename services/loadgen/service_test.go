package loadgen

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/darklaunch/darklaunch/internal/testenv"
	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
)

// target is an HTTP server that records when each request arrived and its Host.
type target struct {
	*httptest.Server
	mu    sync.Mutex
	times []time.Time
	hosts map[string]int
}

func newTarget(t *testing.T) *target {
	tg := &target{hosts: map[string]int{}}
	tg.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tg.mu.Lock()
		tg.times = append(tg.times, time.Now())
		tg.hosts[r.Host]++
		tg.mu.Unlock()
		w.Write([]byte("hello"))
	}))
	t.Cleanup(tg.Close)
	return tg
}

func (tg *target) count() int {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	return len(tg.times)
}

func (tg *target) arrivals() []time.Time {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	return append([]time.Time(nil), tg.times...)
}

// env is a test's bus: a real nats-server with darklaunch's streams.
type env struct{ *testenv.Bus }

func newEnv(t *testing.T) *env { return &env{testenv.NewBus(t)} }

// start runs a loadgen until the test ends and checks that Run returns nil.
func (e *env) start(t *testing.T, cfg Config) *Service {
	t.Helper()
	s, err := New(cfg, e.NC, nil)
	if err != nil {
		t.Fatal(err)
	}
	testenv.Run(t, s)
	return s
}

// running is an experiment at stage Running since start, with a 1 s interval.
func running(name string, start time.Time, iterations int32, load *experiment.Load) *experiment.Experiment {
	return testenv.Experiment(testenv.Named(name), testenv.Every(1, iterations), testenv.Running(start),
		testenv.Mirroring(experiment.Mirroring{Host: "mirrored.example.com"}), testenv.Load(load))
}

func (e *env) create(t *testing.T, exp *experiment.Experiment) {
	t.Helper()
	if _, err := e.Store.Create(t.Context(), exp); err != nil {
		t.Fatal(err)
	}
}

type loadEvent struct {
	id string
	ev bus.Event
}

// waitDone reads the experiment's load events until the Done one.
func (e *env) waitDone(t *testing.T, exp *experiment.Experiment, timeout time.Duration) []loadEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	cons, err := e.Events.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{bus.EventSubject(exp.Metadata.Namespace, exp.Metadata.Name, bus.EventLoad)},
	})
	if err != nil {
		t.Fatal(err)
	}
	var out []loadEvent
	for {
		m, err := cons.Next(jetstream.FetchContext(ctx))
		if err != nil {
			t.Fatalf("waiting for the final load event (got %d): %v", len(out), err)
		}
		var ev bus.Event
		if err := bus.Unmarshal(m.Headers().Get(bus.HeaderContentType), m.Data(), &ev); err != nil {
			t.Fatal(err)
		}
		out = append(out, loadEvent{id: m.Headers().Get(bus.HeaderMsgID), ev: ev})
		if ev.Load != nil && ev.Load.Done {
			return out
		}
	}
}

func ptr[T any](v T) *T { return &v }

// TestTrafficRateHostAndProgress: 20 req/s for 2 s reach the target with the
// mirrored host, and the load events count them.
func TestTrafficRateHostAndProgress(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tg := newTarget(t)
	s := e.start(t, Config{})
	exp := running("rate", time.Now(), 10, &experiment.Load{
		URL: tg.URL, Rate: ptr(20.0), Delay: experiment.Sec(0), Duration: experiment.Sec(2 * time.Second),
	})
	e.create(t, exp)
	events := e.waitDone(t, exp, 6*time.Second)

	got := tg.count()
	if math.Abs(float64(got)-40) > 8 {
		t.Errorf("target got %d requests, want 40 ± 20 %%", got)
	}
	tg.mu.Lock()
	if tg.hosts["mirrored.example.com"] != got {
		t.Errorf("hosts %v, want every request with Host mirrored.example.com (spec.mirroring.host)", tg.hosts)
	}
	tg.mu.Unlock()

	if len(events) < 2 {
		t.Fatalf("got %d load events, want progress every second and a final one", len(events))
	}
	var prev int64
	for i, le := range events {
		want := bus.MsgID(exp.Metadata.UID, bus.EventLoad, s.Config().Instance, fmt.Sprint(i+1))
		if le.id != want {
			t.Errorf("event %d Msg-Id %q, want %q", i, le.id, want)
		}
		lp := le.ev.Load
		if lp == nil || le.ev.UID != exp.Metadata.UID || le.ev.Source != Name {
			t.Fatalf("event %d: %+v", i, le.ev)
		}
		if lp.Sent < prev || lp.TargetRate != 20 {
			t.Errorf("event %d: sent %d after %d, target %v", i, lp.Sent, prev, lp.TargetRate)
		}
		prev = lp.Sent
		if lp.Done != (i == len(events)-1) {
			t.Errorf("event %d: done=%v", i, lp.Done)
		}
	}
	final := events[len(events)-1].ev.Load
	if final.Sent != int64(got) || final.Succeeded != int64(got) || final.Failed != 0 {
		t.Errorf("final progress %+v, target saw %d", final, got)
	}
	if final.AchievedRate < 16 || final.AchievedRate > 24 || final.P50Ms <= 0 || final.P99Ms < final.P50Ms {
		t.Errorf("final progress %+v: want achieved rate ≈ 20 and latencies", final)
	}

	// The Prometheus metrics agree with the target.
	m := s.prom
	if ok, failed := testutil.ToFloat64(m.ok), testutil.ToFloat64(m.failed); ok != float64(got) || failed != 0 {
		t.Errorf("requests_total ok %v failed %v, want %d and 0", ok, failed, got)
	}
	if n, err := testutil.GatherAndCount(s.cfg.Registry, "darklaunch_loadgen_request_duration_seconds"); err != nil || n != 1 {
		t.Errorf("duration histogram: %d series, err %v", n, err)
	}
	h := &dto.Metric{}
	if err := m.duration.(prometheus.Metric).Write(h); err != nil || h.GetHistogram().GetSampleCount() != uint64(got) {
		t.Errorf("duration histogram has %d samples (err %v), want %d", h.GetHistogram().GetSampleCount(), err, got)
	}
	testenv.EventuallyWithin(t, 2*time.Second, "no active traffic after the traffic stopped", func() (bool, string) {
		a := testutil.ToFloat64(m.active)
		return a == 0, fmt.Sprintf("%v active", a)
	})
}

// TestTrafficDelay: nothing is sent before startTime + delay; a loadgen that
// (re)starts after startTime waits only the remaining time.
func TestTrafficDelay(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tg := newTarget(t)
	e.start(t, Config{})
	// Started 800 ms ago: a loadgen that waited the whole delay from its own
	// start would send its first request ~800 ms late.
	start := time.Now().Add(-800 * time.Millisecond)
	begin := start.Add(time.Second)
	exp := running("delay", start, 10, &experiment.Load{
		URL: tg.URL, Host: "load.example.com", Rate: ptr(20.0), Delay: experiment.Sec(time.Second), Duration: experiment.Sec(500 * time.Millisecond),
	})
	e.create(t, exp)
	e.waitDone(t, exp, 5*time.Second)
	times := tg.arrivals()
	if len(times) < 8 {
		t.Fatalf("target got %d requests, want ~10", len(times))
	}
	if first := times[0]; first.Before(begin) {
		t.Errorf("first request %v before startTime + delay", begin.Sub(first))
	} else if first.Sub(begin) > 400*time.Millisecond {
		t.Errorf("first request %v after startTime + delay, want it promptly (remaining time only)", first.Sub(begin))
	}
	tg.mu.Lock()
	if tg.hosts["load.example.com"] != len(times) {
		t.Errorf("hosts %v, want spec.load.host on every request", tg.hosts)
	}
	tg.mu.Unlock()
}

// TestTrafficStopsWhenCompleted: the judge marking the experiment Completed
// stops the traffic within a second.
func TestTrafficStopsWhenCompleted(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tg := newTarget(t)
	e.start(t, Config{})
	exp := running("stop", time.Now(), 30, &experiment.Load{URL: tg.URL, Rate: ptr(20.0), Delay: experiment.Sec(0)})
	e.create(t, exp)

	testenv.Eventually(t, "10 requests", func() (bool, string) {
		n := tg.count()
		return n >= 10, fmt.Sprintf("%d requests", n)
	})
	stopped := time.Now()
	if _, err := e.Store.Update(t.Context(), "default", "stop", func(x *experiment.Experiment) error {
		x.Status.Stage = experiment.StageCompleted
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	events := e.waitDone(t, exp, 3*time.Second)
	if d := time.Since(stopped); d > time.Second {
		t.Errorf("final load event %v after Completed, want within a second", d)
	}
	times := tg.arrivals()
	if last := times[len(times)-1]; last.Sub(stopped) > time.Second {
		t.Errorf("a request arrived %v after Completed", last.Sub(stopped))
	}
	if final := events[len(events)-1].ev.Load; final.Sent != int64(len(times)) {
		t.Errorf("final progress sent %d, target saw %d", final.Sent, len(times))
	}
}

// TestTrafficRateZero: spec.load.rate 0 means real traffic only: loadgen
// sends nothing and reports nothing for that experiment.
func TestTrafficRateZero(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	silent, busy := newTarget(t), newTarget(t)
	e.start(t, Config{})
	quiet := running("quiet", time.Now(), 10, &experiment.Load{URL: silent.URL, Rate: ptr(0.0), Delay: experiment.Sec(0)})
	loud := running("loud", time.Now(), 10, &experiment.Load{URL: busy.URL, Rate: ptr(20.0), Delay: experiment.Sec(0), Duration: experiment.Sec(time.Second)})
	e.create(t, quiet)
	e.create(t, loud)
	// The busy experiment's whole traffic is the time window in which the
	// quiet one would have sent.
	e.waitDone(t, loud, 5*time.Second)
	if busy.count() < 15 {
		t.Fatalf("busy target got %d requests, want ~20", busy.count())
	}
	if n := silent.count(); n != 0 {
		t.Errorf("rate 0: target got %d requests", n)
	}
	_, err := e.Events.GetLastMsgForSubject(t.Context(), bus.EventSubject("default", "quiet", bus.EventLoad))
	if !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Errorf("rate 0: want no load event, got err=%v", err)
	}
}

func TestPlanFor(t *testing.T) {
	cfg := Config{}
	cfg.Default()
	exp := running("p", time.Now(), 1, nil)
	exp.Spec.Mirroring = nil
	p := planFor(cfg, exp)
	want := plan{URL: DefaultURL, Host: DefaultHost, Method: "GET", Rate: 2, Delay: 10 * time.Second, Concurrency: 16, Timeout: 5 * time.Second}
	if p != want {
		t.Errorf("defaults: %+v, want %+v", p, want)
	}
	exp.Spec.Mirroring = &experiment.Mirroring{Host: "m.example.com"}
	if p := planFor(cfg, exp); p.Host != "m.example.com" {
		t.Errorf("host %q, want spec.mirroring.host", p.Host)
	}
	exp.Spec.Load = &experiment.Load{
		URL: "http://127.0.0.1:9/x", Host: "l.example.com", Method: "HEAD", Rate: ptr(0.0),
		Delay: experiment.Sec(0), Duration: experiment.Sec(time.Minute), Concurrency: ptr[int32](3), Timeout: experiment.Sec(time.Second),
	}
	want = plan{URL: "http://127.0.0.1:9/x", Host: "l.example.com", Method: "HEAD", Rate: 0, Delay: 0, Duration: time.Minute, Concurrency: 3, Timeout: time.Second}
	if p := planFor(cfg, exp); p != want {
		t.Errorf("spec.load: %+v, want %+v", p, want)
	}
}

func TestNewDefaultsAndErrors(t *testing.T) {
	nc := testenv.StartNATS(t).Conn(t)
	s, err := New(Config{Delay: -1}, nc, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := s.Config()
	if c.Delay != 0 || c.Rate != DefaultRate || c.Instance == "" || c.URL != DefaultURL {
		t.Errorf("defaults: %+v", c)
	}
	if _, err := New(Config{}, nil, nil); err == nil {
		t.Error("New without a connection: want an error")
	}
	if _, err := New(Config{URL: "ftp://x"}, nc, nil); err == nil || !strings.Contains(err.Error(), "ftp://x") {
		t.Errorf("bad URL: err = %v", err)
	}
}

// TestStopDoesNotCountCanceledAsFailed: requests in flight when the
// experiment completes are cut short by loadgen itself: reported as
// canceled, not as failures of a target that answered every request it was
// given time for.
func TestStopDoesNotCountCanceledAsFailed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var started, served atomic.Int64
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started.Add(1)
		defer served.Add(1)
		select {
		case <-r.Context().Done():
		case <-time.After(400 * time.Millisecond):
		}
		w.Write([]byte("ok"))
	}))
	defer slow.Close()
	s := e.start(t, Config{})
	exp := running("stopped", time.Now(), 30, &experiment.Load{URL: slow.URL, Rate: ptr(20.0), Delay: experiment.Sec(0)})
	e.create(t, exp)
	// Stop it with requests answered and requests in flight.
	testenv.Eventually(t, "answered requests and requests in flight", func() (bool, string) {
		st, sv := started.Load(), served.Load()
		return sv >= 2 && st > sv, fmt.Sprintf("%d started, %d answered", st, sv)
	})
	if _, err := e.Store.Update(t.Context(), "default", "stopped", func(x *experiment.Experiment) error {
		x.Status.Stage = experiment.StageCompleted
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	events := e.waitDone(t, exp, 3*time.Second)
	final := events[len(events)-1].ev.Load
	if final.Failed != 0 || final.Canceled == 0 || final.Sent != final.Succeeded+final.Canceled {
		t.Errorf("final progress: sent %d, succeeded %d, failed %d, canceled %d; want no failures, and the requests in flight at the stop canceled",
			final.Sent, final.Succeeded, final.Failed, final.Canceled)
	}
	if got := testutil.ToFloat64(s.prom.canceledN); got != float64(final.Canceled) {
		t.Errorf("requests_total{result=canceled} %v, want %d", got, final.Canceled)
	}
}

// TestTrafficResumesTheCounts: a loadgen that takes over a run whose
// traffic an earlier process had reported (status.load) goes on from those
// totals instead of from zero.
func TestTrafficResumesTheCounts(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tg := newTarget(t)
	e.start(t, Config{})
	exp := running("resumed", time.Now(), 10, &experiment.Load{
		URL: tg.URL, Rate: ptr(20.0), Delay: experiment.Sec(0), Duration: experiment.Sec(2 * time.Second),
	})
	exp.Status.Load = &experiment.LoadStatus{Sent: 300, Succeeded: 290, Failed: 10}
	e.create(t, exp)
	events := e.waitDone(t, exp, 6*time.Second)
	final := events[len(events)-1].ev.Load
	got := int64(tg.count())
	if final.Sent != 300+got || final.Succeeded != 290+got || final.Failed != 10 {
		t.Errorf("final load sent %d, succeeded %d, failed %d; want the earlier 300/290/10 plus the %d sent now", final.Sent, final.Succeeded, final.Failed, got)
	}
}
