package router

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/darklaunch/darklaunch/internal/testenv"
	"github.com/darklaunch/darklaunch/services/router/mirroring"
	"github.com/darklaunch/darklaunch/services/router/proxy"
	"github.com/darklaunch/darklaunch/services/router/routertest"
	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

// testRouter is a running Service with its bus.
type testRouter struct {
	svc   *Service
	infra *bus.Infra
	nc    *nats.Conn
	url   string
}

// startRouter runs a Service until the test ends and checks that Run
// returns nil. With a nil backend the Service builds its own from cfg
// (the proxy on a free port).
func startRouter(t *testing.T, ns *testenv.NATS, cfg Config, backend Backend) *testRouter {
	t.Helper()
	nc := ns.Conn(t)
	infra := testenv.Infra(t, nc)
	if cfg.Proxy.Addr == "" {
		cfg.Proxy.Addr = "127.0.0.1:0"
	}
	cfg.Registry = prometheus.NewRegistry()
	svc, err := newService(cfg, nc, routertest.Logger(t), backend)
	if err != nil {
		t.Fatal(err)
	}
	testenv.Run(t, svc)
	return &testRouter{svc: svc, infra: infra, nc: nc, url: svc.URL()}
}

// routingEvent waits for the routing event of e.
func (r *testRouter) routingEvent(t *testing.T, e *experiment.Experiment) (*bus.Event, jetstream.Msg) {
	t.Helper()
	cons, err := r.infra.JS.OrderedConsumer(context.Background(), bus.StreamEvents, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{bus.EventSubject(e.Metadata.Namespace, e.Metadata.Name, bus.EventRouting)},
	})
	if err != nil {
		t.Fatal(err)
	}
	m, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
	if err != nil {
		t.Fatalf("no routing event for %s: %v", e.Key(), err)
	}
	var ev bus.Event
	if err := bus.Unmarshal(m.Headers().Get(bus.HeaderContentType), m.Data(), &ev); err != nil {
		t.Fatal(err)
	}
	return &ev, m
}

func setStage(t *testing.T, store *bus.Store, e *experiment.Experiment, stage experiment.Stage) {
	t.Helper()
	_, err := store.Update(context.Background(), e.Metadata.Namespace, e.Metadata.Name, func(x *experiment.Experiment) error {
		x.Status.Stage = stage
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestServiceSetsUpReportsAndTearsDown(t *testing.T) {
	ns := testenv.StartNATS(t)
	live := routertest.NewVersion(t, nil)
	dark := routertest.NewVersion(t, nil)
	r := startRouter(t, ns, Config{Proxy: proxy.Config{FlushInterval: 50 * time.Millisecond}}, nil)
	ctx := context.Background()

	e := routertest.Experiment("sample", "customdomain.com", live.URL, dark.URL, 40, experiment.StageInitializing)
	if _, err := r.infra.Store.Create(ctx, e); err != nil {
		t.Fatal(err)
	}
	ev, m := r.routingEvent(t, e)
	if ev.Routing == nil || !ev.Routing.Ready {
		t.Fatalf("routing event %+v, want Ready", ev.Routing)
	}
	want := experiment.RoutingStatus{Backend: "proxy", Host: "customdomain.com", Percent: 40, Live: live.URL, Dark: dark.URL}
	if !routertest.StatusEqual(ev.Routing.Status, want) || ev.UID != e.Metadata.UID || ev.Source != Source {
		t.Errorf("routing event %+v (uid %s, source %s), want status %+v for uid %s", ev.Routing.Status, ev.UID, ev.Source, want, e.Metadata.UID)
	}
	if id := m.Headers().Get(bus.HeaderMsgID); id != bus.MsgID(e.Metadata.UID, "routing") {
		t.Errorf("Msg-Id %q, want %q", id, bus.MsgID(e.Metadata.UID, "routing"))
	}
	if got := routertest.Send(t, r.url, "customdomain.com", "GET", "/", nil); got.Status != 200 {
		t.Fatalf("request through the proxy: %d %q", got.Status, got.Body)
	}

	// The judge's next steps: Running (no new event), then Completed.
	setStage(t, r.infra.Store, e, experiment.StageRunning)
	setStage(t, r.infra.Store, e, experiment.StageCompleted)
	testenv.Until(t, 10*time.Second, "the route to be removed", func() bool {
		return routertest.Send(t, r.url, "customdomain.com", "GET", "/", nil).Status == 404
	})
	info, err := r.infra.Events.Info(ctx, jetstream.WithSubjectFilter(bus.EventTypeFilter(bus.EventRouting)))
	if err != nil {
		t.Fatal(err)
	}
	if n := info.State.Subjects[bus.EventSubject("default", "sample", bus.EventRouting)]; n != 1 {
		t.Errorf("%d routing events, want exactly 1", n)
	}
}

func TestServiceReportsUnreachableDark(t *testing.T) {
	ns := testenv.StartNATS(t)
	live := routertest.NewVersion(t, nil)
	r := startRouter(t, ns, Config{Settings: mirroring.Settings{InitTimeout: time.Second, InitInterval: 100 * time.Millisecond}}, nil)
	refused := routertest.RefusedURL(t)
	e := routertest.Experiment("broken", "customdomain.com", live.URL, refused, 40, experiment.StageInitializing)
	if _, err := r.infra.Store.Create(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	ev, _ := r.routingEvent(t, e)
	if ev.Routing == nil || ev.Routing.Ready {
		t.Fatalf("routing event %+v, want not Ready", ev.Routing)
	}
	if want := "dark version " + refused + " did not answer within 1s: "; !strings.Contains(ev.Routing.Reason, want) {
		t.Errorf("reason %q, want it to contain %q", ev.Routing.Reason, want)
	}
	if got := routertest.Send(t, r.url, "customdomain.com", "GET", "/", nil); got.Status != 404 {
		t.Errorf("failed setup left a route: status %d", got.Status)
	}
}

// TestServiceRestoresRunningExperiment: a router (re)started while an
// experiment runs routes it again, without a routing event, and tears it
// down when the key is deleted.
func TestServiceRestoresRunningExperiment(t *testing.T) {
	ns := testenv.StartNATS(t)
	live := routertest.NewVersion(t, nil)
	nc := ns.Conn(t)
	infra := testenv.Infra(t, nc)
	// Already running, and its dark version is down right now: live traffic
	// must be served anyway.
	e := routertest.Experiment("running", "customdomain.com", live.URL, routertest.RefusedURL(t), 40, experiment.StageRunning)
	e.Status.Routing = &experiment.RoutingStatus{Backend: "proxy"}
	rev, err := infra.Store.Create(context.Background(), e)
	if err != nil {
		t.Fatal(err)
	}

	r := startRouter(t, ns, Config{}, nil)
	testenv.Until(t, 10*time.Second, "the route to be restored", func() bool {
		return routertest.Send(t, r.url, "customdomain.com", "GET", "/", nil).Status == 200
	})
	_, err = r.infra.Events.GetLastMsgForSubject(context.Background(), bus.EventSubject("default", "running", bus.EventRouting))
	if !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Errorf("restoring published a routing event (err %v), want none", err)
	}

	if err := r.infra.Store.Delete(context.Background(), "default", "running", rev); err != nil {
		t.Fatal(err)
	}
	testenv.Until(t, 10*time.Second, "the route to be removed after deletion", func() bool {
		return routertest.Send(t, r.url, "customdomain.com", "GET", "/", nil).Status == 404
	})
}

func TestNewRejectsBadConfig(t *testing.T) {
	ns := testenv.StartNATS(t)
	nc := ns.Conn(t)
	for name, cfg := range map[string]Config{
		"backend": {Backend: "linkerd"},
		"percent": {Settings: mirroring.Settings{DefaultPercent: 150}},
		"url":     {Settings: mirroring.Settings{DefaultDarkURL: "ftp://x"}},
	} {
		if _, err := New(cfg, nc, nil); err == nil {
			t.Errorf("%s: New accepted %+v", name, cfg)
		}
	}
}

// TestRouterShutdownPublishesLastObservations: a request still running when
// the router stops keeps the HTTP shutdown waiting, but the last flush of
// everyone else's observations gets a deadline of its own.
func TestRouterShutdownPublishesLastObservations(t *testing.T) {
	ns := testenv.StartNATS(t)
	nc := ns.Conn(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	infra := testenv.Infra(t, nc)
	live := routertest.NewVersion(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			time.Sleep(proxy.ShutdownTimeout + 2*time.Second)
		}
	})
	dark := routertest.NewVersion(t, nil)
	var logs bytes.Buffer
	var logMu sync.Mutex
	svc, err := New(Config{Proxy: proxy.Config{Addr: "127.0.0.1:0", FlushInterval: time.Hour}, Registry: prometheus.NewRegistry()}, nc,
		slog.New(slog.NewTextHandler(writerFunc(func(b []byte) (int, error) { logMu.Lock(); defer logMu.Unlock(); return logs.Write(b) }), nil)))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	testenv.Until(t, 5*time.Second, "the proxy to listen", func() bool { return svc.URL() != "" })
	e := routertest.Experiment("stop", "customdomain.com", live.URL, dark.URL, 100, experiment.StageInitializing)
	if _, err := infra.Store.Create(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	testenv.Until(t, 10*time.Second, "the route", func() bool {
		return routertest.Send(t, svc.URL(), "customdomain.com", "GET", "/fast", nil).Status == http.StatusOK
	})
	for range 3 {
		routertest.Send(t, svc.URL(), "customdomain.com", "GET", "/fast", nil)
	}
	go func() {
		req, _ := http.NewRequest("GET", svc.URL()+"/slow", nil)
		req.Host = "customdomain.com"
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	testenv.Until(t, 5*time.Second, "the slow request to reach live", func() bool {
		return slices.ContainsFunc(live.Requests(), func(r routertest.Request) bool { return r.URI == "/slow" })
	})
	cancel()
	<-done

	cons, err := infra.JS.OrderedConsumer(context.Background(), bus.StreamObs, jetstream.OrderedConsumerConfig{FilterSubjects: []string{bus.ObsFilter("default", "stop")}})
	if err != nil {
		t.Fatal(err)
	}
	var published int64
	for {
		m, err := cons.Next(jetstream.FetchMaxWait(time.Second))
		if err != nil {
			break
		}
		var b bus.ObservationBatch
		if bus.Unmarshal(m.Headers().Get(bus.HeaderContentType), m.Data(), &b) == nil && b.Role == bus.RoleLive {
			published += b.Count
		}
	}
	if published < 4 {
		logMu.Lock()
		t.Errorf("%d live requests published, want the 4 served before the stop; log:\n%s", published, logs.String())
		logMu.Unlock()
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }
