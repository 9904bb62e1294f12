package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"strconv"
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

var errH1Header = errors.New("response header too large or malformed")

// h1Pool keeps idle keep-alive connections to one address.
type h1Pool struct {
	addr    string
	maxIdle int
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

func newH1Pool(addr string, maxIdle int) *h1Pool {
	return &h1Pool{addr: addr, maxIdle: max(maxIdle, 2), dialer: net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}}
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
	c := &h1Conn{Conn: nc, br: bufio.NewReaderSize(nc, 8<<10), bw: bufio.NewWriterSize(nc, 8<<10)}
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
		p = newH1Pool(addr, ps.maxIdle)
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

// h1Response is the head of an answer.
type h1Response struct {
	status        int
	contentLength int64 // -1: not given
	chunked       bool
	close         bool // the connection ends with this answer
}

// readLine reads one line of the head, without its CRLF, into scratch when
// it does not fit the reader's buffer; *budget bounds the whole head.
func readLine(br *bufio.Reader, scratch *[]byte, budget *int) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		*scratch = append((*scratch)[:0], line...)
		for err == bufio.ErrBufferFull && len(*scratch) <= *budget {
			line, err = br.ReadSlice('\n')
			*scratch = append(*scratch, line...)
		}
		line = *scratch
	}
	if *budget -= len(line); *budget < 0 {
		return nil, errH1Header
	}
	if err != nil {
		return nil, err
	}
	return bytes.TrimRight(line, "\r\n"), nil
}

// readHead reads an answer's status line and headers into dst (nil: they
// are read and dropped), without the hop-by-hop ones. Interim answers (1xx
// but 101) are written to sw when it is not nil, as ReverseProxy passes
// them on, except 100 Continue: the client's Expect is the server's to
// answer, and the forwarder sends none.
func readHead(br *bufio.Reader, dst http.Header, sw *statusWriter) (h1Response, error) {
	var scratch []byte
	budget := h1MaxHeader
	for {
		res, err := readOneHead(br, &scratch, &budget, dst)
		if err != nil || res.status >= 200 || res.status == 101 {
			return res, err
		}
		if sw != nil && res.status != http.StatusContinue {
			sw.WriteHeader(res.status)
		}
		clear(dst) // not done by WriteHeader for 1xx
	}
}

func readOneHead(br *bufio.Reader, scratch *[]byte, budget *int, dst http.Header) (h1Response, error) {
	res := h1Response{contentLength: -1}
	line, err := readLine(br, scratch, budget)
	if err != nil {
		return res, err
	}
	// HTTP/1.x SP 3DIGIT [SP reason]
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' || (len(line) > 12 && line[12] != ' ') {
		return res, fmt.Errorf("malformed status line %q", truncate(line))
	}
	code, err := strconv.Atoi(string(line[9:12]))
	if err != nil || code < 100 {
		return res, fmt.Errorf("malformed status line %q", truncate(line))
	}
	res.status = code
	http10 := line[7] == '0'
	res.close = http10
	var connTokens [][]byte // headers the Connection header names: hop-by-hop too
	// The values are kept in one string, and the keys' slices in one
	// array, as textproto.ReadMIMEHeader does: two allocations per answer
	// instead of two per header.
	type field struct {
		key      string
		from, to int
	}
	var fieldsArr [16]field
	var valuesArr [1024]byte
	fields, values := fieldsArr[:0], valuesArr[:0]
	for {
		line, err := readLine(br, scratch, budget)
		if err != nil {
			return res, err
		}
		if len(line) == 0 {
			break
		}
		i := bytes.IndexByte(line, ':')
		if i <= 0 || line[0] == ' ' || line[0] == '\t' {
			return res, fmt.Errorf("malformed header line %q", truncate(line))
		}
		key := canonicalKey(line[:i])
		value := textproto.TrimBytes(line[i+1:])
		switch key {
		case "Connection":
			for _, t := range bytes.Split(value, []byte(",")) {
				t = textproto.TrimBytes(t)
				switch {
				case asciiEqualFold(t, "close"):
					res.close = true
				case asciiEqualFold(t, "keep-alive"):
					if http10 {
						res.close = false
					}
				case len(t) > 0:
					connTokens = append(connTokens, bytes.Clone(t))
				}
			}
			continue
		case "Transfer-Encoding":
			if !asciiEqualFold(value, "chunked") {
				return res, fmt.Errorf("unsupported transfer encoding %q", truncate(value))
			}
			res.chunked = true
			continue
		case "Content-Length":
			n, err := strconv.ParseInt(string(value), 10, 64)
			if err != nil || n < 0 || (res.contentLength >= 0 && n != res.contentLength) {
				return res, fmt.Errorf("bad Content-Length %q", truncate(value))
			}
			res.contentLength = n
		case "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Upgrade":
			continue
		}
		if dst != nil {
			fields = append(fields, field{key, len(values), len(values) + len(value)})
			values = append(values, value...)
		}
	}
	if len(fields) > 0 {
		all := string(values)
		strs := make([]string, len(fields))
		for i, f := range fields {
			strs[i] = all[f.from:f.to]
			if old := dst[f.key]; old != nil {
				dst[f.key] = append(old, strs[i])
			} else {
				dst[f.key] = strs[i : i+1 : i+1]
			}
		}
	}
	for _, t := range connTokens {
		delete(dst, textproto.CanonicalMIMEHeaderKey(string(t)))
	}
	if res.chunked {
		res.contentLength = -1 // RFC 9112 §6.3: chunked wins
	}
	return res, nil
}

func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		if lower(b[i]) != lower(s[i]) {
			return false
		}
	}
	return true
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// commonKeys are header keys as most servers send them: looked up without
// an allocation.
var commonKeys = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{"Accept-Ranges", "Age", "Cache-Control", "Connection", "Content-Encoding", "Content-Language",
		"Content-Length", "Content-Type", "Date", "Etag", "Expires", "Keep-Alive", "Last-Modified", "Location",
		"Server", "Set-Cookie", "Trailer", "Transfer-Encoding", "Upgrade", "Vary", "Via", "X-Content-Type-Options",
		"X-Request-Id", "Grpc-Status", "Grpc-Message", "Te", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization"} {
		m[k] = k
	}
	return m
}()

func canonicalKey(b []byte) string {
	if k, ok := commonKeys[string(b)]; ok {
		return k
	}
	return textproto.CanonicalMIMEHeaderKey(string(b))
}

func truncate(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}

// readTrailer reads the trailer section after a chunked body's last chunk
// into dst (nil: dropped), each key with prefix.
func readTrailer(br *bufio.Reader, dst http.Header, prefix string) error {
	var scratch []byte
	budget := h1MaxHeader
	for {
		line, err := readLine(br, &scratch, &budget)
		if err != nil {
			return err
		}
		if len(line) == 0 {
			return nil
		}
		i := bytes.IndexByte(line, ':')
		if i <= 0 {
			return fmt.Errorf("malformed trailer line %q", truncate(line))
		}
		if dst != nil {
			k := prefix + canonicalKey(line[:i])
			dst[k] = append(dst[k], string(textproto.TrimBytes(line[i+1:])))
		}
	}
}

// discardBody reads an answer's body to its end, up to limit bytes: it
// reports whether the connection can serve another request.
func discardBody(br *bufio.Reader, res h1Response, limit int64) (bool, error) {
	switch {
	case res.chunked:
		n, err := io.Copy(io.Discard, io.LimitReader(newChunkedReader(br), limit))
		if err != nil {
			return false, err
		}
		if n == limit {
			return false, nil
		}
		return !res.close, readTrailer(br, nil, "")
	case res.contentLength >= 0:
		if res.contentLength > limit {
			return false, nil
		}
		_, err := br.Discard(int(res.contentLength))
		return err == nil && !res.close, err
	default:
		_, err := io.Copy(io.Discard, io.LimitReader(br, limit))
		return false, err
	}
}

func newChunkedReader(br *bufio.Reader) io.Reader { return httputil.NewChunkedReader(br) }

func newChunkedWriter(w io.Writer) io.WriteCloser { return httputil.NewChunkedWriter(w) }

// roundTripCopyH1 sends a copy (head and body) to the dark version on one of
// its kept connections and discards the answer (up to maxDrain): its status,
// whether it timed out (MirrorTimeout), or why it failed. A copy is sent
// again, once, when a kept connection turns out closed before any answer:
// its body is in memory.
func (p *Proxy) roundTripCopyH1(rt *route, head, body []byte) (int, bool, error) {
	deadline := time.Now().Add(p.cfg.MirrorTimeout)
	for {
		c, err := rt.darkH1.getBy(rt.ctx, deadline)
		if err != nil {
			return 0, !time.Now().Before(deadline), err
		}
		_ = c.SetDeadline(deadline)
		stop := context.AfterFunc(rt.ctx, c.abort)
		status, reuse, err := exchange(c, head, body)
		if !stop() {
			reuse = false
		}
		if err != nil {
			c.Close()
			var na errNoAnswer
			if c.reused && errors.As(err, &na) && rt.ctx.Err() == nil && time.Now().Before(deadline) {
				continue
			}
			return 0, !time.Now().Before(deadline), err
		}
		if reuse && c.SetDeadline(time.Time{}) == nil {
			rt.darkH1.put(c)
		} else {
			c.Close()
		}
		return status, false, nil
	}
}

// exchange writes one request on c and reads its answer, discarded.
func exchange(c *h1Conn, head, body []byte) (status int, reuse bool, err error) {
	if _, err := c.bw.Write(head); err != nil {
		return 0, false, errNoAnswer{err}
	}
	if _, err := c.bw.Write(body); err != nil {
		return 0, false, errNoAnswer{err}
	}
	if err := c.bw.Flush(); err != nil {
		return 0, false, errNoAnswer{err}
	}
	if _, err := c.br.Peek(1); err != nil {
		return 0, false, errNoAnswer{err}
	}
	res, err := readHead(c.br, nil, nil)
	if err != nil {
		return 0, false, err
	}
	if res.status == http.StatusSwitchingProtocols {
		return 0, false, errors.New("101 Switching Protocols to a request that asked for no upgrade")
	}
	if bytes.HasPrefix(head, []byte("HEAD ")) || res.status == http.StatusNoContent || res.status == http.StatusNotModified {
		return res.status, !res.close, nil
	}
	reuse, err = discardBody(c.br, res, maxDrain)
	return res.status, reuse, err
}
