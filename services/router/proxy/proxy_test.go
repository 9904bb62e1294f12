package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/darklaunch/darklaunch/internal/testenv"
	"github.com/darklaunch/darklaunch/services/router/routertest"
	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

func TestProxyRoutesByHost(t *testing.T) {
	liveA := routertest.NewVersion(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "A") })
	liveB := routertest.NewVersion(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "B") })
	dark := routertest.NewVersion(t, nil)
	p, base := newTestProxy(t, Config{}, nil)
	setup(t, p, routertest.Experiment("a", "a.example.com", liveA.URL, dark.URL, 100, experiment.StageRunning))
	setup(t, p, routertest.Experiment("b", "b.example.com", liveB.URL, dark.URL, 100, experiment.StageRunning))

	if r := routertest.Send(t, base, "a.example.com", "GET", "/", nil); r.Status != 200 || r.Body != "A" {
		t.Errorf("host a: got %d %q, want 200 A", r.Status, r.Body)
	}
	// Port and case do not matter: the route is the host name.
	if r := routertest.Send(t, base, "B.Example.com:8080", "GET", "/", nil); r.Status != 200 || r.Body != "B" {
		t.Errorf("host B.Example.com:8080: got %d %q, want 200 B", r.Status, r.Body)
	}
	if got := liveB.Requests()[0].Host; got != "b.example.com" {
		t.Errorf("live got Host %q, want the experiment's host b.example.com", got)
	}
	r := routertest.Send(t, base, "unknown.example.com", "GET", "/x", nil)
	if r.Status != http.StatusNotFound {
		t.Fatalf("unknown host: status %d, want 404", r.Status)
	}
	if r.Header.Get(bus.HeaderUnrouted) == "" {
		t.Errorf("unknown host: no %s header: loadgen would count the answer as a version's", bus.HeaderUnrouted)
	}
	if !strings.Contains(r.Body, `"unknown.example.com"`) || !strings.Contains(r.Body, "no experiment mirrors") {
		t.Errorf("404 body %q does not say that no experiment mirrors the host it got", r.Body)
	}
	// Anyone can ask: the page must not tell which hosts are mirrored.
	for _, mirrored := range []string{"a.example.com", "b.example.com"} {
		if strings.Contains(r.Body, mirrored) {
			t.Errorf("404 body %q names the mirrored host %s", r.Body, mirrored)
		}
	}
	if n := strings.Count(strings.TrimSpace(r.Body), "\n"); n != 0 {
		t.Errorf("404 body has %d extra lines, want one line: %q", n, r.Body)
	}
	// A Host of 60 KB is named by a prefix.
	long := strings.Repeat("x", 60<<10) + ".example.com"
	if r := routertest.Send(t, base, long, "GET", "/", nil); r.Status != http.StatusNotFound || len(r.Body) > 200 || !strings.Contains(r.Body, `"xxxxxxxx`) {
		t.Errorf("404 for a 60 KB Host: status %d, %d bytes: %.300q", r.Status, len(r.Body), r.Body)
	}
}

func TestProxyLiveResponseUnchangedAndDarkIgnored(t *testing.T) {
	live := routertest.NewVersion(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Live", "yes")
		w.Header().Set("Content-Type", "text/teapot")
		w.WriteHeader(http.StatusTeapot)
		io.WriteString(w, "short and stout "+r.URL.RawQuery)
	})
	darkCases := map[string]http.HandlerFunc{
		"dark 500": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Live", "no, dark")
			w.WriteHeader(500)
			io.WriteString(w, "dark failure")
		},
		"dark garbage": func(w http.ResponseWriter, r *http.Request) {
			// Not HTTP at all on the wire.
			conn, buf, err := http.NewResponseController(w).Hijack()
			if err == nil {
				buf.WriteString("\x00\x01garbage\r\n\r\n")
				buf.Flush()
				conn.Close()
			}
		},
	}
	for name, h := range darkCases {
		t.Run(name, func(t *testing.T) {
			dark := routertest.NewVersion(t, h)
			p, base := newTestProxy(t, Config{}, nil)
			e := routertest.Experiment("exp", "customdomain.com", live.URL+"/base", dark.URL+"/base", 100, experiment.StageRunning)
			setup(t, p, e)

			req, _ := http.NewRequest("GET", base+"/path/x?q=1&r=2", nil)
			req.Host = "customdomain.com"
			req.Header.Set("X-Custom", "kept")
			req.Header.Set("Connection", "X-Hop")
			req.Header.Set("X-Hop", "per-connection")
			resp, err := routertest.Client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusTeapot || string(body) != "short and stout q=1&r=2" ||
				resp.Header.Get("X-Live") != "yes" || resp.Header.Get("Content-Type") != "text/teapot" {
				t.Fatalf("client got %d %q %v; want live's 418, body and headers", resp.StatusCode, body, resp.Header)
			}

			dark.WaitCount(t, 1, 5*time.Second)
			c := dark.Requests()[0]
			if c.Host != "customdomain.com-shadow" {
				t.Errorf("copy Host %q, want customdomain.com-shadow", c.Host)
			}
			if c.URI != "/base/path/x?q=1&r=2" {
				t.Errorf("copy URI %q, want /base/path/x?q=1&r=2", c.URI)
			}
			if c.Header.Get("X-Custom") != "kept" || c.Header.Get("X-Hop") != "" {
				t.Errorf("copy headers %v: want X-Custom kept and hop-by-hop X-Hop removed", c.Header)
			}
			l := live.Requests()[len(live.Requests())-1]
			if l.URI != c.URI || l.Host != "customdomain.com" || l.Header.Get("X-Forwarded-For") != "127.0.0.1" {
				t.Errorf("live got %s Host %s XFF %q; want %s, customdomain.com, 127.0.0.1", l.URI, l.Host, l.Header.Get("X-Forwarded-For"), c.URI)
			}
			// The dark failure is counted for the dark version, not the client.
			testenv.Until(t, 5*time.Second, "the copy's outcome", func() bool {
				return counter(t, p, "default/exp", "dark", "5xx")+counter(t, p, "default/exp", "dark", "error") == 1
			})
			if got := counter(t, p, "default/exp", "live", "4xx"); got != 1 {
				t.Errorf("live 4xx counter %v, want 1", got)
			}
		})
	}
}

func TestProxyMirroredShareIsExact(t *testing.T) {
	live := routertest.NewVersion(t, nil)
	dark := routertest.NewVersion(t, nil)
	p, base := newTestProxy(t, Config{MirrorInflight: 1000}, nil)
	setup(t, p, routertest.Experiment("share", "customdomain.com", live.URL, dark.URL, 40, experiment.StageRunning))

	const n = 1000
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < n; i += 8 {
				if r := routertest.Send(t, base, "customdomain.com", "GET", "/", nil); r.Status != 200 {
					t.Errorf("request %d: status %d", i, r.Status)
				}
			}
		})
	}
	wg.Wait()
	dark.WaitCount(t, 400, 5*time.Second)
	// Every copy sent has been answered once none is in flight: a 401st
	// would have landed by now.
	rt := p.table.Load().byKey["default/share"]
	testenv.Until(t, 5*time.Second, "the copies in flight to end", func() bool { return rt.active.Load() == 0 })
	if got := len(dark.Requests()); got < 399 || got > 401 {
		t.Errorf("dark received %d copies of %d requests at 40%%, want 400±1", got, n)
	}
	if got := recorded(rt, roleDark).Tallies[tallyMirrored]; got < 399 || got > 401 {
		t.Errorf("mirrored counter %d, want 400±1", got)
	}
	if got := len(live.Requests()); got != n {
		t.Errorf("live received %d requests, want all %d", got, n)
	}
}

func TestProxyMethods(t *testing.T) {
	live := routertest.NewVersion(t, nil)
	dark := routertest.NewVersion(t, nil)
	p, base := newTestProxy(t, Config{}, nil)

	// Default methods: GET, HEAD, OPTIONS. A POST is never copied.
	setup(t, p, routertest.Experiment("default-methods", "a.example.com", live.URL, dark.URL, 100, experiment.StageRunning))
	for range 5 {
		routertest.Send(t, base, "a.example.com", "POST", "/orders", strings.NewReader("order"))
	}
	if got := dropped(t, p, "default/default-methods", DropMethod); got != 5 {
		t.Errorf("dropped{reason=method} = %v, want 5", got)
	}

	// With POST listed, it is copied, body and all.
	e := routertest.Experiment("with-post", "b.example.com", live.URL, dark.URL, 100, experiment.StageRunning)
	e.Spec.Mirroring.Methods = []string{"GET", "POST"}
	setup(t, p, e)
	if r := routertest.Send(t, base, "b.example.com", "POST", "/orders", strings.NewReader("order-42")); r.Status != 200 {
		t.Fatalf("status %d", r.Status)
	}
	dark.WaitCount(t, 1, 5*time.Second)
	c := dark.Requests()[0]
	if c.Method != "POST" || string(c.Body) != "order-42" || c.Host != "b.example.com-shadow" {
		t.Errorf("copy %s %q Host %s; want POST order-42 b.example.com-shadow", c.Method, c.Body, c.Host)
	}
	if got := len(dark.Requests()); got != 1 {
		t.Errorf("dark received %d requests, want only the one POST of with-post", got)
	}
}

func TestProxyLargeBodyNotMirrored(t *testing.T) {
	live := routertest.NewVersion(t, nil)
	dark := routertest.NewVersion(t, nil)
	p, base := newTestProxy(t, Config{MirrorMaxBody: 1024}, nil)
	e := routertest.Experiment("body", "customdomain.com", live.URL, dark.URL, 100, experiment.StageRunning)
	e.Spec.Mirroring.Methods = []string{"POST"}
	setup(t, p, e)

	big := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
	for name, body := range map[string]io.Reader{
		"content-length": bytes.NewReader(big),
		"chunked":        io.MultiReader(bytes.NewReader(big)), // no length: sent chunked
	} {
		if r := routertest.Send(t, base, "customdomain.com", "POST", "/upload", body); r.Status != 200 {
			t.Fatalf("%s: status %d", name, r.Status)
		}
	}
	// Just under the limit: copied.
	small := big[:1024]
	routertest.Send(t, base, "customdomain.com", "POST", "/upload", bytes.NewReader(small))

	var liveSums [][32]byte
	for _, l := range live.Requests() {
		liveSums = append(liveSums, sha256.Sum256(l.Body))
	}
	want := [][32]byte{sha256.Sum256(big), sha256.Sum256(big), sha256.Sum256(small)}
	if !slices.Equal(liveSums, want) {
		t.Errorf("live did not receive the whole bodies: got %d requests with lengths %v", len(liveSums), bodyLens(live.Requests()))
	}
	dark.WaitCount(t, 1, 5*time.Second)
	if got := dark.Requests(); len(got) != 1 || !bytes.Equal(got[0].Body, small) {
		t.Errorf("dark received %d copies (lengths %v), want only the 1 KiB one", len(got), bodyLens(got))
	}
	if got := dropped(t, p, "default/body", DropBody); got != 2 {
		t.Errorf("dropped{reason=body} = %v, want 2", got)
	}
}

// TestProxyUpgradeNotMirrored: a WebSocket upgrade goes to live, which
// switches protocols and echoes over the hijacked connection; dark gets no
// copy (a plain GET would not be what the client sent), and the drop is
// counted as "upgrade".
func TestProxyUpgradeNotMirrored(t *testing.T) {
	live := routertest.NewVersion(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "websocket" {
			return // a plain GET
		}
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		defer conn.Close()
		rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
		rw.Flush()
		line, _ := rw.ReadString('\n')
		rw.WriteString("echo " + line)
		rw.Flush()
	})
	dark := routertest.NewVersion(t, nil)
	p, base := newTestProxy(t, Config{}, nil)
	setup(t, p, routertest.Experiment("ws", "ws.example.com", live.URL, dark.URL, 100, experiment.StageRunning))

	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprint(conn, "GET /chat HTTP/1.1\r\nHost: ws.example.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d, want 101 from live through the proxy", resp.StatusCode)
	}
	fmt.Fprint(conn, "ping\n")
	if got, err := br.ReadString('\n'); err != nil || got != "echo ping\n" {
		t.Fatalf("over the upgraded connection: %q, %v; want %q", got, err, "echo ping\n")
	}

	// A plain GET on the same route is still copied: the only copy dark sees.
	routertest.Send(t, base, "ws.example.com", "GET", "/plain", nil)
	dark.WaitCount(t, 1, 5*time.Second)
	if got := dark.Requests(); len(got) != 1 || got[0].URI != "/plain" {
		t.Errorf("dark received %v, want only the copy of GET /plain", got)
	}
	if got := dropped(t, p, "default/ws", DropUpgrade); got != 1 {
		t.Errorf("dropped{reason=upgrade} = %v, want 1", got)
	}
}

// TestProxyTeardownRemovesSeries: the Prometheus series of an experiment go
// with its route, so a long-lived router does not export every experiment it
// ever ran; another experiment's series stay.
func TestProxyTeardownRemovesSeries(t *testing.T) {
	live := routertest.NewVersion(t, nil)
	dark := routertest.NewVersion(t, nil)
	p, base, done := routedProxy(t, Config{}, live, dark, "done", "done.example.com", 100)
	other := routertest.Experiment("other", "other.example.com", live.URL, dark.URL, 100, experiment.StageRunning)
	setup(t, p, other)
	routertest.Send(t, base, "done.example.com", "GET", "/", nil)
	routertest.Send(t, base, "other.example.com", "GET", "/", nil)
	dark.WaitCount(t, 2, 5*time.Second)

	// live and dark 2xx, and one zero per drop reason; the dark one is
	// counted once the copy's response is read.
	want := 2 + len(dropReasons)
	var before map[string]int
	testenv.Until(t, 5*time.Second, "both experiments' series", func() bool {
		before = seriesByExperiment(t, p)
		return before["default/done"] == want && before["default/other"] == want
	})
	if got := testutil.ToFloat64(p.prom.routes); got != 2 {
		t.Errorf("darklaunch_proxy_routes before teardown: %v, want 2", got)
	}
	if err := p.Teardown(context.Background(), done); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(p.prom.routes); got != 1 {
		t.Errorf("darklaunch_proxy_routes after teardown: %v, want 1", got)
	}
	after := seriesByExperiment(t, p)
	if after["default/done"] != 0 || after["default/other"] != before["default/other"] {
		t.Errorf("series by experiment after tearing down done: %v, want none of done and all %d of other", after, before["default/other"])
	}
}

func bodyLens(reqs []routertest.Request) []int {
	var out []int
	for _, r := range reqs {
		out = append(out, len(r.Body))
	}
	return out
}

func TestProxyLiveDownIs502(t *testing.T) {
	dark := routertest.NewVersion(t, nil)
	p, base := newTestProxy(t, Config{}, nil)
	setup(t, p, routertest.Experiment("down", "customdomain.com", routertest.RefusedURL(t), dark.URL, 100, experiment.StageRunning))
	r := routertest.Send(t, base, "customdomain.com", "GET", "/", nil)
	if r.Status != http.StatusBadGateway || !strings.Contains(r.Body, "live version") {
		t.Fatalf("got %d %q, want 502 naming the live version", r.Status, r.Body)
	}
	if got := counter(t, p, "default/down", "live", "5xx"); got != 1 {
		t.Errorf("live 5xx counter %v, want 1", got)
	}
}

// TestProxyZeroImpact: a dark version that hangs changes nothing for live.
func TestProxyZeroImpact(t *testing.T) {
	live := routertest.NewVersion(t, nil)
	healthy := routertest.NewVersion(t, nil)
	release := make(chan struct{})
	hanging := routertest.NewVersion(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	// Registered after the servers, so it runs before they close.
	t.Cleanup(func() { close(release) })

	cfg := Config{MirrorInflight: 16, MirrorTimeout: 2 * time.Second}
	p, base := newTestProxy(t, cfg, nil)

	// Requests alternate between the two experiments, so a load spike on
	// the machine hits both measurements alike.
	setup(t, p, routertest.Experiment("healthy", "healthy.example.com", live.URL, healthy.URL, 100, experiment.StageRunning))
	setup(t, p, routertest.Experiment("hanging", "hanging.example.com", live.URL, hanging.URL, 100, experiment.StageRunning))
	const n = 300
	lat := map[string][]time.Duration{}
	for i := range n {
		for _, name := range []string{"healthy", "hanging"} {
			start := time.Now()
			r := routertest.Send(t, base, name+".example.com", "GET", "/", nil)
			lat[name] = append(lat[name], time.Since(start))
			if r.Status != 200 {
				t.Fatalf("%s: request %d failed with %d", name, i, r.Status)
			}
		}
	}
	p99 := func(name string) time.Duration {
		slices.Sort(lat[name])
		return lat[name][n*99/100]
	}
	p99Healthy, p99Hanging := p99("healthy"), p99("hanging")
	t.Logf("live p99: healthy dark %v, hanging dark %v", p99Healthy, p99Hanging)
	if p99Hanging > 3*p99Healthy+20*time.Millisecond {
		t.Errorf("live p99 with a hanging dark %v > 3×%v+20ms (healthy dark)", p99Hanging, p99Healthy)
	}
	if got := dropped(t, p, "default/hanging", DropInflight); got < 300-16 {
		t.Errorf("dropped{reason=inflight} = %v, want at least %d", got, 300-16)
	}
	if got := dropped(t, p, "default/healthy", DropInflight); got != 0 {
		t.Logf("healthy dark: %v copies dropped for inflight (a slow machine)", got)
	}
}

func TestProxySetupIdempotentAndConflicts(t *testing.T) {
	live := routertest.NewVersion(t, nil)
	dark := routertest.NewVersion(t, nil)
	p, base := newTestProxy(t, Config{}, nil)
	e := routertest.Experiment("one", "customdomain.com", live.URL, dark.URL, 50, experiment.StageRunning)
	st := setup(t, p, e)
	want := experiment.RoutingStatus{Backend: "proxy", Host: "customdomain.com", Percent: 50, Live: live.URL, Dark: dark.URL}
	if !routertest.StatusEqual(st, want) {
		t.Errorf("status %+v, want %+v", st, want)
	}
	routertest.Send(t, base, "customdomain.com", "GET", "/", nil)
	rt := p.table.Load().byKey["default/one"]
	setup(t, p, e) // a restarted reconcile
	if p.table.Load().byKey["default/one"] != rt || rt.n.Load() != 1 {
		t.Errorf("second Setup replaced the route; want the same one, counters kept")
	}

	other := routertest.Experiment("two", "customdomain.com", live.URL, dark.URL, 50, experiment.StageRunning)
	if _, err := p.Setup(context.Background(), other); err == nil || !strings.Contains(err.Error(), "default/one") {
		t.Errorf("Setup of a second experiment on the same host: err %v, want one naming default/one", err)
	}

	noURL := routertest.Experiment("three", "three.example.com", "", dark.URL, 50, experiment.StageRunning)
	if _, err := p.Setup(context.Background(), noURL); err == nil || !strings.Contains(err.Error(), "liveURL") {
		t.Errorf("Setup without a live URL: err %v, want one naming spec.mirroring.liveURL", err)
	}

	if err := p.Teardown(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	if err := p.Teardown(context.Background(), e); err != nil {
		t.Fatalf("second Teardown: %v", err)
	}
	if r := routertest.Send(t, base, "customdomain.com", "GET", "/", nil); r.Status != 404 {
		t.Errorf("after Teardown: status %d, want 404", r.Status)
	}
}
