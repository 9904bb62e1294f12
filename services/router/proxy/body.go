package proxy

import (
	"io"
	"sync"
	"time"
)

// teeBody is a request body that live reads as it comes, and that keeps
// what live read for the copy: the copy is sent once the body is whole
// (its declared length read, or EOF for a chunked one), so live is never
// delayed by the copy, not even by the time to read the body first. A body
// over MirrorMaxBody, one that breaks off or takes longer than
// MirrorTimeout, drops the copy ("body"); so does one live did not read to
// its end (the handler calls abandon when live is done). A gRPC stream's
// body is one too (grpc.go).
type teeBody struct {
	src  io.ReadCloser
	max  int64
	want int64 // the declared length; -1: unknown (chunked)

	// cp is the copy: sent with the body, or dropped, once, under mu: a
	// copy dispatched from a Read on another goroutine (http.Transport's
	// writer) is counted before the handler, in abandon, lets the request
	// go (and a teardown waiting for it could miss it).
	cp   *mirrorCopy
	mu   sync.Mutex
	buf  []byte
	done bool
}

func (t *teeBody) Read(b []byte) (int, error) {
	n, err := t.src.Read(b)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.done {
		return n, err
	}
	switch {
	case int64(len(t.buf)+n) > t.max || (t.want >= 0 && int64(len(t.buf)+n) > t.want):
		t.finish(false)
	default:
		t.buf = append(t.buf, b[:n]...)
		switch {
		case t.want >= 0 && int64(len(t.buf)) == t.want:
			t.finish(true)
		case err == io.EOF && t.want < 0:
			t.finish(true)
		case err != nil:
			t.finish(false) // broke off (or EOF short of the declared length)
		}
	}
	return n, err
}

func (t *teeBody) Close() error { return t.src.Close() }

// finish sends or drops the copy; t.mu is held. A body that took longer
// than MirrorTimeout to come (a long client stream) is dropped too: its
// copy would reach dark long after live's request.
func (t *teeBody) finish(ok bool) {
	t.done = true
	if ok && time.Since(t.cp.arrived) > t.cp.p.cfg.MirrorTimeout {
		ok = false
	}
	if ok {
		t.cp.send(t.buf)
	} else {
		t.cp.drop(dropBody)
	}
	t.buf = nil
}

// abandon drops the copy unless it was sent: live is done with the request.
func (t *teeBody) abandon() {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.done {
		t.finish(false)
	}
}
