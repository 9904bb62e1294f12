package proxy

import (
	"bufio"
	"cmp"
	"context"
	"net"
	"sync"
	"time"
)

// The proxy's own HTTP/1.1 client, for the hot path: a request to an http://
// version that came in over HTTP/1.1 and is no upgrade (everything else goes
// through httputil.ReverseProxy and http.Transport, see forward.go). The
// profile of the proxy with http.Transport showed its cost is in the two
// goroutines each connection runs (readLoop, writeLoop) and the channel
// hand-offs of every request between them and the handler, the request
// clone, and the response's header map; here the handler's goroutine writes
// the request on a pooled connection and reads the answer itself, and the
// answer's headers go straight into the client's response.

// h1IdleTimeout is how long an idle connection is kept, as
// http.Transport's IdleConnTimeout.
const h1IdleTimeout = 90 * time.Second

// h1Stale is the idle time after which a connection is checked before it is
// reused: the version may have closed it meanwhile (its own idle timeout), and
// a request written on it would fail.
const h1Stale = time.Second

// h1MaxHeader bounds a response's status line and headers, as
// http.Transport's default MaxResponseHeaderBytes does (there 10 MB).
const h1MaxHeader = 1 << 20

// h1Pool keeps idle keep-alive connections to one address.
type h1Pool struct {
	addr    string
	maxIdle int
	bufSize int // of each connection's reader and writer
	dialer  net.Dialer

	mu     sync.Mutex
	idle   []*h1Conn // most recently used last
	closed bool
}

type h1Conn struct {
	net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	idleAt time.Time
	reused bool // served a request before this one
	// abort ends any I/O on the connection (for context.AfterFunc): made
	// once per connection, not per request.
	abort func()
}

func newH1Pool(addr string, maxIdle, bufSize int) *h1Pool {
	return &h1Pool{addr: addr, maxIdle: max(maxIdle, 2), bufSize: cmp.Or(bufSize, 4<<10), dialer: net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}}
}

// get returns an idle connection, checked if it was idle long enough to be
// stale, or dials a new one.
func (p *h1Pool) get(ctx context.Context) (*h1Conn, error) { return p.getBy(ctx, time.Time{}) }

// getBy is get with a deadline for the dial (zero: none but the dialer's).
func (p *h1Pool) getBy(ctx context.Context, deadline time.Time) (*h1Conn, error) {
	now := time.Now()
	for {
		p.mu.Lock()
		n := len(p.idle)
		if n == 0 {
			p.mu.Unlock()
			break
		}
		c := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		if now.Sub(c.idleAt) < h1Stale || c.alive() {
			c.reused = true
			return c, nil
		}
		c.Close()
	}
	d := p.dialer
	d.Deadline = deadline
	nc, err := d.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return nil, err
	}
	c := &h1Conn{Conn: nc, br: bufio.NewReaderSize(nc, p.bufSize), bw: bufio.NewWriterSize(nc, p.bufSize)}
	c.abort = func() { _ = c.SetDeadline(aLongTimeAgo) }
	return c, nil
}

// alive reports whether an idle connection is still open: nothing to read
// yet (the version neither closed it nor sent anything unasked).
func (c *h1Conn) alive() bool {
	if c.br.Buffered() > 0 {
		return false
	}
	return peekAlive(c.Conn)
}

// put gives back a connection whose last answer was read to its end; it is
// closed instead when the pool is full or closed. Connections idle longer
// than h1IdleTimeout are closed on the way.
func (p *h1Pool) put(c *h1Conn) {
	c.idleAt = time.Now()
	p.mu.Lock()
	var expired []*h1Conn
	for len(p.idle) > 0 && c.idleAt.Sub(p.idle[0].idleAt) > h1IdleTimeout {
		expired = append(expired, p.idle[0])
		p.idle = p.idle[1:]
	}
	keep := !p.closed && len(p.idle) < p.maxIdle
	if keep {
		p.idle = append(p.idle, c)
	}
	p.mu.Unlock()
	for _, e := range expired {
		e.Close()
	}
	if !keep {
		c.Close()
	}
}

// close closes the idle connections; connections in use are closed when
// they come back.
func (p *h1Pool) close() {
	p.mu.Lock()
	idle := p.idle
	p.idle, p.closed = nil, true
	p.mu.Unlock()
	for _, c := range idle {
		c.Close()
	}
}

// h1Pools are the pools of one role (live or dark), by address, shared by
// every route: two experiments with the same version share its connections.
type h1Pools struct {
	maxIdle int
	bufSize int
	mu      sync.Mutex
	byAddr  map[string]*h1Pool
}

func (ps *h1Pools) pool(addr string) *h1Pool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.byAddr == nil {
		ps.byAddr = map[string]*h1Pool{}
	}
	p := ps.byAddr[addr]
	if p == nil {
		p = newH1Pool(addr, ps.maxIdle, ps.bufSize)
		ps.byAddr[addr] = p
	}
	return p
}

func (ps *h1Pools) closeIdle() {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for addr, p := range ps.byAddr {
		p.close()
		delete(ps.byAddr, addr)
	}
}
