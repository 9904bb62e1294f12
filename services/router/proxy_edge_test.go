package router

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
	"github.com/darklaunch/darklaunch/shared/natstest"
)

// The edge cases of how a live request ends, found in review: each one used
// to be recorded wrongly, skewing live against dark.

// TestProxyLiveBodyCutIsAnError: a live response that breaks after its
// headers is a failed live request, as the same failure of a dark copy is.
// (ReverseProxy panics with http.ErrAbortHandler there, and the observation
// used to be skipped.)
func TestProxyLiveBodyCutIsAnError(t *testing.T) {
	broken := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000")
		w.WriteHeader(http.StatusOK)
		w.Write(make([]byte, 500))
		w.(http.Flusher).Flush()
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			conn.Close()
		}
	}
	live := newVersion(t, broken)
	dark := newVersion(t, broken)
	p, base := newTestProxy(t, Config{}, nil)
	e := testExperiment("cut", "customdomain.com", live.URL, dark.URL, 100, experiment.StageRunning)
	setup(t, p, e)
	rt := p.table.Load().byKey[e.Key()]
	for range 5 {
		req, _ := http.NewRequest("GET", base+"/", nil)
		req.Host = "customdomain.com"
		if resp, err := testClient.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	eventually(t, 3*time.Second, "the dark copies to be counted", func() bool { return counter(t, p, e.Key(), "dark", "error") == 5 })
	if got := counter(t, p, e.Key(), "live", "error"); got != 5 {
		t.Errorf("live{code_class=error} %v, want 5", got)
	}
	if n, errs, _, _ := rt.rec[roleLive].Flush(); n != 5 || errs != 5 {
		t.Errorf("live observations: %d requests, %d errors; want 5 and 5", n, errs)
	}
}

// TestProxyClientCancelNotALiveError: a client that gives up before live
// answers is no failure of live (Envoy logs a 499): counted as canceled,
// not observed.
func TestProxyClientCancelNotALiveError(t *testing.T) {
	live := newVersion(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(3 * time.Second):
		}
	})
	dark := newVersion(t, nil)
	p, base := newTestProxy(t, Config{}, nil)
	e := testExperiment("cancel", "customdomain.com", live.URL, dark.URL, 100, experiment.StageRunning)
	setup(t, p, e)
	req, _ := http.NewRequest("GET", base+"/", nil)
	req.Host = "customdomain.com"
	if _, err := (&http.Client{Timeout: 100 * time.Millisecond}).Do(req); err == nil {
		t.Fatal("the client did not time out")
	}
	eventually(t, 3*time.Second, "the canceled request to be counted", func() bool { return counter(t, p, e.Key(), "live", "canceled") == 1 })
	if got := counter(t, p, e.Key(), "live", "5xx"); got != 0 {
		t.Errorf("live{code_class=5xx} %v, want 0", got)
	}
	if n, errs, _, _ := p.table.Load().byKey[e.Key()].rec[roleLive].Flush(); n != 0 || errs != 0 {
		t.Errorf("live observations: %d requests, %d errors; want none", n, errs)
	}
}

// TestProxyUpgradeSessionNotObserved: a WebSocket session through the proxy
// is counted by its 101 when it ends, not observed as one live request as
// long as the session, and does not hold a teardown; a session that outlives
// its experiment's teardown does not bring back the series the teardown
// removed.
func TestProxyUpgradeSessionNotObserved(t *testing.T) {
	live := newVersion(t, func(w http.ResponseWriter, r *http.Request) {
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
		rw.Flush()
		rw.ReadString('\n') // the session lasts until the client's "bye"
	})
	dark := newVersion(t, nil)
	p, base := newTestProxy(t, Config{MirrorTimeout: 5 * time.Second}, nil)
	e := testExperiment("session", "ws.example.com", live.URL, dark.URL, 100, experiment.StageRunning)
	setup(t, p, e)
	rt := p.table.Load().byKey[e.Key()]
	open := func() net.Conn {
		t.Helper()
		conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprint(conn, "GET /chat HTTP/1.1\r\nHost: ws.example.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
		if resp, err := http.ReadResponse(bufio.NewReader(conn), nil); err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("upgrade: %v, %v", resp, err)
		}
		return conn
	}
	end := func(conn net.Conn) {
		fmt.Fprint(conn, "bye\n")
		conn.Close()
	}

	// A session that ends while the experiment runs: one 1xx, no observation.
	end(open())
	eventually(t, 3*time.Second, "the session to be counted", func() bool { return counter(t, p, e.Key(), "live", "1xx") == 1 })
	if n, _, _, _ := rt.rec[roleLive].Flush(); n != 0 {
		t.Errorf("the session was observed as %d live requests, want none", n)
	}
	if got := dropped(t, p, e.Key(), DropUpgrade); got != 1 {
		t.Errorf("dropped{reason=upgrade} %v, want 1 (the session was in the mirrored share)", got)
	}

	// A session open across the teardown: the teardown does not wait for
	// it, and its end counts nothing.
	conn := open()
	start := time.Now()
	if err := p.Teardown(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("teardown waited %v for an open session", d)
	}
	end(conn)
	time.Sleep(200 * time.Millisecond) // the session's handler returns
	mfs, err := p.cfg.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "experiment" && l.GetValue() == e.Key() {
					t.Errorf("%s{%v} of the torn-down experiment exported after the session ended", mf.GetName(), m.GetLabel())
				}
			}
		}
	}
}

// TestProxyTeardownRaceLosesNothing: a request that finds its route just
// as a teardown removes it is not counted on a route whose last batch is
// already published: it finds the route gone (404) instead.
func TestProxyTeardownRaceLosesNothing(t *testing.T) {
	live := newVersion(t, nil)
	dark := newVersion(t, nil)
	p, base := newTestProxy(t, Config{}, nil)
	e := testExperiment("race", "race.example.com", live.URL, dark.URL, 100, experiment.StageRunning)
	setup(t, p, e)
	rt := p.table.Load().byKey[e.Key()]
	var once sync.Once
	torn := make(chan error, 1)
	testHookAcquired = func(got *route) {
		once.Do(func() {
			// The teardown removes the route, then waits for the count this
			// request holds; let it run past that wait on its own.
			go func() { torn <- p.Teardown(context.Background(), e) }()
			eventually(t, 3*time.Second, "the route to be removed", func() bool { return p.table.Load().byKey[e.Key()] == nil })
		})
	}
	t.Cleanup(func() { testHookAcquired = nil })
	if r := send(t, base, "race.example.com", "GET", "/", nil); r.Status != http.StatusNotFound {
		t.Errorf("status %d, want 404: the route was torn down", r.Status)
	}
	if err := <-torn; err != nil {
		t.Fatal(err)
	}
	if n, _, _, _ := rt.rec[roleLive].Flush(); n != 0 {
		t.Errorf("%d live requests recorded after the last flush", n)
	}
	if got := len(live.requests()); got != 0 {
		t.Errorf("live got %d requests of a torn-down route", got)
	}
}

// TestRouterShutdownPublishesLastObservations: a request still running when
// the router stops keeps the HTTP shutdown waiting, but the last flush of
// everyone else's observations gets a deadline of its own.
func TestRouterShutdownPublishesLastObservations(t *testing.T) {
	ns := natstest.Run(t)
	nc := ns.Conn(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	infra, err := bus.EnsureInfra(ctx, nc, bus.StreamLimits{})
	if err != nil {
		t.Fatal(err)
	}
	live := newVersion(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			time.Sleep(shutdownTimeout + 2*time.Second)
		}
	})
	dark := newVersion(t, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	var logMu sync.Mutex
	svc, err := New(Config{Listener: ln, Registry: prometheus.NewRegistry(), FlushInterval: time.Hour}, nc,
		slog.New(slog.NewTextHandler(writerFunc(func(b []byte) (int, error) { logMu.Lock(); defer logMu.Unlock(); return logs.Write(b) }), nil)))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	eventually(t, 5*time.Second, "the proxy to listen", func() bool { return svc.ProxyURL() != "" })
	e := testExperiment("stop", "customdomain.com", live.URL, dark.URL, 100, experiment.StageInitializing)
	if _, err := infra.Store.Create(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the route", func() bool {
		return send(t, svc.ProxyURL(), "customdomain.com", "GET", "/fast", nil).Status == http.StatusOK
	})
	for range 3 {
		send(t, svc.ProxyURL(), "customdomain.com", "GET", "/fast", nil)
	}
	go func() {
		req, _ := http.NewRequest("GET", svc.ProxyURL()+"/slow", nil)
		req.Host = "customdomain.com"
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	time.Sleep(200 * time.Millisecond)
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
