package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/internal/testenv"
	"github.com/darklaunch/darklaunch/services/router/routertest"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

// The forwarder (forward.go) behaves as the httputil.ReverseProxy it
// replaced on the hot path; these tests pin what the other tests do not.

// liveServer serves h on loopback until the test ends.
func liveServer(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s
}

func proxied(t *testing.T, cfg Config, liveURL, darkURL string, percent float64) (*Proxy, string) {
	t.Helper()
	p, base := newTestProxy(t, cfg, nil)
	e := routertest.Experiment("fwd", "customdomain.com", liveURL, darkURL, percent, experiment.StageRunning)
	e.Spec.Mirroring.Methods = []string{"GET", "HEAD", "POST"}
	setup(t, p, e)
	return p, base
}

func TestForwarderHeadersBothWays(t *testing.T) {
	got := make(chan http.Header, 2)
	hosts := make(chan string, 2)
	live := liveServer(t, func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Clone()
		hosts <- r.Host
		w.Header().Set("Connection", "X-Hop")
		w.Header().Set("X-Hop", "dropped")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Add("Set-Cookie", "a=1")
		w.Header().Add("Set-Cookie", "b=2")
		w.Header().Set("Content-Length", "5")
		w.WriteHeader(http.StatusTeapot)
		if r.Method != http.MethodHead {
			io.WriteString(w, "hello")
		}
	})
	_, base := proxied(t, Config{}, live.URL, routertest.RefusedURL(t), 1)

	req, _ := http.NewRequest("GET", base+"/a/b?c=d", nil)
	req.Host = "CustomDomain.com:8080"
	req.Header.Set("Connection", "X-Client-Hop, keep-alive")
	req.Header.Set("X-Client-Hop", "dropped")
	req.Header.Set("Proxy-Authorization", "Basic x")
	req.Header.Set("Te", "trailers, deflate")
	req.Header.Set("X-Forwarded-For", "10.0.0.1")
	req.Header.Set("Forwarded", "for=10.0.0.1")
	req.Header.Set("X-End-To-End", "kept")
	resp, err := routertest.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusTeapot || string(body) != "hello" {
		t.Fatalf("answer %d %q, want 418 \"hello\"", resp.StatusCode, body)
	}
	if resp.Header.Get("X-Hop") != "" || resp.Header.Get("Keep-Alive") != "" {
		t.Errorf("hop-by-hop answer headers passed on: %v", resp.Header)
	}
	if c := resp.Header.Values("Set-Cookie"); strings.Join(c, ";") != "a=1;b=2" {
		t.Errorf("Set-Cookie %q, want both", c)
	}
	h := <-got
	if host := <-hosts; host != "customdomain.com" {
		t.Errorf("live got Host %q, want the experiment's host", host)
	}
	for k, want := range map[string]string{
		"X-Client-Hop": "", "Proxy-Authorization": "", "Connection": "", "Forwarded": "",
		"Te": "trailers", "X-End-To-End": "kept",
		"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Host": "CustomDomain.com:8080", "X-Forwarded-Proto": "http",
	} {
		if v := strings.Join(h.Values(k), ","); v != want {
			t.Errorf("live got %s %q, want %q", k, v, want)
		}
	}

	// HEAD: the length of the body that is not sent, and no wait for it.
	r := routertest.Send(t, base, "customdomain.com", "HEAD", "/", nil)
	if r.Status != http.StatusTeapot || r.Header.Get("Content-Length") != "5" || r.Body != "" {
		t.Errorf("HEAD: %d %v %q", r.Status, r.Header, r.Body)
	}
}

func TestForwarderStreamsChunkedAnswersAndTrailers(t *testing.T) {
	next := make(chan struct{})
	live := liveServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Checksum")
		io.WriteString(w, "first ")
		w.(http.Flusher).Flush()
		select {
		case <-next: // the client read "first" while the answer went on
		case <-time.After(5 * time.Second):
			return
		}
		io.WriteString(w, "second")
		w.Header().Set("X-Checksum", "42")
		w.Header().Set(http.TrailerPrefix+"X-Late", "yes")
	})
	_, base := proxied(t, Config{}, live.URL, routertest.RefusedURL(t), 1)
	req, _ := http.NewRequest("GET", base+"/", nil)
	req.Host = "customdomain.com"
	resp, err := routertest.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	first := make([]byte, len("first "))
	if _, err := io.ReadFull(resp.Body, first); err != nil || string(first) != "first " {
		t.Fatalf("first part %q, %v", first, err)
	}
	close(next)
	rest, err := io.ReadAll(resp.Body)
	if err != nil || string(rest) != "second" {
		t.Fatalf("rest %q, %v", rest, err)
	}
	if resp.Trailer.Get("X-Checksum") != "42" || resp.Trailer.Get("X-Late") != "yes" {
		t.Errorf("trailers %v, want X-Checksum 42 and X-Late yes", resp.Trailer)
	}
}

func TestForwarderPassesEarlyHints(t *testing.T) {
	live := liveServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		io.WriteString(w, "page")
	})
	_, base := proxied(t, Config{}, live.URL, routertest.RefusedURL(t), 1)
	var hints []string
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		hints = append(hints, h.Get("Link"))
		return nil
	}}
	req, _ := http.NewRequest("GET", base+"/", nil)
	req.Host = "customdomain.com"
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
	resp, err := routertest.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "page" || len(hints) != 1 || hints[0] != "</style.css>; rel=preload" {
		t.Errorf("body %q, 103 hints %q; want page and one hint", body, hints)
	}
	if resp.Header.Get("Link") != "" {
		t.Errorf("the hint's header leaked into the final answer: %v", resp.Header)
	}
}

// A kept connection the live version closed meanwhile (its idle timeout)
// is not a failure: a POST, which cannot be sent twice, finds it closed
// before it is written; a GET is sent again.
func TestForwarderSurvivesConnectionsClosedByLive(t *testing.T) {
	live := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		io.WriteString(w, r.Method+" "+string(b))
	}))
	live.Config.IdleTimeout = 100 * time.Millisecond
	live.Start()
	t.Cleanup(live.Close)
	_, base := proxied(t, Config{}, live.URL, routertest.RefusedURL(t), 1)
	for i, m := range []string{"POST", "POST", "GET", "GET"} {
		var body io.Reader
		want := m + " "
		if m == "POST" {
			body, want = strings.NewReader("x"), "POST x"
		}
		r := routertest.Send(t, base, "customdomain.com", m, "/", body)
		if r.Status != 200 || r.Body != want {
			t.Errorf("request %d (%s after live closed the kept connection): %d %q, want 200 %q", i, m, r.Status, r.Body, want)
		}
		// Past the staleness check for the POSTs; the GETs right after.
		if m == "POST" {
			time.Sleep(h1Stale + 200*time.Millisecond)
		} else {
			time.Sleep(300 * time.Millisecond)
		}
	}
}

// A version closing the connection right after writing a GET's answer head
// without a length (HTTP/1.0 style) gives a body read to EOF, and the next
// request gets a new connection.
func TestForwarderAnswerWithoutLength(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				if _, err := http.ReadRequest(br); err != nil {
					return
				}
				io.WriteString(c, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end")
			}()
		}
	}()
	_, base := proxied(t, Config{}, "http://"+ln.Addr().String(), routertest.RefusedURL(t), 1)
	for i := range 3 {
		r := routertest.Send(t, base, "customdomain.com", "GET", "/", nil)
		if r.Status != 200 || r.Body != "until the end" {
			t.Fatalf("request %d: %d %q", i, r.Status, r.Body)
		}
	}
}

// A request body reaches live as the client sends it: the copy for dark is
// taken along the way and sent when the body is whole, not read first.
func TestBodyStreamedToLiveWhileCopied(t *testing.T) {
	firstPart := make(chan struct{})
	live := liveServer(t, func(w http.ResponseWriter, r *http.Request) {
		b := make([]byte, len("part one,"))
		if _, err := io.ReadFull(r.Body, b); err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		close(firstPart) // live has the first part while the client still holds the second
		rest, _ := io.ReadAll(r.Body)
		io.WriteString(w, string(b)+string(rest))
	})
	dark := routertest.NewVersion(t, nil)
	p, base := proxied(t, Config{}, live.URL, dark.URL, 100)

	pr, pw := io.Pipe()
	go func() {
		io.WriteString(pw, "part one,")
		select {
		case <-firstPart:
		case <-time.After(5 * time.Second): // the proxy held the body back: the test fails below
		}
		io.WriteString(pw, " part two")
		pw.Close()
	}()
	start := time.Now()
	r := routertest.Send(t, base, "customdomain.com", "POST", "/", pr) // chunked: no length known
	if r.Status != 200 || r.Body != "part one, part two" {
		t.Fatalf("live answered %d %q", r.Status, r.Body)
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Fatalf("the body reached live only when whole (%v): it was read before live got it", d)
	}
	dark.WaitCount(t, 1, 5*time.Second)
	if got := string(dark.Requests()[0].Body); got != "part one, part two" {
		t.Errorf("dark got %q, want the whole body", got)
	}
	if n := dropped(t, p, "default/fwd", DropBody); n != 0 {
		t.Errorf("dropped{body} %v, want 0", n)
	}
}

// A chunked body over MirrorMaxBody is not copied (counted "body"), and
// live gets it whole.
func TestChunkedBodyOverTheLimitNotCopied(t *testing.T) {
	live := routertest.NewVersion(t, func(w http.ResponseWriter, r *http.Request) {})
	dark := routertest.NewVersion(t, nil)
	p, base := proxied(t, Config{MirrorMaxBody: 1000}, live.URL, dark.URL, 100)
	big := strings.Repeat("x", 5000)
	r := routertest.Send(t, base, "customdomain.com", "POST", "/", io.MultiReader(strings.NewReader(big))) // no length: chunked
	if r.Status != 200 {
		t.Fatalf("status %d", r.Status)
	}
	if got := len(live.Requests()[0].Body); got != 5000 {
		t.Errorf("live got %d bytes, want 5000", got)
	}
	testenv.Until(t, 3*time.Second, "the copy counted dropped for its body", func() bool { return dropped(t, p, "default/fwd", DropBody) == 1 })
	if n := len(dark.Requests()); n != 0 {
		t.Errorf("dark got %d requests, want none", n)
	}
	if b := p.copyBytes.Load(); b != 0 {
		t.Errorf("copy memory %d bytes still held, want 0", b)
	}
}
