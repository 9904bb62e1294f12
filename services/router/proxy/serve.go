package proxy

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/darklaunch/darklaunch/services/router/mirroring"
	"github.com/darklaunch/darklaunch/shared"
	"github.com/darklaunch/darklaunch/shared/bus"
)

func newTransport(idlePerHost int) *http.Transport {
	return &http.Transport{
		// Never an environment HTTP proxy: the versions are addressed directly.
		Proxy: nil,
		DialContext: (&net.Dialer{
			Timeout:   5 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		MaxIdleConns:          0, // no overall limit; per host below
		MaxIdleConnsPerHost:   max(idlePerHost, 2),
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		Protocols:             http1Only(), // HTTP/2 requests take the HTTP/2 transports (h2.go)
	}
}

// ServeHTTP routes a request by Host: to live always, and a copy to dark
// when this request falls in the mirrored share.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	host := mirroring.Host(r.Host)
	rt, _ := p.acquire(host)
	if rt == nil {
		// The hosts that are mirrored are nobody's business who asks for
		// another: the page names only the Host it got (a prefix of it).
		w.Header().Set(bus.HeaderUnrouted, "true")
		http.Error(w, fmt.Sprintf("darklaunch proxy: no experiment mirrors host %s", shared.Excerpt(host)), http.StatusNotFound)
		return
	}
	if isUpgrade(r) {
		if rt.selected() {
			rt.drop(dropUpgrade, start) // counted while the route is held, so the last batch has it
		}
		rt.active.Add(-1) // a session may last hours: it must not hold a teardown
		p.serveUpgrade(rt, w, r)
		return
	}
	defer rt.active.Add(-1)

	var c *pair      // the mirrored copy's pair, if one was taken
	var tee *teeBody // the body the copy waits for, if it has one
	if rt.selected() {
		c, tee = p.mirror(rt, r, start)
	}
	defer tee.abandon() // live is done with the body

	sw := &statusWriter{ResponseWriter: w}
	defer func() {
		// The forwarder and ReverseProxy panic with http.ErrAbortHandler
		// when the response breaks after its headers were sent: record how
		// it ended first.
		if v := recover(); v != nil {
			if r.Context().Err() != nil {
				rt.prom.request(roleLive, classCanceled) // the client hung up
				c.live(rt, 0, false, false)
			} else {
				c.live(rt, rt.observe(roleLive, start, true), true, true)
				rt.prom.request(roleLive, classError)
			}
			panic(v)
		}
	}()
	if fastPath(rt, r) {
		p.forwardH1(rt, sw, r)
	} else {
		rt.liveProxy.ServeHTTP(sw, r)
	}
	if sw.canceled {
		rt.prom.request(roleLive, classCanceled)
		c.live(rt, 0, false, false)
		return
	}
	status := sw.status
	if status == 0 {
		status = http.StatusOK // nothing written: net/http sends 200
	}
	if r.ProtoMajor == 2 {
		status = grpcOutcome(status, sw.Header(), nil) // gRPC: grpc-status (grpc.go)
	}
	failed := status < 200 || status > 299
	c.live(rt, rt.observe(roleLive, start, failed), failed, true)
	rt.prom.request(roleLive, codeClass(status))
}

// upgradeStatusKey carries, in an upgrade request's context, where
// ModifyResponse notes the 101.
type upgradeStatusKey struct{}

// serveUpgrade passes a protocol upgrade (WebSocket) to live. It is not
// mirrored (see isUpgrade) and not observed: a session that lasts minutes is
// no request latency to compare. Its status class is counted when it ends.
func (p *Proxy) serveUpgrade(rt *route, w http.ResponseWriter, r *http.Request) {
	var upgraded int
	r = r.WithContext(context.WithValue(r.Context(), upgradeStatusKey{}, &upgraded))
	sw := &statusWriter{ResponseWriter: w}
	defer func() {
		class := codeClass(cmp.Or(upgraded, sw.status, http.StatusOK))
		if sw.canceled {
			class = classCanceled
		}
		// Counted only while the experiment is still routed: a session that
		// outlives its teardown must not bring back the series the teardown
		// removed (p.mu orders this with the removal).
		p.mu.Lock()
		if p.table.Load().byKey[rt.key] == rt {
			rt.prom.request(roleLive, class)
		}
		p.mu.Unlock()
		if p.testHookUpgradeEnded != nil {
			p.testHookUpgradeEnded()
		}
	}()
	rt.liveProxy.ServeHTTP(sw, r)
}

// statusWriter remembers the final status written. Unwrap lets
// http.ResponseController (which ReverseProxy uses to flush and to hijack
// for upgrades) reach the real writer.
type statusWriter struct {
	http.ResponseWriter
	status   int
	canceled bool // the client went away before live answered
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code // 1xx are informational; the final status follows
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush sends what was written so far, if the writer can.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// bufferPool is an httputil.BufferPool of 32 KiB buffers.
type bufferPool struct{ pool sync.Pool }

func (b *bufferPool) Get() []byte {
	if buf, ok := b.pool.Get().(*[]byte); ok {
		return *buf
	}
	return make([]byte, 32<<10)
}

func (b *bufferPool) Put(buf []byte) { b.pool.Put(&buf) }
