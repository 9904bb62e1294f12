package loadgen

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// rawServer answers on 127.0.0.1 with answer(k, request head) for the k-th
// request over all connections (from 0), closing the connection after it
// when closeAfter says so. It counts the connections it accepted.
type rawServer struct {
	addr  string
	conns atomic.Int64
	mu    sync.Mutex
	heads []string
}

func newRawServer(t *testing.T, answer func(k int, head string) (resp string, closeAfter bool)) *rawServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	s := &rawServer{addr: ln.Addr().String()}
	var n atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.conns.Add(1)
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					var head strings.Builder
					for {
						line, err := br.ReadString('\n')
						if err != nil {
							return
						}
						head.WriteString(line)
						if line == "\r\n" {
							break
						}
					}
					s.mu.Lock()
					s.heads = append(s.heads, head.String())
					s.mu.Unlock()
					resp, closeAfter := answer(int(n.Add(1)-1), head.String())
					if _, err := c.Write([]byte(resp)); err != nil || closeAfter {
						return
					}
				}
			}()
		}
	}()
	return s
}

func testRequester(t *testing.T, url, method string, timeout time.Duration) *requester {
	t.Helper()
	r, err := newRequester(plan{URL: url, Host: "customdomain.com", Method: method, Concurrency: 1, Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.close)
	return r
}

// TestWireAnswers: the status and Darklaunch-Unrouted of every kind of
// HTTP/1.x answer, its body read to the end so that the next request goes
// over the same connection, or the connection replaced when the answer
// says it closes.
func TestWireAnswers(t *testing.T) {
	long := strings.Repeat("x", 3*readBuffer)
	for _, tc := range []struct {
		name   string
		method string
		resp   string
		code   int
		routed bool
		reused bool // the second request went over the first connection
	}{
		{"content-length", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", 200, true, true},
		{"no reason phrase", "GET", "HTTP/1.1 201\r\nContent-Length: 0\r\n\r\n", 201, true, true},
		{"chunked, extensions and trailers", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n", 200, true, true},
		{"unrouted", "GET", "HTTP/1.1 404 Not Found\r\nDarklaunch-Unrouted: 1\r\ncontent-length: 3\r\n\r\nno\n", 404, false, true},
		{"empty unrouted header", "GET", "HTTP/1.1 200 OK\r\nDarklaunch-Unrouted:\r\nContent-Length: 2\r\n\r\nok", 200, true, true},
		{"HEAD has no body", "HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", 200, true, true},
		{"204 has no body", "GET", "HTTP/1.1 204 No Content\r\n\r\n", 204, true, true},
		{"304 has no body", "GET", "HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\n", 304, true, true},
		{"interim answers first", "GET", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 200, true, true},
		{"a header longer than the buffer", "GET", "HTTP/1.1 200 OK\r\nSet-Cookie: " + long + "\r\nContent-Length: 2\r\n\r\nok", 200, true, true},
		{"Connection: close", "GET", "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 4\r\n\r\nbusy", 503, true, false},
		{"HTTP/1.0 closes", "GET", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", 200, true, false},
		{"HTTP/1.0 keep-alive", "GET", "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\nok", 200, true, true},
		{"body until close", "GET", "HTTP/1.1 200 OK\r\n\r\nall of it", 200, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The server keeps the connection open unless closing it ends
			// the body: a client that kept a connection the answer said it
			// closes would send the second request over it.
			srv := newRawServer(t, func(_ int, head string) (string, bool) {
				return tc.resp, tc.name == "body until close"
			})
			r := testRequester(t, "http://"+srv.addr+"/", tc.method, 5*time.Second)
			for i := range 2 {
				a, err := r.do(t.Context(), 0)
				if err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				if a.code != tc.code || a.routed != tc.routed {
					t.Errorf("request %d: %+v, want code %d routed %v", i, a, tc.code, tc.routed)
				}
			}
			if want := map[bool]int64{true: 1, false: 2}[tc.reused]; srv.conns.Load() != want {
				t.Errorf("%d connections for 2 requests, want %d", srv.conns.Load(), want)
			}
		})
	}
}

// TestWireMalformed: an answer that is not HTTP/1.x fails the request and
// closes the connection; the next request gets a new one.
func TestWireMalformed(t *testing.T) {
	for _, resp := range []string{
		"SSH-2.0-OpenSSH\r\n",
		"HTTP/1.1 2000 OK\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
		"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", // then closed
	} {
		srv := newRawServer(t, func(int, string) (string, bool) { return resp, true })
		r := testRequester(t, "http://"+srv.addr+"/", "GET", 5*time.Second)
		if a, err := r.do(t.Context(), 0); err == nil {
			t.Errorf("%q: %+v, want an error", resp, a)
		}
		if r.conns[0].nc != nil {
			t.Errorf("%q: the connection is kept", resp)
		}
	}
}

// TestWireRequest: the request line and headers the target sees, as
// net/http's client would send them (Content-Length: 0 for a POST without
// a body), and over TLS for an https URL.
func TestWireRequest(t *testing.T) {
	type seen struct {
		method, uri, host, agent string
		length                   int64
		tls                      bool
	}
	got := make(chan seen, 4)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- seen{r.Method, r.RequestURI, r.Host, r.UserAgent(), r.ContentLength, r.TLS != nil}
	})
	plain := httptest.NewServer(h)
	defer plain.Close()
	secure := httptest.NewTLSServer(h)
	defer secure.Close()

	for _, tc := range []struct {
		url, method string
		want        seen
	}{
		{plain.URL + "/a/b?q=1&r=%20", "GET", seen{"GET", "/a/b?q=1&r=%20", "customdomain.com", "darklaunch-loadgen", 0, false}},
		{plain.URL, "POST", seen{"POST", "/", "customdomain.com", "darklaunch-loadgen", 0, false}},
		{secure.URL + "/s", "GET", seen{"GET", "/s", "customdomain.com", "darklaunch-loadgen", 0, true}},
	} {
		r := testRequester(t, tc.url, tc.method, 5*time.Second)
		if r.tls != nil {
			r.tls.RootCAs = secure.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
		}
		a, err := r.do(t.Context(), 0)
		if err != nil || a.code != 200 {
			t.Fatalf("%s %s: %+v %v", tc.method, tc.url, a, err)
		}
		if s := <-got; s != tc.want {
			t.Errorf("%s %s: the target saw %+v, want %+v", tc.method, tc.url, s, tc.want)
		}
	}

	for _, p := range []plan{
		{URL: "ftp://x/", Method: "GET"},
		{URL: "http:///nohost", Method: "GET"},
		{URL: "http://127.0.0.1/", Host: "a\r\nX-Injected: 1", Method: "GET"},
	} {
		if _, err := newRequester(p); err == nil {
			t.Errorf("%+v: want an error", p)
		}
	}
}

// TestWireReconnects: a server that closes each kept-alive connection after
// one answer (as one does after its idle timeout) costs no failure: the
// request that finds its connection closed goes again on a new one.
func TestWireReconnects(t *testing.T) {
	srv := newRawServer(t, func(int, string) (string, bool) { return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", true })
	r := testRequester(t, "http://"+srv.addr+"/", "GET", 5*time.Second)
	for i := range 5 {
		if a, err := r.do(t.Context(), 0); err != nil || a.code != 200 {
			t.Fatalf("request %d: %+v %v", i, a, err)
		}
		time.Sleep(10 * time.Millisecond) // the server's close arrives
	}
	if n := srv.conns.Load(); n != 5 {
		t.Errorf("%d connections, want 5 (one per answer)", n)
	}
}

// TestWireTimeoutAndStop: a target that never answers fails the request at
// the plan's timeout; the traffic's stop cuts a request in flight at once.
func TestWireTimeoutAndStop(t *testing.T) {
	srv := newRawServer(t, func(int, string) (string, bool) {
		time.Sleep(10 * time.Second)
		return "", true
	})
	r := testRequester(t, "http://"+srv.addr+"/", "GET", 200*time.Millisecond)
	t0 := time.Now()
	_, err := r.do(t.Context(), 0)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || time.Since(t0) > 2*time.Second || time.Since(t0) < 200*time.Millisecond {
		t.Errorf("after %v: %v, want a timeout after 200ms", time.Since(t0), err)
	}

	r = testRequester(t, "http://"+srv.addr+"/", "GET", time.Minute)
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(100*time.Millisecond, cancel)
	t0 = time.Now()
	if _, err := r.do(ctx, 0); err == nil || ctx.Err() == nil || time.Since(t0) > 2*time.Second {
		t.Errorf("after %v: %v, want the request cut short by the stop", time.Since(t0), err)
	}
	// A stopped traffic sends nothing more.
	if _, err := r.do(ctx, 0); err == nil {
		t.Error("a request after the stop succeeded")
	}
}

// TestWireNoAllocations: a request and its answer on a kept-alive
// connection allocate nothing (the request is built once, the answer parsed
// in the read buffer); net/http's client allocated 64 per request.
func TestWireNoAllocations(t *testing.T) {
	url, _ := cannedServer(t)
	r := testRequester(t, url, "GET", 5*time.Second)
	ctx := t.Context()
	if _, err := r.do(ctx, 0); err != nil { // dial
		t.Fatal(err)
	}
	var failed error
	allocs := testing.AllocsPerRun(500, func() {
		if a, err := r.do(ctx, 0); err != nil || a.code != 200 {
			failed = err
		}
	})
	if failed != nil {
		t.Fatal(failed)
	}
	if allocs > 0 {
		t.Errorf("%.1f allocations per request, want 0", allocs)
	}
}
