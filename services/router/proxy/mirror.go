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

// mirror decides whether r gets a copy for the dark version, and takes
// what the copy needs, or counts why it gets none. A request without a body
// is copied at once; one with a body once live has read it: r.Body is then
// a teeBody, whose abandon the handler calls when live is done. Everything
// else about r is left for live untouched. A copy returns the pair that
// joins its answer with live's (nil: no copy, no pair).
func (p *Proxy) mirror(rt *route, r *http.Request, arrived time.Time) (*pair, *teeBody) {
	if !rt.methods[r.Method] {
		rt.drop(dropMethod, arrived)
		return nil, nil
	}
	// Non-blocking: a full budget means the dark version is slow or
	// hanging, and live must not wait for it. The body is reserved at its
	// declared length (the most it may be when unknown) and settled once
	// read.
	body := bodyReserve(r.ContentLength, p.cfg.MirrorMaxBody)
	reserve := copyOverhead + headerBytes(r.Header) + body
	if !p.takeCopy(rt, reserve) {
		rt.drop(dropInflight, arrived)
		return nil, nil
	}
	if r.ContentLength > p.cfg.MirrorMaxBody {
		p.releaseCopy(rt, reserve)
		rt.drop(dropBody, arrived) // too large: not even read
		return nil, nil
	}
	cp := &mirrorCopy{p: p, rt: rt, pair: newPair(), arrived: arrived, method: r.Method, reserve: reserve, bodyReserve: body}
	if rt.darkH1 != nil && r.ProtoMajor == 1 {
		hb := headBuffers.Get().(*[]byte)
		*hb = appendHead((*hb)[:0], r, p.copyHost(rt, r), experiment.MirrorHeader, rt.mirrorMark)
		cp.head = hb
	} else {
		cp.out = p.copyRequest(rt, r)
	}
	if r.ContentLength == 0 {
		cp.send(nil)
		return cp.pair, nil
	}
	t := &teeBody{src: r.Body, max: p.cfg.MirrorMaxBody, want: r.ContentLength, cp: cp}
	if r.ContentLength > 0 {
		t.buf = make([]byte, 0, r.ContentLength)
	}
	r.Body = t
	return cp.pair, t
}

// mirrorCopy is a copy taken, waiting for its body.
type mirrorCopy struct {
	p                    *Proxy
	rt                   *route
	pair                 *pair
	arrived              time.Time
	method               string
	reserve, bodyReserve int64
	head                 *[]byte       // the head to write, framing aside (h1.go); or
	out                  *http.Request // the copy for http.Transport, without its body
}

// send counts the copy mirrored and sends it in the background.
func (cp *mirrorCopy) send(body []byte) {
	p, rt := cp.p, cp.rt
	cost := cp.reserve - cp.bodyReserve + int64(len(body))
	p.copyBytes.Add(cost - cp.reserve)
	rt.rec[roleDark].Tally(cp.arrived, tallyMirrored)
	// Counted here, while the request's own count is held, so a teardown
	// waiting for zero cannot miss the copy.
	rt.active.Add(1)
	go p.sendCopy(cp, body, cost)
}

// drop counts the copy dropped for reason, and voids its pair.
func (cp *mirrorCopy) drop(reason int) {
	cp.p.releaseCopy(cp.rt, cp.reserve)
	cp.rt.drop(reason, cp.arrived)
	cp.pair.dark(cp.rt, 0, false, false)
	cp.freeHead()
}

func (cp *mirrorCopy) freeHead() {
	if cp.head != nil {
		headBuffers.Put(cp.head)
		cp.head = nil
	}
}

// copyHost is the Host of r's copy: "<host>-shadow" as Envoy's, or the
// request's own with spec.mirroring.keepHost.
func (p *Proxy) copyHost(rt *route, r *http.Request) string {
	if rt.spec.KeepHost {
		return r.Host
	}
	return rt.shadowHost
}

// copyOverhead is what one copy in flight is counted for besides its
// headers and body: its goroutine's stack, its head, the dark connection
// it holds with its read and write buffers (4 KiB each), and the garbage
// they leave. Measured with test/bench (`-only memory`: a hung dark
// version holding the 2,048 copies of the default bound): the proxy's RSS
// grew from 16 to 62 MiB, about 23 KiB a copy (with http.Transport it
// was 46 KiB).
const copyOverhead = 32 << 10

// CopyOverhead is copyOverhead, for the documentation of MirrorMemory.
const CopyOverhead = copyOverhead

// darkIdle is the idle connections kept to a dark version by the forwarder:
// as many as there may be copies in flight (one connection each), so that a
// slow dark version's connections are not closed and dialled again.
func darkIdle(cfg Config) int {
	if cfg.MirrorInflight > 0 {
		return cfg.MirrorInflight
	}
	return int(min(cfg.MirrorMemory/copyOverhead, 1<<16))
}

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
	return r.Header.Get("Upgrade") != "" && hasToken(r.Header["Connection"], "upgrade")
}

// copyRequest builds the copy for http.Transport the way Envoy shadows a
// request: same method, path, query and end-to-end headers, Host
// copyHost, the header experiment.MirrorHeader, and a context of its own
// (the route's) that the live request's end does not cancel.
func (p *Proxy) copyRequest(rt *route, r *http.Request) *http.Request {
	out := r.Clone(rt.ctx)
	removeHopByHop(out.Header)
	// The same forwarding headers live gets (see the live Rewrite).
	for _, h := range []string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"} {
		out.Header.Del(h)
	}
	pr := &httputil.ProxyRequest{In: r, Out: out}
	pr.SetURL(rt.spec.dark)
	pr.SetXForwarded()
	out.Host = p.copyHost(rt, r)
	out.Header[experiment.MirrorHeader] = rt.mirrorMark
	if hasToken(r.Header["Te"], "trailers") {
		out.Header.Set("Te", "trailers") // as live gets it; gRPC servers may require it
	}
	out.RequestURI = ""
	out.Close = false
	out.TransferEncoding = nil
	out.Trailer = nil
	out.Body, out.GetBody = nil, nil
	return out
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
// the dark version's latency and status, alone and in its pair.
func (p *Proxy) sendCopy(cp *mirrorCopy, body []byte, cost int64) {
	rt, c := cp.rt, cp.pair
	defer func() {
		cp.freeHead()
		p.releaseCopy(rt, cost)
		rt.active.Add(-1)
	}()
	start := time.Now()
	var status int
	var timedOut bool
	var err error
	if cp.head != nil {
		*cp.head = appendFraming(*cp.head, cp.method, int64(len(body)))
		status, timedOut, err = p.roundTripCopyH1(rt, *cp.head, body)
	} else {
		status, timedOut, err = p.roundTripCopy(cp.out, body)
	}
	class := classError
	if err == nil {
		class = codeClass(status)
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
	if timedOut {
		// Timed out: the copy took the whole timeout, which started when
		// it was sent, a little before start.
		ms = pairCapMs(p.cfg.MirrorTimeout)
	}
	c.dark(rt, ms, failed, true)
	rt.prom.request(roleDark, class)
}

// roundTripCopy sends out with body by http.Transport and discards the
// answer (up to maxDrain): its status, whether it timed out, or why it
// failed (the body broke off: no whole response, as for live).
func (p *Proxy) roundTripCopy(out *http.Request, body []byte) (int, bool, error) {
	ctx, cancel := context.WithTimeout(out.Context(), p.cfg.MirrorTimeout)
	defer cancel()
	out = out.WithContext(ctx)
	out.ContentLength = int64(len(body))
	if len(body) > 0 {
		out.Body = io.NopCloser(bytes.NewReader(body))
		out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}
	resp, err := p.darkTransport(out).RoundTrip(out)
	if err != nil {
		return 0, ctx.Err() == context.DeadlineExceeded, err
	}
	_, err = io.CopyN(io.Discard, resp.Body, drainLimit(resp))
	if err == io.EOF {
		err = nil
	}
	resp.Body.Close() // before reading the trailers, which it fills in
	return grpcOutcome(resp.StatusCode, resp.Header, resp.Trailer), ctx.Err() == context.DeadlineExceeded, err
}
