package loadgen

import (
	"cmp"
	"context"
	"crypto/tls"
	"fmt"
	"github.com/darklaunch/darklaunch/internal/h1"
	"net"
	"net/url"
	"strings"
	"time"
)

// maxDrain bounds how much of a response body is read. Reading the body to
// the end lets the connection be reused; a body larger than this is not what
// a load test is about, and closing that connection is cheaper.
const maxDrain = 4 << 20

// requester sends the requests of one experiment: one keep-alive HTTP/1.1
// connection per worker (conn, in wire.go), over which the same request,
// built once, goes again and again.
//
// It is not net/http's client: that one's pool of idle connections is
// shared by every worker behind one mutex, each request hands over to the
// connection's writing and reading goroutines, and every answer's headers
// are parsed into a map, which costs about twice the CPU per request of
// fortio's own HTTP/1.1 client; on the cores it shares with its target, the
// loadgen could then send only about 60 % of what fortio sends (the profile
// is in test/bench/README.md). A loadgen sends no body and needs of an
// answer only its status and the Darklaunch-Unrouted header.
type requester struct {
	addr    string      // host:port dialled
	tls     *tls.Config // nil: plain HTTP
	wire    []byte      // the request's bytes: request line and headers
	head    bool        // HEAD: no answer has a body
	replay  bool        // may be sent again after a reused connection failed before any answer (as net/http does)
	timeout time.Duration
	dialer  net.Dialer
	conns   []conn // by worker
}

// newRequester builds the request of plan p for its concurrency's workers.
func newRequester(p plan) (*requester, error) {
	u, err := url.Parse(p.URL)
	if err != nil {
		return nil, fmt.Errorf("url %q: %w", p.URL, err)
	}
	port := u.Port()
	r := &requester{
		head:    p.Method == "HEAD",
		replay:  p.Method == "GET" || p.Method == "HEAD" || p.Method == "OPTIONS",
		timeout: p.Timeout,
		// No proxy from the environment: loadgen sends to the router's proxy
		// (or the mesh) directly, and a corporate HTTP_PROXY would measure
		// the wrong thing.
		dialer: net.Dialer{Timeout: p.Timeout, KeepAlive: 30 * time.Second},
		conns:  make([]conn, max(p.Concurrency, 1)),
	}
	switch u.Scheme {
	case "http":
		port = cmp.Or(port, "80")
	case "https":
		port = cmp.Or(port, "443")
		r.tls = &tls.Config{ServerName: u.Hostname(), NextProtos: []string{"http/1.1"}, MinVersion: tls.VersionTLS12}
	default:
		return nil, fmt.Errorf("url %q: want an http:// or https:// URL", p.URL)
	}
	if u.Hostname() == "" {
		return nil, fmt.Errorf("url %q: no host", p.URL)
	}
	r.addr = net.JoinHostPort(u.Hostname(), port)
	host := cmp.Or(p.Host, u.Host)
	target := u.RequestURI()
	for _, f := range []struct{ name, v string }{{"method", p.Method}, {"host", host}, {"url", target}} {
		if f.v == "" || strings.ContainsAny(f.v, " \t\r\n") {
			return nil, fmt.Errorf("%s %q: empty or with a space or a line break, which would change the request", f.name, f.v)
		}
	}
	var b strings.Builder
	b.WriteString(p.Method + " " + target + " HTTP/1.1\r\nHost: " + host + "\r\nUser-Agent: darklaunch-loadgen\r\n")
	if p.Method == "POST" || p.Method == "PUT" || p.Method == "PATCH" {
		b.WriteString("Content-Length: 0\r\n") // what net/http sends for a request without a body
	}
	b.WriteString("\r\n")
	r.wire = []byte(b.String())
	for i := range r.conns {
		r.conns[i].r = r
	}
	return r, nil
}

// answer is what one request got back.
type answer struct {
	code int
	// routed: a version answered, not the router's proxy for want of an
	// experiment on the Host (bus.HeaderUnrouted).
	routed bool
}

// do sends the request on worker w's connection (dialled when there is
// none) and reads the answer, body included, within the plan's timeout.
// Only worker w may call it with w. When ctx ends, the request in flight
// fails at once.
func (r *requester) do(ctx context.Context, w int) (answer, error) {
	c := &r.conns[w]
	a, err, again := c.roundTrip(ctx)
	if again && ctx.Err() == nil {
		// The server closed the kept-alive connection before this request
		// reached it (an idle timeout): a fresh one gets the answer.
		a, err, _ = c.roundTrip(ctx)
	}
	return a, err
}

// close closes the connections once every worker is done.
func (r *requester) close() {
	for i := range r.conns {
		r.conns[i].close()
	}
}

// errMalformed is an answer that is not HTTP/1.x.
var errMalformed = h1.ErrMalformed
