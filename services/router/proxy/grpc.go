package proxy

import (
	"io"
	"math"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"time"
)

// gRPC through the proxy. A call is an HTTP/2 POST whose outcome is not its
// HTTP status (200 whenever the server answered) but grpc-status, in the
// trailers, or in the headers of a trailers-only response. live's answer
// passes through the reverse proxy unchanged, trailers included; the
// observed outcome of live and of dark is grpc-status read as the HTTP
// status gRPC's own gateway maps it to (grpcHTTPStatus): 0 (OK) is a
// success, anything else a failure of its class (UNAVAILABLE: 5xx,
// NOT_FOUND: 4xx), and a gRPC response without a grpc-status is no whole
// answer ("error").
//
// A call's request body is a stream: a unary or server-streaming call sends
// one message and ends it at once, a client-streaming one may send for
// minutes, a bidirectional one waits for answers in between. So the copy is
// not read up front, which would hold live until the client stopped
// sending: it is taken as live's proxy reads the body (teeBody), and sent
// when the body ends, if it ended within MirrorMaxBody and MirrorTimeout.
// Otherwise the copy is dropped ("body"). A unary call is copied as an HTTP
// request is; a client-streaming or bidirectional call that ends in time is
// replayed to dark as one request of every message the client sent.
// grpc-web (application/grpc-web*) carries its status in the body and is
// observed by its HTTP status like any HTTP request.

// isGRPC tells whether r is a gRPC call: HTTP/2 with content-type
// application/grpc or application/grpc+<codec>.
func isGRPC(r *http.Request) bool {
	return r.ProtoMajor == 2 && isGRPCContentType(r.Header.Get("Content-Type"))
}

func isGRPCContentType(ct string) bool {
	rest, ok := strings.CutPrefix(ct, "application/grpc")
	return ok && (rest == "" || rest[0] == '+' || rest[0] == ';')
}

// grpcOutcome is the status a response counts as: status itself unless it
// is a 200 of gRPC, whose grpc-status is then read from trailer, or from
// header (where a trailers-only response has it, and where the reverse
// proxy leaves live's trailers for the client: named as they are, or with
// http.TrailerPrefix). 0: a gRPC response without a grpc-status.
func grpcOutcome(status int, header, trailer http.Header) int {
	if status != http.StatusOK || !isGRPCContentType(header.Get("Content-Type")) {
		return status
	}
	v := trailer.Get("Grpc-Status")
	if v == "" {
		v = header.Get(http.TrailerPrefix + "Grpc-Status")
	}
	if v == "" {
		v = header.Get("Grpc-Status")
	}
	if v == "" {
		return 0
	}
	code, err := strconv.Atoi(v)
	if err != nil {
		return 0
	}
	return grpcHTTPStatus(code)
}

// grpcHTTPStatus maps a gRPC status code to an HTTP status as
// grpc-gateway's runtime.HTTPStatusFromCode does.
func grpcHTTPStatus(code int) int {
	switch code {
	case 0: // OK
		return http.StatusOK
	case 1: // CANCELLED
		return 499
	case 3, 9, 11: // INVALID_ARGUMENT, FAILED_PRECONDITION, OUT_OF_RANGE
		return http.StatusBadRequest
	case 4: // DEADLINE_EXCEEDED
		return http.StatusGatewayTimeout
	case 5: // NOT_FOUND
		return http.StatusNotFound
	case 6, 10: // ALREADY_EXISTS, ABORTED
		return http.StatusConflict
	case 7: // PERMISSION_DENIED
		return http.StatusForbidden
	case 8: // RESOURCE_EXHAUSTED
		return http.StatusTooManyRequests
	case 12: // UNIMPLEMENTED
		return http.StatusNotImplemented
	case 14: // UNAVAILABLE
		return http.StatusServiceUnavailable
	case 16: // UNAUTHENTICATED
		return http.StatusUnauthorized
	}
	return http.StatusInternalServerError // UNKNOWN, INTERNAL, DATA_LOSS, any other
}

// drainLimit is how much of a dark response is read: a gRPC response to
// its end (its status is in the trailers after the body; MirrorTimeout
// bounds the time), any other up to maxDrain.
func drainLimit(resp *http.Response) int64 {
	if resp.ProtoMajor == 2 && isGRPCContentType(resp.Header.Get("Content-Type")) {
		return math.MaxInt64
	}
	return maxDrain
}

// mirrorGRPC is mirror for a gRPC call (see above): the copy is counted in
// flight at once, its body taken as live reads it.
func (p *Proxy) mirrorGRPC(rt *route, r *http.Request, arrived time.Time) *pair {
	reserve := copyOverhead + headerBytes(r.Header) + bodyReserve(r.ContentLength, p.cfg.MirrorMaxBody)
	if !p.takeCopy(rt, reserve) {
		rt.drop(dropInflight, arrived)
		return nil
	}
	if r.ContentLength > p.cfg.MirrorMaxBody {
		p.releaseCopy(rt, reserve)
		rt.drop(dropBody, arrived)
		return nil
	}
	// Held until the copy is sent or dropped, which may be after live's
	// answer: the transport closes the body when it likes.
	rt.active.Add(1)
	t := &teeBody{
		ReadCloser: r.Body,
		p:          p,
		rt:         rt,
		c:          newPair(),
		arrived:    arrived,
		reserve:    reserve,
		// The request as it came, before live's proxy touches it.
		in: r.Clone(r.Context()),
	}
	t.mu.Lock() // the timer's settle waits for t.timer
	t.timer = time.AfterFunc(p.cfg.MirrorTimeout, func() { t.settle(false) })
	t.mu.Unlock()
	if r.ContentLength == 0 {
		// No body, which live's proxy will not read: the copy is whole.
		t.settle(true)
		return t.c
	}
	r.Body = t
	return t.c
}

// teeBody is a gRPC request body on its way to live, of which it keeps a
// copy for dark up to MirrorMaxBody. It never blocks live: a read returns
// what it read, kept or not.
type teeBody struct {
	io.ReadCloser
	p       *Proxy
	rt      *route
	c       *pair
	in      *http.Request
	arrived time.Time
	reserve int64
	timer   *time.Timer

	mu      sync.Mutex // the transport may Close during a Read
	buf     []byte
	settled bool
}

func (t *teeBody) Read(b []byte) (int, error) {
	n, err := t.ReadCloser.Read(b)
	t.mu.Lock()
	if !t.settled {
		switch {
		case int64(len(t.buf)+n) > t.p.cfg.MirrorMaxBody:
			t.settleLocked(false)
		case err == io.EOF:
			t.buf = append(t.buf, b[:n]...)
			t.settleLocked(true)
		case err != nil:
			t.settleLocked(false)
		default:
			t.buf = append(t.buf, b[:n]...)
		}
	}
	t.mu.Unlock()
	return n, err
}

// Close before the end of the body: the call ended or broke off before
// the client finished sending, and the copy is not known whole.
func (t *teeBody) Close() error {
	t.settle(false)
	return t.ReadCloser.Close()
}

func (t *teeBody) settle(send bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.settleLocked(send)
}

// settleLocked sends the copy or counts it dropped, once.
func (t *teeBody) settleLocked(send bool) {
	if t.settled {
		return
	}
	t.settled = true
	t.timer.Stop()
	p, rt := t.p, t.rt
	if !send {
		t.buf = nil
		p.releaseCopy(rt, t.reserve)
		rt.drop(dropBody, t.arrived)
		t.c.dark(rt, 0, false, false)
		rt.active.Add(-1)
		return
	}
	body := t.buf
	t.buf = nil
	cost := t.reserve - bodyReserve(t.in.ContentLength, p.cfg.MirrorMaxBody) + int64(len(body))
	p.copyBytes.Add(cost - t.reserve)
	out, cancel := p.copyRequest(rt, t.in, body)
	if hasToken(t.in.Header["Te"], "trailers") {
		out.Header.Set("Te", "trailers") // what gRPC servers may require; not hop-by-hop here
	}
	rt.rec[roleDark].Tally(t.arrived, tallyMirrored)
	go p.sendCopy(rt, out, cancel, t.c, cost)
}

// hasToken tells whether a comma-separated header lists token.
func hasToken(values []string, token string) bool {
	for _, v := range values {
		for f := range strings.SplitSeq(v, ",") {
			if f, _, _ = strings.Cut(f, ";"); strings.EqualFold(textproto.TrimString(f), token) {
				return true
			}
		}
	}
	return false
}
