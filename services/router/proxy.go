package router

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/darklaunch/darklaunch/shared/experiment"
	"github.com/darklaunch/darklaunch/shared/metrics"
)

// Proxy is the local backend: one HTTP server for every experiment, routing
// by Host. Every request goes to the live version; a share of them is copied
// to the dark version, fire-and-forget, and the copy's response is thrown
// away. Both versions' latency and status are recorded and published in
// batches (see observe.go). The hot path takes no lock: the route table is an
// immutable map swapped atomically.
type Proxy struct {
	cfg  Config
	js   jetstream.JetStream
	log  *slog.Logger
	prom *promMetrics

	// live and dark are separate transports so that a hanging dark version
	// can only exhaust its own connections, never live's.
	live *http.Transport
	dark *http.Transport

	// buffers are the live responses' copy buffers, shared by every route:
	// without a pool httputil.ReverseProxy allocates 32 KiB per request.
	buffers bufferPool

	table atomic.Pointer[routeTable]
	mu    sync.Mutex // serialises changes of the table and of retired
	// retired are removed routes whose last batches are not published yet.
	retired  []*route
	flushing sync.Mutex // one Flush at a time

	// ctx ends at Close; each route's copies hang off it.
	ctx    context.Context
	cancel context.CancelFunc
}

var _ Backend = (*Proxy)(nil)

// NewProxy returns the local backend; cfg must have its defaults applied.
// With a nil js the observations are recorded but not published
// (benchmarks).
func NewProxy(cfg Config, js jetstream.JetStream, log *slog.Logger) (*Proxy, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	prom, err := newPromMetrics(cfg.Registry)
	if err != nil {
		return nil, fmt.Errorf("proxy metrics: %w", err)
	}
	p := &Proxy{
		cfg:  cfg,
		js:   js,
		log:  log,
		prom: prom,
		// Live carries every client request: keep plenty of idle
		// connections so a burst does not pay a new dial per request.
		live: newTransport(1024),
		dark: newTransport(cfg.MirrorInflight),
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.table.Store(&routeTable{byHost: map[string]*route{}, byKey: map[string]*route{}})
	routes := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "darklaunch_proxy_routes",
		Help: "Experiments the darklaunch proxy is mirroring now.",
	}, func() float64 { return float64(len(p.table.Load().byKey)) })
	if prom.routes, err = metrics.Register(cfg.Registry, routes); err != nil {
		return nil, fmt.Errorf("proxy metrics: %w", err)
	}
	return p, nil
}

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
		ForceAttemptHTTP2:     true,
	}
}

// routeTable is immutable once stored: a change builds a new one.
type routeTable struct {
	byHost map[string]*route
	byKey  map[string]*route
	// hosts is the sorted list of known hosts, for the 404 message.
	hosts string
}

func (t *routeTable) with(rt *route) *routeTable {
	n := &routeTable{byHost: maps.Clone(t.byHost), byKey: maps.Clone(t.byKey)}
	if old := n.byKey[rt.key]; old != nil {
		delete(n.byHost, old.host)
	}
	n.byHost[rt.host] = rt
	n.byKey[rt.key] = rt
	n.hosts = strings.Join(slices.Sorted(maps.Keys(n.byHost)), ", ")
	return n
}

func (t *routeTable) without(rt *route) *routeTable {
	n := &routeTable{byHost: maps.Clone(t.byHost), byKey: maps.Clone(t.byKey)}
	delete(n.byHost, rt.host)
	delete(n.byKey, rt.key)
	n.hosts = strings.Join(slices.Sorted(maps.Keys(n.byHost)), ", ")
	return n
}

// routeSpec is what an experiment asks of the proxy, defaults applied.
type routeSpec struct {
	host    string // lower case, no port
	percent float64
	live    *url.URL
	dark    *url.URL
	methods []string
}

func (s routeSpec) status() experiment.RoutingStatus {
	st := experiment.RoutingStatus{Backend: BackendProxy, Host: s.host, Percent: s.percent}
	if s.live != nil {
		st.Live = s.live.String()
	}
	if s.dark != nil {
		st.Dark = s.dark.String()
	}
	return st
}

func (s routeSpec) equal(o routeSpec) bool {
	return s.host == o.host && s.percent == o.percent && s.live.String() == o.live.String() &&
		s.dark.String() == o.dark.String() && slices.Equal(s.methods, o.methods)
}

// resolve reads spec.mirroring, falling back to the configuration.
func (p *Proxy) resolve(exp *experiment.Experiment) (routeSpec, error) {
	m := exp.Spec.Mirroring
	if m == nil {
		m = &experiment.Mirroring{}
	}
	s := routeSpec{host: hostOnly(m.Host), percent: p.cfg.DefaultPercent}
	if s.host == "" {
		s.host = hostOnly(p.cfg.DefaultHost)
	}
	if m.Percent != nil {
		s.percent = *m.Percent
	}
	if !(s.percent > 0 && s.percent <= 100) {
		return s, fmt.Errorf("spec.mirroring.percent %v: must be greater than 0 and at most 100", s.percent)
	}
	s.methods = experiment.DefaultMirrorMethods
	if len(m.Methods) > 0 {
		s.methods = make([]string, len(m.Methods))
		for i, meth := range m.Methods {
			s.methods[i] = strings.ToUpper(meth)
		}
	}
	var err error
	if s.live, err = versionURL("live", m.LiveURL, "spec.mirroring.liveURL", p.cfg.DefaultLiveURL); err != nil {
		return s, err
	}
	if s.dark, err = versionURL("dark", m.DarkURL, "spec.mirroring.darkURL", p.cfg.DefaultDarkURL); err != nil {
		return s, err
	}
	return s, nil
}

func versionURL(role, fromSpec, field, fromConfig string) (*url.URL, error) {
	raw, from := fromSpec, field
	if raw == "" {
		raw, from = fromConfig, "the router's default "+role+" URL"
	}
	if raw == "" {
		return nil, fmt.Errorf("no %s version URL: set %s or the router's default %s URL", role, field, role)
	}
	u, err := parseBaseURL(raw)
	if err != nil {
		return nil, fmt.Errorf("%s version URL from %s: %w", role, from, err)
	}
	return u, nil
}

// hostOnly turns a Host header or configured host into the route key: lower
// case, without port or trailing dot.
func hostOnly(h string) string {
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	}
	return strings.TrimSuffix(strings.ToLower(h), ".")
}

// Setup checks that both versions answer (for a new experiment: see
// needsInitCheck) and routes the experiment's host. A second Setup for the same experiment keeps
// the existing route, counters and all.
func (p *Proxy) Setup(ctx context.Context, exp *experiment.Experiment) (experiment.RoutingStatus, error) {
	spec, err := p.resolve(exp)
	if err != nil {
		return spec.status(), err
	}
	// Answer early, without the init check, when there is nothing to do or
	// it cannot work; the same is checked again under the lock below.
	cur := p.table.Load()
	if other := cur.byHost[spec.host]; other != nil && other.key != exp.Key() {
		return spec.status(), fmt.Errorf("host %s is already mirrored for experiment %s", spec.host, other.key)
	}
	if same := cur.byKey[exp.Key()]; same != nil && same.uid == exp.Metadata.UID && same.spec.equal(spec) {
		return spec.status(), nil
	}
	if needsInitCheck(exp) {
		if err := p.initCheck(ctx, spec); err != nil {
			return spec.status(), err
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	cur = p.table.Load()
	if other := cur.byHost[spec.host]; other != nil && other.key != exp.Key() {
		return spec.status(), fmt.Errorf("host %s is already mirrored for experiment %s", spec.host, other.key)
	}
	old := cur.byKey[exp.Key()]
	if old != nil && old.uid == exp.Metadata.UID && old.spec.equal(spec) {
		return spec.status(), nil
	}
	rt := p.newRoute(exp, spec)
	p.table.Store(cur.with(rt))
	if old != nil {
		// An older experiment of the same name: its copies end now, its
		// last batches are still published.
		old.cancel()
		p.retired = append(p.retired, old)
	}
	rt.log.Info("mirroring set up", "host", spec.host, "percent", spec.percent, "live", spec.live.String(), "dark", spec.dark.String(), "methods", spec.methods)
	return spec.status(), nil
}

// needsInitCheck: only a new experiment is checked, one the judge has not
// yet seen routed. Once routing was reported, the route must come back at
// once after a restart, whatever the dark version does right now.
func needsInitCheck(exp *experiment.Experiment) bool {
	st := exp.Status
	return (st.Stage == experiment.StageInitializing || st.Stage == "") && st.Routing == nil
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

// Close ends every copy in flight, publishes what was observed and closes
// idle connections. Call it once the HTTP server has shut down.
func (p *Proxy) Close(ctx context.Context) error {
	p.cancel()
	for _, rt := range p.table.Load().byKey {
		rt.waitIdle(ctx)
	}
	err := p.Flush(ctx)
	p.live.CloseIdleConnections()
	p.dark.CloseIdleConnections()
	return err
}

// route is one experiment's entry in the table, with everything its
// requests touch.
type route struct {
	key, uid  string
	ns, name  string
	host      string // the route key and the Host header sent to live
	spec      routeSpec
	methods   map[string]bool
	liveProxy *httputil.ReverseProxy
	log       *slog.Logger

	// n counts the requests seen, for the fractional accumulator.
	n atomic.Uint64
	// sem holds one slot per copy in flight.
	sem chan struct{}
	// active counts requests and copies in flight, so a teardown can wait
	// for them before the last flush.
	active atomic.Int64
	// ctx ends at teardown; every copy's context derives from it.
	ctx    context.Context
	cancel context.CancelFunc

	rec      [2]*metrics.Recorder
	mirrored atomic.Int64
	dropped  [len(dropReasons)]atomic.Int64
	prom     *routeCounters

	flushMu     sync.Mutex
	periodStart time.Time
	seq         uint64
	pending     []pendingBatch
}

func (p *Proxy) newRoute(exp *experiment.Experiment, spec routeSpec) *route {
	rt := &route{
		key:         exp.Key(),
		uid:         exp.Metadata.UID,
		ns:          exp.Metadata.Namespace,
		name:        exp.Metadata.Name,
		host:        spec.host,
		spec:        spec,
		methods:     map[string]bool{},
		log:         p.log.With("experiment", exp.Key()),
		sem:         make(chan struct{}, p.cfg.MirrorInflight),
		rec:         [2]*metrics.Recorder{metrics.NewRecorder(), metrics.NewRecorder()},
		prom:        p.prom.forExperiment(exp.Key()),
		periodStart: time.Now(),
	}
	for _, m := range spec.methods {
		rt.methods[m] = true
	}
	rt.ctx, rt.cancel = context.WithCancel(p.ctx)
	live, host := spec.live, spec.host
	rt.liveProxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(live)
			// Like Envoy's authority rewrite: live sees the experiment's
			// host whatever port or case the client used.
			pr.Out.Host = host
			pr.SetXForwarded()
		},
		Transport:  p.live,
		BufferPool: &p.buffers,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if r.Context().Err() != nil {
				// The client went away: nobody reads an answer, and live is
				// not to blame.
				if sw, ok := w.(*statusWriter); ok {
					sw.canceled = true
				}
				return
			}
			rt.log.Debug("live version failed", "live", live.String(), "err", err)
			http.Error(w, fmt.Sprintf("darklaunch proxy: live version %s did not answer: %v", live, err), http.StatusBadGateway)
		},
		ModifyResponse: func(res *http.Response) error {
			// An upgrade's 101 is written on the hijacked connection, past
			// the statusWriter: note it here.
			if res.StatusCode == http.StatusSwitchingProtocols {
				if st, ok := res.Request.Context().Value(upgradeStatusKey{}).(*int); ok {
					*st = res.StatusCode
				}
			}
			return nil
		},
	}
	return rt
}

// waitIdle waits until no request or copy of rt is in flight, or ctx ends.
func (rt *route) waitIdle(ctx context.Context) {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for rt.active.Load() > 0 {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// ServeHTTP routes a request by Host: to live always, and a copy to dark
// when this request falls in the mirrored share.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	host := hostOnly(r.Host)
	rt, t := p.acquire(host)
	if rt == nil {
		known := t.hosts
		if known == "" {
			known = "none"
		}
		http.Error(w, fmt.Sprintf("darklaunch proxy: no experiment mirrors host %q (known hosts: %s)", host, known), http.StatusNotFound)
		return
	}
	if isUpgrade(r) {
		if rt.selected() {
			rt.drop(dropUpgrade) // counted while the route is held, so the last batch has it
		}
		rt.active.Add(-1) // a session may last hours: it must not hold a teardown
		p.serveUpgrade(rt, w, r)
		return
	}
	defer rt.active.Add(-1)

	if rt.selected() {
		p.mirror(rt, r)
	}

	sw := &statusWriter{ResponseWriter: w}
	defer func() {
		// ReverseProxy panics with http.ErrAbortHandler when the response
		// breaks after its headers were sent: record how it ended first.
		if v := recover(); v != nil {
			if r.Context().Err() != nil {
				rt.prom.request(roleLive, classCanceled) // the client hung up
			} else {
				rt.rec[roleLive].Observe(msSince(start), true)
				rt.prom.request(roleLive, classError)
			}
			panic(v)
		}
	}()
	rt.liveProxy.ServeHTTP(sw, r)
	if sw.canceled {
		rt.prom.request(roleLive, classCanceled)
		return
	}
	status := sw.status
	if status == 0 {
		status = http.StatusOK // nothing written: net/http sends 200
	}
	rt.rec[roleLive].Observe(msSince(start), status < 200 || status > 299)
	rt.prom.request(roleLive, codeClass(status))
}

// acquire returns the route of host with its active count taken, or nil and
// the table it looked in. The route is looked up again after the count is
// taken: a teardown that removed it in between may already have waited for
// zero and published its last batches, and a request counted on it then
// would be lost.
func (p *Proxy) acquire(host string) (*route, *routeTable) {
	for {
		t := p.table.Load()
		rt := t.byHost[host]
		if rt == nil {
			return nil, t
		}
		rt.active.Add(1)
		if testHookAcquired != nil {
			testHookAcquired(rt)
		}
		if p.table.Load().byHost[host] == rt {
			return rt, t
		}
		rt.active.Add(-1)
	}
}

// testHookAcquired, set by tests only, runs between taking a route's count
// and checking the route is still routed.
var testHookAcquired func(*route)

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
	}()
	rt.liveProxy.ServeHTTP(sw, r)
}

func msSince(t time.Time) float64 {
	return float64(time.Since(t).Nanoseconds()) / 1e6
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

// bufferPool is an httputil.BufferPool of 32 KiB buffers.
type bufferPool struct{ pool sync.Pool }

func (b *bufferPool) Get() []byte {
	if buf, ok := b.pool.Get().(*[]byte); ok {
		return *buf
	}
	return make([]byte, 32<<10)
}

func (b *bufferPool) Put(buf []byte) { b.pool.Put(&buf) }
