package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The live forwarder of the hot path (see h1.go). It behaves as the
// httputil.ReverseProxy of newRoute, which it replaces for HTTP/1.x requests
// to http:// versions: hop-by-hop headers (RFC 9110 §7.6.1) are dropped both
// ways, and those the Connection header names; "Te: trailers" is kept; the
// client's Forwarded and X-Forwarded-* headers are replaced by X-Forwarded-For
// (the client's address), X-Forwarded-Host and X-Forwarded-Proto; the Host is
// the experiment's; 1xx answers are passed on, trailers too; a chunked answer
// is flushed as it comes (streaming); a body that breaks off aborts the
// client's connection (http.ErrAbortHandler). The rest, an upgrade, an
// "Expect: 100-continue", a request with trailers, HTTP/2 or an https://
// version, goes through the ReverseProxy.

// h1Target is the address of a version the forwarder can reach, or "" when
// it cannot: not http://, or with a path or query to join with the
// request's (which ReverseProxy does).
func h1Target(u *url.URL) string {
	if u == nil || u.Scheme != "http" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return ""
	}
	if u.Port() == "" {
		return net.JoinHostPort(u.Hostname(), "80")
	}
	return u.Host
}

// fastPath reports whether r can take the forwarder to live.
func fastPath(rt *route, r *http.Request) bool {
	return rt.liveH1 != nil && r.ProtoMajor == 1 && r.Header["Expect"] == nil && r.Header["Trailer"] == nil
}

// aLongTimeAgo is a deadline in the past: it ends any I/O on a connection.
var aLongTimeAgo = time.Unix(1, 0)

// headBuffers are request heads being written.
var headBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// appendHead appends r's request line and headers as sent to a version
// under host, with mark (when set) as experiment.MirrorHeader, and without
// the body's framing (appendFraming) nor the blank line that ends the head.
func appendHead(b []byte, r *http.Request, host, markKey string, mark []string) []byte {
	b = append(b, r.Method...)
	b = append(b, ' ')
	if strings.HasPrefix(r.RequestURI, "/") {
		b = append(b, r.RequestURI...)
	} else {
		b = append(b, r.URL.RequestURI()...) // absolute-form or "*"
	}
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, host...)
	b = append(b, "\r\n"...)
	conn := r.Header["Connection"]
	for k, vs := range r.Header {
		switch k {
		case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Te",
			"Trailer", "Transfer-Encoding", "Upgrade", "Content-Length", "Host",
			"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto":
			continue
		}
		if k == markKey || (conn != nil && hasToken(conn, k)) {
			continue
		}
		for _, v := range vs {
			b = appendField(b, k, v)
		}
	}
	if te := r.Header["Te"]; te != nil && hasToken(te, "trailers") {
		b = append(b, "Te: trailers\r\n"...)
	}
	if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		b = appendField(b, "X-Forwarded-For", ip)
	}
	b = appendField(b, "X-Forwarded-Host", r.Host)
	if r.TLS == nil {
		b = append(b, "X-Forwarded-Proto: http\r\n"...)
	} else {
		b = append(b, "X-Forwarded-Proto: https\r\n"...)
	}
	for _, v := range mark {
		b = appendField(b, markKey, v)
	}
	return b
}

func appendField(b []byte, k, v string) []byte {
	b = append(b, k...)
	b = append(b, ": "...)
	b = append(b, v...)
	return append(b, "\r\n"...)
}

// appendFraming ends a head for a body of n bytes (-1: chunked).
func appendFraming(b []byte, method string, n int64) []byte {
	switch {
	case n < 0:
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	case n > 0 || method == http.MethodPost || method == http.MethodPut || method == http.MethodPatch:
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, n, 10)
		b = append(b, "\r\n"...)
	}
	return append(b, "\r\n"...)
}

// hasToken tells whether a comma-separated header lists token (its
// parameters aside: "trailers;q=1").
func hasToken(vs []string, token string) bool {
	for _, v := range vs {
		for f := range strings.SplitSeq(v, ",") {
			if f, _, _ = strings.Cut(f, ";"); strings.EqualFold(textproto.TrimString(f), token) {
				return true
			}
		}
	}
	return false
}

// idempotent methods may be sent again when a kept connection turns out to
// be closed before any answer came (RFC 9110 §9.2.2), as http.Transport does.
func idempotent(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions || m == http.MethodTrace
}

// errNoAnswer marks a failure before any byte of the answer arrived.
type errNoAnswer struct{ error }

func (e errNoAnswer) Unwrap() error { return e.error }

// forwardH1 sends r to live and writes live's answer to sw.
func (p *Proxy) forwardH1(rt *route, sw *statusWriter, r *http.Request) {
	ctx := r.Context()
	hb := headBuffers.Get().(*[]byte)
	head := appendFraming(appendHead((*hb)[:0], r, rt.host, "", nil), r.Method, r.ContentLength)
	defer func() {
		*hb = head[:0]
		headBuffers.Put(hb)
	}()
	replay := r.ContentLength == 0 && idempotent(r.Method)
	for {
		c, err := rt.liveH1.get(ctx)
		if err != nil {
			p.liveFailed(rt, sw, r, err)
			return
		}
		stop := context.AfterFunc(ctx, c.abort)
		if err := writeRequest(c, head, r); err != nil {
			stop()
			c.Close()
			var na errNoAnswer
			if c.reused && replay && errors.As(err, &na) && ctx.Err() == nil {
				continue // a kept connection the version had closed: once more on a new one
			}
			clear(sw.Header())
			p.liveFailed(rt, sw, r, err)
			return
		}
		reuse := p.copyAnswer(rt, sw, c.br, r)
		if !stop() {
			reuse = false // the client went away meanwhile: the deadline is set
		}
		if reuse {
			rt.liveH1.put(c)
		} else {
			c.Close()
		}
		return
	}
}

// writeRequest writes head and r's body on c and waits for the answer's
// first byte.
func writeRequest(c *h1Conn, head []byte, r *http.Request) error {
	if _, err := c.bw.Write(head); err != nil {
		return errNoAnswer{err}
	}
	if err := writeBody(c.bw, r.Body, r.ContentLength); err != nil {
		return fmt.Errorf("sending the request body: %w", err)
	}
	if err := c.bw.Flush(); err != nil {
		return errNoAnswer{err}
	}
	if _, err := c.br.Peek(1); err != nil {
		return errNoAnswer{err}
	}
	return nil
}

// writeBody writes a request body of n bytes (-1: chunked) to bw, as it
// comes, as http.Transport does: the head is flushed first (the version may
// need it before the body, which may be slow to come), and each chunk of a
// chunked body is flushed as it is read.
func writeBody(bw *bufio.Writer, body io.Reader, n int64) error {
	if n == 0 || body == nil || body == http.NoBody {
		return nil
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if n > 0 {
		m, err := bw.ReadFrom(io.LimitReader(body, n)) // straight to the connection: bw is empty
		if err == nil && m < n {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	cw := newChunkedWriter(bw)
	buf := make([]byte, 16<<10)
	for {
		m, err := body.Read(buf)
		if m > 0 {
			if _, werr := cw.Write(buf[:m]); werr != nil {
				return werr
			}
			if werr := bw.Flush(); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	if err := cw.Close(); err != nil {
		return err
	}
	_, err := bw.WriteString("\r\n") // no trailers
	return err
}

// copyAnswer reads live's answer on br and writes it to sw; it reports
// whether the connection can serve another request. An answer that breaks
// off after its head was written aborts the client's connection.
func (p *Proxy) copyAnswer(rt *route, sw *statusWriter, br *bufio.Reader, r *http.Request) bool {
	h := sw.Header()
	res, err := readHead(br, h, sw)
	if err != nil {
		clear(h)
		p.liveFailed(rt, sw, r, err)
		return false
	}
	if res.Status == http.StatusSwitchingProtocols {
		clear(h)
		p.liveFailed(rt, sw, r, errors.New("101 Switching Protocols to a request that asked for no upgrade"))
		return false
	}
	sw.WriteHeader(res.Status)
	if r.Method == http.MethodHead || res.Status == http.StatusNoContent || res.Status == http.StatusNotModified {
		return !res.Close
	}
	if res.ContentLength >= 0 && res.ContentLength <= int64(br.Buffered()) {
		// The whole body came with the head (most answers): no buffer.
		if err := copyN(sw, br, res.ContentLength, nil); err != nil {
			panic(http.ErrAbortHandler)
		}
		return !res.Close
	}
	buf := p.buffers.Get() // ReverseProxy's pool: one set of copy buffers
	defer p.buffers.Put(buf)
	switch {
	case res.Chunked:
		if err := copyFlushing(sw, newChunkedReader(br), buf); err != nil {
			panic(http.ErrAbortHandler)
		}
		if err := readTrailer(br, h, http.TrailerPrefix); err != nil {
			panic(http.ErrAbortHandler)
		}
		return !res.Close
	case res.ContentLength >= 0:
		if err := copyN(sw, br, res.ContentLength, buf); err != nil {
			panic(http.ErrAbortHandler)
		}
		return !res.Close
	default:
		if err := copyFlushing(sw, br, buf); err != nil {
			panic(http.ErrAbortHandler)
		}
		return false
	}
}

// copyN copies n bytes of br to w, straight from br's buffer when they are
// there already.
func copyN(w io.Writer, br *bufio.Reader, n int64, buf []byte) error {
	for n > 0 {
		if k := int64(br.Buffered()); k > 0 {
			k = min(k, n)
			b, _ := br.Peek(int(k))
			if _, err := w.Write(b); err != nil {
				return err
			}
			_, _ = br.Discard(int(k))
			n -= k
			continue
		}
		m, err := br.Read(buf[:min(n, int64(len(buf)))])
		if m > 0 {
			if _, werr := w.Write(buf[:m]); werr != nil {
				return werr
			}
			n -= int64(m)
		}
		if err != nil && n > 0 {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// copyFlushing copies src to sw until EOF, flushing every write: a body of
// unknown length is a stream (ReverseProxy flushes those at once too).
func copyFlushing(sw *statusWriter, src io.Reader, buf []byte) error {
	for {
		m, err := src.Read(buf)
		if m > 0 {
			if _, werr := sw.Write(buf[:m]); werr != nil {
				return werr
			}
			sw.Flush()
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// liveFailed answers 502 for a live version that did not answer, or notes
// that the client went away (nobody reads an answer, and live is not to
// blame), as the ReverseProxy's ErrorHandler does.
func (p *Proxy) liveFailed(rt *route, sw *statusWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		sw.canceled = true
		return
	}
	live := rt.spec.live
	rt.log.Debug("live version failed", "live", live.String(), "err", err)
	http.Error(sw, fmt.Sprintf("darklaunch proxy: live version %s did not answer: %v", live, err), http.StatusBadGateway)
}
