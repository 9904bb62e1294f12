package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/internal/testenv"
	"github.com/darklaunch/darklaunch/services/router/routertest"
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
	live := routertest.NewVersion(t, broken)
	dark := routertest.NewVersion(t, broken)
	p, base, e := routedProxy(t, Config{}, live, dark, "cut", "customdomain.com", 100)
	rt := p.table.Load().byKey[e.Key()]
	for range 5 {
		req, _ := http.NewRequest("GET", base+"/", nil)
		req.Host = "customdomain.com"
		if resp, err := routertest.Client.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	testenv.Until(t, 3*time.Second, "the dark copies to be counted", func() bool { return counter(t, p, e.Key(), "dark", "error") == 5 })
	if got := counter(t, p, e.Key(), "live", "error"); got != 5 {
		t.Errorf("live{code_class=error} %v, want 5", got)
	}
	if r := recorded(rt, roleLive); r.Count != 5 || r.Errors != 5 {
		t.Errorf("live observations: %d requests, %d errors; want 5 and 5", r.Count, r.Errors)
	}
}

// TestProxyClientCancelNotALiveError: a client that gives up before live
// answers is no failure of live (Envoy logs a 499): counted as canceled,
// not observed.
func TestProxyClientCancelNotALiveError(t *testing.T) {
	live := routertest.NewVersion(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(3 * time.Second):
		}
	})
	dark := routertest.NewVersion(t, nil)
	p, base, e := routedProxy(t, Config{}, live, dark, "cancel", "customdomain.com", 100)
	req, _ := http.NewRequest("GET", base+"/", nil)
	req.Host = "customdomain.com"
	if _, err := (&http.Client{Timeout: 100 * time.Millisecond}).Do(req); err == nil {
		t.Fatal("the client did not time out")
	}
	testenv.Until(t, 3*time.Second, "the canceled request to be counted", func() bool { return counter(t, p, e.Key(), "live", "canceled") == 1 })
	if got := counter(t, p, e.Key(), "live", "5xx"); got != 0 {
		t.Errorf("live{code_class=5xx} %v, want 0", got)
	}
	if r := recorded(p.table.Load().byKey[e.Key()], roleLive); r.Count != 0 || r.Errors != 0 {
		t.Errorf("live observations: %d requests, %d errors; want none", r.Count, r.Errors)
	}
}

// TestProxyUpgradeSessionNotObserved: a WebSocket session through the proxy
// is counted by its 101 when it ends, not observed as one live request as
// long as the session, and does not hold a teardown; a session that outlives
// its experiment's teardown does not bring back the series the teardown
// removed.
func TestProxyUpgradeSessionNotObserved(t *testing.T) {
	live := routertest.NewVersion(t, func(w http.ResponseWriter, r *http.Request) {
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
		rw.Flush()
		rw.ReadString('\n') // the session lasts until the client's "bye"
	})
	dark := routertest.NewVersion(t, nil)
	p, base, e := routedProxy(t, Config{MirrorTimeout: 5 * time.Second}, live, dark, "session", "ws.example.com", 100)
	rt := p.table.Load().byKey[e.Key()]
	ended := make(chan struct{}, 2) // one per session
	p.testHookUpgradeEnded = func() { ended <- struct{}{} }
	handlerReturned := func() {
		t.Helper()
		select {
		case <-ended:
		case <-time.After(testenv.Within):
			t.Fatal("the session's handler did not return")
		}
	}
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
	handlerReturned()
	testenv.Until(t, 3*time.Second, "the session to be counted", func() bool { return counter(t, p, e.Key(), "live", "1xx") == 1 })
	if n := recorded(rt, roleLive).Count; n != 0 {
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
	handlerReturned()
	if n := seriesByExperiment(t, p)[e.Key()]; n != 0 {
		t.Errorf("%d series of the torn-down experiment exported after the session ended", n)
	}
}

// TestProxyTeardownRaceLosesNothing: a request that finds its route just
// as a teardown removes it is not counted on a route whose last batch is
// already published: it finds the route gone (404) instead.
func TestProxyTeardownRaceLosesNothing(t *testing.T) {
	live := routertest.NewVersion(t, nil)
	dark := routertest.NewVersion(t, nil)
	p, base, e := routedProxy(t, Config{}, live, dark, "race", "race.example.com", 100)
	rt := p.table.Load().byKey[e.Key()]
	var once sync.Once
	torn := make(chan error, 1)
	p.testHookAcquired = func(got *route) {
		once.Do(func() {
			// The teardown removes the route, then waits for the count this
			// request holds; let it run past that wait on its own.
			go func() { torn <- p.Teardown(context.Background(), e) }()
			testenv.Until(t, 3*time.Second, "the route to be removed", func() bool { return p.table.Load().byKey[e.Key()] == nil })
		})
	}
	if r := routertest.Send(t, base, "race.example.com", "GET", "/", nil); r.Status != http.StatusNotFound {
		t.Errorf("status %d, want 404: the route was torn down", r.Status)
	}
	if err := <-torn; err != nil {
		t.Fatal(err)
	}
	if n := recorded(rt, roleLive).Count; n != 0 {
		t.Errorf("%d live requests recorded after the last flush", n)
	}
	if got := len(live.Requests()); got != 0 {
		t.Errorf("live got %d requests of a torn-down route", got)
	}
}
