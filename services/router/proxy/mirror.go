package proxy

import (
	"bytes"
	"context"
	"github.com/darklaunch/darklaunch/shared/experiment"
	"io"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"strings"
	"time"
)

// Reasons a copy is not sent to the dark version, as counted in
// ObservationBatch.Dropped and darklaunch_mirror_dropped_total.
const (
	DropInflight = "inflight" // MirrorMemory (or MirrorInflight) reached by the copies in flight
	DropBody     = "body"     // request body over MirrorMaxBody
	DropMethod   = "method"   // method not in spec.mirroring.methods
	DropUpgrade  = "upgrade"  // a protocol upgrade (WebSocket, h2c): a stream, not a request to copy
)

var dropReasons = [...]string{DropInflight, DropBody, DropMethod, DropUpgrade}

const (
	dropInflight = iota
	dropBody
	dropMethod
	dropUpgrade
)

// maxDrain bounds how much of a dark response is read before the
// connection is given up: the body is discarded anyway.
const maxDrain = 1 << 20

// selected is the fractional accumulator: request n (from 1) is in the
// mirrored share iff floor(n·p/100) > floor((n−1)·p/100). Over any run of
// requests the share is exact to one request, unlike a coin flip, so two
// runs of one experiment mirror the same requests.
func (rt *route) selected() bool {
	n := rt.n.Add(1)
	p := rt.spec.Percent
	return floor(float64(n)*p/100) > floor(float64(n-1)*p/100)
}

func floor(x float64) int64 { return int64(x) } // x ≥ 0

// drop counts a copy not sent, for a request that arrived at arrived.
func (rt *route) drop(reason int, arrived time.Time) {
	rt.rec[roleDark].Tally(arrived, tallyDropped+reason)
	rt.prom.dropped[reason].Inc()
}

// mirror sends a copy of r to the dark version in the background, or counts
// why it does not. It may replace r.Body (see below); everything else about
// r is left for live untouched. A copy sent returns the pair that joins its
// answer with live's (nil: no copy, no pair).
func (p *Proxy) mirror(rt *route, r *http.Request, arrived time.Time) *pair {
	if !rt.methods[r.Method] {
		rt.drop(dropMethod, arrived)
		return nil
	}
	if isGRPC(r) {
		return p.mirrorGRPC(rt, r, arrived) // its body is a stream (grpc.go)
	}
	// Non-blocking: a full budget means the dark version is slow or
	// hanging, and live must not wait for it. The body is reserved at its
	// declared length (the most it may be when unknown) and settled once
	// read.
	reserve := copyOverhead + headerBytes(r.Header) + bodyReserve(r.ContentLength, p.cfg.MirrorMaxBody)
	if !p.takeCopy(rt, reserve) {
		rt.drop(dropInflight, arrived)
		return nil
	}
	body, ok := p.copyBody(r)
	if !ok {
		p.releaseCopy(rt, reserve)
		rt.drop(dropBody, arrived)
		return nil
	}
	cost := reserve - bodyReserve(r.ContentLength, p.cfg.MirrorMaxBody) + int64(len(body))
	p.copyBytes.Add(cost - reserve)
	out, cancel := p.copyRequest(rt, r, body)
	rt.rec[roleDark].Tally(arrived, tallyMirrored)
	// Counted here, while the request's own count is held, so a teardown
	// waiting for zero cannot miss the copy.
	rt.active.Add(1)
	c := newPair()
	go p.sendCopy(rt, out, cancel, c, cost)
	return c
}

// copyOverhead is what one copy in flight is counted for besides its
// headers and body: its goroutine's stack, the request and its context,
// the dark connection it holds with its read and write buffers (4 KiB
// each), the response's headers, and the garbage they leave. Measured with
// test/bench (a hung dark version holding 2,048 copies): the proxy's RSS
// grew from 27 to 120 MiB, about 46 KiB a copy.
const copyOverhead = 48 << 10

// CopyOverhead is copyOverhead, for the documentation of MirrorMemory.
const CopyOverhead = copyOverhead

// darkIdlePerHost is the dark transport's idle connections kept per host
// when no MirrorInflight bounds the copies: enough for 2,000 copies a
// second at 250 ms to reuse their connections.
const darkIdlePerHost = 512

func headerBytes(h http.Header) int64 {
	var n int
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	return int64(n)
}

// bodyReserve is the body a copy is counted for before it is read: its
// declared length, or the most it may be when that is unknown.
func bodyReserve(contentLength, maxBody int64) int64 {
	switch {
	case contentLength == 0:
		return 0
	case contentLength < 0 || contentLength > maxBody:
		return maxBody
	}
	return contentLength
}

func newSem(n int) chan struct{} {
	if n <= 0 {
		return nil
	}
	return make(chan struct{}, n)
}

// takeCopy counts a copy of cost bytes in flight, or reports false when
// that would go over MirrorMemory or the experiment's MirrorInflight.
func (p *Proxy) takeCopy(rt *route, cost int64) bool {
	if rt.sem != nil {
		select {
		case rt.sem <- struct{}{}:
		default:
			return false
		}
	}
	if p.copyBytes.Add(cost) > p.cfg.MirrorMemory {
		p.copyBytes.Add(-cost)
		if rt.sem != nil {
			<-rt.sem
		}
		return false
	}
	return true
}

func (p *Proxy) releaseCopy(rt *route, cost int64) {
	p.copyBytes.Add(-cost)
	if rt.sem != nil {
		<-rt.sem
	}
}

// isUpgrade reports whether r asks to switch protocols (RFC 9110 §7.8). An
// upgrade turns the connection into a stream that only live may hold; a copy
// would reach dark as a plain request, which is not what the client sent.
// Envoy does not shadow upgrades either: they go to serveUpgrade, and the
// ones in the mirrored share count as dropped ("upgrade").
func isUpgrade(r *http.Request) bool {
	if r.Header.Get("Upgrade") == "" {
		return false
	}
	for _, v := range r.Header["Connection"] {
		for f := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(textproto.TrimString(f), "upgrade") {
				return true
			}
		}
	}
	return false
}

// copyBody reads up to MirrorMaxBody bytes of the request body for the copy.
// Live always gets the whole body: what was read, then the rest. It reports
// false when the body is too large (or unreadable) to copy.
func (p *Proxy) copyBody(r *http.Request) ([]byte, bool) {
	if r.ContentLength == 0 {
		return nil, true // net/http guarantees an empty body
	}
	if r.ContentLength > p.cfg.MirrorMaxBody {
		return nil, false // too large: do not even read it
	}
	buf, err := io.ReadAll(io.LimitReader(r.Body, p.cfg.MirrorMaxBody+1))
	r.Body = readCloser{Reader: io.MultiReader(bytes.NewReader(buf), r.Body), Closer: r.Body}
	if err != nil || int64(len(buf)) > p.cfg.MirrorMaxBody {
		return nil, false
	}
	return buf, true
}

type readCloser struct {
	io.Reader
	io.Closer
}

// copyRequest builds the copy the way Envoy shadows a request: same method,
// path, query and end-to-end headers, Host "<host>-shadow" (the request's
// own with spec.mirroring.keepHost), the header experiment.MirrorHeader, and
// a context of its own that the live request's end does not cancel.
func (p *Proxy) copyRequest(rt *route, r *http.Request, body []byte) (*http.Request, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(rt.ctx, p.cfg.MirrorTimeout)
	out := r.Clone(ctx)
	removeHopByHop(out.Header)
	// The same forwarding headers live gets (see the live Rewrite).
	for _, h := range []string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"} {
		out.Header.Del(h)
	}
	pr := &httputil.ProxyRequest{In: r, Out: out}
	pr.SetURL(rt.spec.dark)
	pr.SetXForwarded()
	out.Host = rt.host + "-shadow"
	if rt.spec.KeepHost {
		out.Host = r.Host
	}
	out.Header[experiment.MirrorHeader] = rt.mirrorMark
	out.RequestURI = ""
	out.Close = false
	out.TransferEncoding = nil
	out.Trailer = nil
	out.ContentLength = int64(len(body))
	out.Body, out.GetBody = nil, nil
	if len(body) > 0 {
		out.Body = io.NopCloser(bytes.NewReader(body))
		out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}
	return out, cancel
}

// hopHeaders are meaningful for one connection only (RFC 9110 §7.6.1).
var hopHeaders = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

func removeHopByHop(h http.Header) {
	for _, v := range h["Connection"] {
		for f := range strings.SplitSeq(v, ",") {
			if f = textproto.TrimString(f); f != "" {
				h.Del(f)
			}
		}
	}
	for _, f := range hopHeaders {
		h.Del(f)
	}
}

// sendCopy sends one copy, reads and discards the response, and records
// the dark version's latency and status, alone and in its pair c.
func (p *Proxy) sendCopy(rt *route, out *http.Request, cancel context.CancelFunc, c *pair, cost int64) {
	defer func() {
		cancel()
		p.releaseCopy(rt, cost)
		rt.active.Add(-1)
	}()
	start := time.Now()
	resp, err := p.darkTransport(out).RoundTrip(out)
	class := classError
	if err == nil {
		_, err = io.CopyN(io.Discard, resp.Body, drainLimit(resp))
		if err == io.EOF {
			err = nil
		}
		resp.Body.Close()
		class = codeClass(grpcOutcome(resp.StatusCode, resp.Header, resp.Trailer))
		if err != nil {
			class = classError // the body broke off: no whole response, as for live
		}
	}
	if rt.ctx.Err() != nil {
		// Torn down (the experiment ended) or shutting down: the copy was
		// cut short by us, not by the dark version; do not count it.
		c.dark(rt, 0, false, false)
		return
	}
	failed := err != nil || class != 2
	if err != nil {
		rt.log.Debug("mirrored copy failed", "dark", rt.spec.dark.String(), "err", err)
	}
	ms := rt.observe(roleDark, start, failed)
	if out.Context().Err() == context.DeadlineExceeded {
		// Timed out: the copy took the whole timeout, which started when
		// it was made, a little before start.
		ms = pairCapMs(p.cfg.MirrorTimeout)
	}
	c.dark(rt, ms, failed, true)
	rt.prom.request(roleDark, class)
}
