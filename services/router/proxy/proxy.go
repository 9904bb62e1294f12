// Package proxy is the router's local backend: a reverse proxy that sends
// every request for an experiment's host to the live version, copies a
// share of them to the dark version (fire-and-forget, the copy's response
// thrown away), and publishes what it observed of both on the bus.
package proxy

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/darklaunch/darklaunch/services/router/mirroring"
	"github.com/darklaunch/darklaunch/shared/experiment"
	"github.com/darklaunch/darklaunch/shared/telemetry"
)

// Name is the backend's name, in router.Config.Backend and in the routing
// status it reports.
const Name = "proxy"

// liveIdlePerHost is the idle connections kept to a live version: plenty,
// so that a burst does not pay a new dial per request.
const liveIdlePerHost = 1024

// ShutdownTimeout bounds Run's graceful shutdown of the HTTP server: a
// request still running then is cut off.
const ShutdownTimeout = 5 * time.Second

// Proxy is the local backend: one HTTP server for every experiment, routing
// by Host. Every request goes to the live version; a share of them is copied
// to the dark version, fire-and-forget, and the copy's response is thrown
// away. Both versions' latency and status are recorded and published in
// batches (see observe.go). The hot path takes no lock: the route table is an
// immutable map swapped atomically.
type Proxy struct {
	cfg  Config
	set  mirroring.Settings
	js   jetstream.JetStream
	reg  *prometheus.Registry
	log  *slog.Logger
	prom *promMetrics
	ln   net.Listener
	url  string

	// live and dark are separate transports so that a hanging dark version
	// can only exhaust its own connections, never live's.
	live *http.Transport
	dark *http.Transport
	// h1live and h1dark are the forwarder's connections (forward.go), as
	// separate as live and dark.
	h1live, h1dark h1Pools
	// live2 and dark2 carry the requests that came in over HTTP/2 (h2.go).
	live2, dark2 *http.Transport

	// tlsLn serves TLS with tlsConf, given a certificate (tls.go).
	tlsLn   net.Listener
	tlsConf *tls.Config
	tlsURL  string

	// buffers are the live responses' copy buffers, shared by every route:
	// without a pool httputil.ReverseProxy allocates 32 KiB per request.
	buffers bufferPool

	// copyBytes is the memory the copies in flight hold, by their count
	// (copyCost), against MirrorMemory.
	copyBytes atomic.Int64

	table atomic.Pointer[routeTable]
	mu    sync.Mutex // serialises changes of the table and of retired
	// retired are removed routes whose last batches are not published yet.
	retired  []*route
	flushing sync.Mutex // one Flush at a time

	// ctx ends at Close; each route's copies hang off it.
	ctx    context.Context
	cancel context.CancelFunc

	// testHookAcquired, set by tests only, runs between taking a route's
	// count and checking the route is still routed.
	testHookAcquired func(*route)
	// testHookUpgradeEnded, set by tests only, runs when an upgraded
	// session's handler is done counting it.
	testHookUpgradeEnded func()
}

// New returns the proxy backend, listening on cfg.Addr already, so that a
// busy port fails here, before anything runs, and URL is known at once;
// Run serves. Zero values of cfg and set take their defaults. js publishes
// the observations (nil: recorded but not published, for benchmarks); reg
// receives the Prometheus counters (nil: a private registry).
func New(cfg Config, set mirroring.Settings, js jetstream.JetStream, reg *prometheus.Registry, log *slog.Logger) (*Proxy, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	cfg.Default()
	set.Default()
	if err := errors.Join(set.Validate(), cfg.Validate()); err != nil {
		return nil, err
	}
	prom, err := newPromMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("proxy metrics: %w", err)
	}
	p := &Proxy{
		cfg:  cfg,
		set:  set,
		js:   js,
		reg:  reg,
		log:  log,
		prom: prom,
		// Live carries every client request: keep plenty of idle
		// connections so a burst does not pay a new dial per request.
		live:  newTransport(liveIdlePerHost),
		dark:  newTransport(cmp.Or(cfg.MirrorInflight, darkIdlePerHost)),
		live2: newH2Transport(),
		dark2: newH2Transport(),
	}
	// Dark's connections read answers only to throw them away, and there
	// may be a thousand of them held by a slow dark version: small buffers.
	p.h1live.maxIdle, p.h1live.bufSize = liveIdlePerHost, 8<<10
	p.h1dark.maxIdle, p.h1dark.bufSize = darkIdle(cfg), 4<<10
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.table.Store(&routeTable{byHost: map[string]*route{}, byKey: map[string]*route{}})
	routes := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "darklaunch_proxy_routes",
		Help: "Experiments the darklaunch proxy is mirroring now.",
	}, func() float64 { return float64(len(p.table.Load().byKey)) })
	if prom.routes, err = telemetry.Register(reg, routes); err != nil {
		return nil, fmt.Errorf("proxy metrics: %w", err)
	}
	if p.ln, err = net.Listen("tcp", cfg.Addr); err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	p.url = "http://" + p.ln.Addr().String()
	if err := p.listenTLS(); err != nil {
		p.ln.Close()
		return nil, err
	}
	return p, nil
}

// URL is where the proxy serves the experiments' traffic
// ("http://127.0.0.1:8080"): where loadgen sends requests.
func (p *Proxy) URL() string { return p.url }

// Run serves the proxy and publishes the observations every FlushInterval
// until ctx ends, then shuts the HTTP server down (up to ShutdownTimeout).
// It returns early with an error if serving fails. Call it once; Close
// afterwards publishes the last observations.
func (p *Proxy) Run(ctx context.Context) error {
	srv := p.newServer()
	serving, served := p.serve(srv)
	go p.runFlusher(ctx)
	p.log.Info("proxy listening", "url", p.url, "tls", p.tlsURL, "instance", p.cfg.Instance)

	var err error
	select {
	case <-ctx.Done():
	case err = <-served:
		err = fmt.Errorf("proxy: %w", err)
		serving--
	}
	sctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
	defer cancel()
	if serr := srv.Shutdown(sctx); serr != nil {
		p.log.Warn("proxy shutdown cut short", "err", serr)
		srv.Close()
	}
	for range serving {
		<-served
	}
	return err
}

// Close ends every copy in flight, publishes what was observed and closes
// idle connections and the listener. Call it once Run has returned (or
// instead of Run); the last flush is bounded by ctx.
func (p *Proxy) Close(ctx context.Context) error {
	p.ln.Close() // already closed when Run ran
	p.closeTLS()
	p.cancel()
	for _, rt := range p.table.Load().byKey {
		rt.waitIdle(ctx)
	}
	err := p.Flush(ctx)
	p.live.CloseIdleConnections()
	p.dark.CloseIdleConnections()
	p.h1live.closeIdle()
	p.h1dark.closeIdle()
	p.closeIdleH2()
	if err != nil {
		return fmt.Errorf("last observations not published: %w", err)
	}
	return nil
}

// routeSpec is what an experiment asks of the proxy, defaults applied.
type routeSpec struct {
	mirroring.Spec
	live *url.URL
	dark *url.URL
}

func (s routeSpec) status() experiment.RoutingStatus {
	st := s.Status(Name)
	if s.live != nil {
		st.Live = s.live.String()
	}
	if s.dark != nil {
		st.Dark = s.dark.String()
	}
	return st
}

func (s routeSpec) equal(o routeSpec) bool {
	return s.Host == o.Host && s.Percent == o.Percent && s.live.String() == o.live.String() &&
		s.dark.String() == o.dark.String() && slices.Equal(s.Methods, o.Methods)
}

// resolve reads spec.mirroring, falling back on the router's settings.
func (p *Proxy) resolve(exp *experiment.Experiment) (routeSpec, error) {
	m, err := p.set.Resolve(exp)
	s := routeSpec{Spec: m}
	if err != nil {
		return s, err
	}
	s.live, s.dark, err = p.set.Versions(exp)
	return s, err
}

// Setup checks that both versions answer (for a new experiment: see
// mirroring.NeedsInitCheck) and routes the experiment's host. A second Setup
// for the same experiment keeps the existing route, counters and all.
func (p *Proxy) Setup(ctx context.Context, exp *experiment.Experiment) (experiment.RoutingStatus, error) {
	spec, err := p.resolve(exp)
	if err != nil {
		return spec.status(), err
	}
	// Answer early, without the init check, when there is nothing to do or
	// it cannot work; the same is checked again under the lock below.
	done, err := p.routed(p.table.Load(), exp, spec)
	if done || err != nil {
		return spec.status(), err
	}
	if mirroring.NeedsInitCheck(exp) {
		if err := p.initCheck(ctx, spec); err != nil {
			return spec.status(), err
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	cur := p.table.Load()
	if done, err := p.routed(cur, exp, spec); done || err != nil {
		return spec.status(), err
	}
	old := cur.byKey[exp.Key()]
	rt := p.newRoute(exp, spec)
	p.table.Store(cur.with(rt))
	if old != nil {
		// An older experiment of the same name: its copies end now, its
		// last batches are still published.
		old.cancel()
		p.retired = append(p.retired, old)
	}
	rt.log.Info("mirroring set up", "host", spec.Host, "percent", spec.Percent, "live", spec.live.String(), "dark", spec.dark.String(), "methods", spec.Methods)
	return spec.status(), nil
}

// routed tells whether t already routes exp as spec asks (nothing to do), or
// why it cannot: the host is another experiment's (a *mirroring.HostHeld
// naming that run, which its Teardown removes).
func (p *Proxy) routed(t *routeTable, exp *experiment.Experiment, spec routeSpec) (bool, error) {
	if other := t.byHost[spec.Host]; other != nil && other.key != exp.Key() {
		holder := &experiment.Experiment{Metadata: experiment.Metadata{Namespace: other.ns, Name: other.name, UID: other.uid}}
		return false, &mirroring.HostHeld{Holder: holder, Reason: fmt.Sprintf("host %s is already mirrored for experiment %s", spec.Host, other.key)}
	}
	same := t.byKey[exp.Key()]
	return same != nil && same.uid == exp.Metadata.UID && same.spec.equal(spec), nil
}

// Teardown stops routing the experiment's host, waits (up to MirrorTimeout)
// for the requests and copies in flight, and publishes the last batches.
func (p *Proxy) Teardown(ctx context.Context, exp *experiment.Experiment) error {
	p.mu.Lock()
	cur := p.table.Load()
	rt := cur.byKey[exp.Key()]
	if rt == nil || (exp.Metadata.UID != "" && rt.uid != exp.Metadata.UID) {
		p.mu.Unlock()
		return nil
	}
	p.table.Store(cur.without(rt))
	p.mu.Unlock()

	wctx, cancel := context.WithTimeout(ctx, p.cfg.MirrorTimeout)
	rt.waitIdle(wctx)
	cancel()
	rt.cancel()
	err := p.flushRoute(ctx, rt, time.Now())
	p.mu.Lock()
	if len(rt.pendingBatches()) > 0 {
		p.retired = append(p.retired, rt)
	}
	if p.table.Load().byKey[rt.key] == nil {
		// Not re-created meanwhile (a new route shares the series).
		p.prom.remove(rt.key)
	}
	p.mu.Unlock()
	rt.log.Info("mirroring removed", "host", rt.host)
	if err != nil {
		return fmt.Errorf("teardown %s: last observations not published yet (retrying): %w", rt.key, err)
	}
	return nil
}
