package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httputil"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nuid"

	"github.com/darklaunch/darklaunch/shared/experiment"
	"github.com/darklaunch/darklaunch/shared/sketch"
)

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

// route is one experiment's entry in the table, with everything its
// requests touch.
type route struct {
	key, uid  string
	ns, name  string
	host      string // the route key and the Host header sent to live
	spec      routeSpec
	methods   map[string]bool
	liveProxy *httputil.ReverseProxy
	// liveH1 and darkH1 are the versions' connections for the forwarder
	// (forward.go); nil for a version it cannot reach.
	liveH1, darkH1 *h1Pool
	shadowHost     string // host + "-shadow"
	log            *slog.Logger

	// n counts the requests seen, for the fractional accumulator.
	n atomic.Uint64
	// sem holds one slot per copy in flight when MirrorInflight bounds
	// them per experiment; nil otherwise.
	sem chan struct{}
	// active counts requests and copies in flight, so a teardown can wait
	// for them before the last flush.
	active atomic.Int64
	// ctx ends at teardown; every copy's context derives from it.
	ctx    context.Context
	cancel context.CancelFunc

	// rec are the live and dark observations per slot (see observe.go);
	// the dark one also tallies the copies mirrored and dropped.
	rec  [2]*sketch.Recorder
	prom *routeCounters

	flushMu sync.Mutex
	// series and seq number the route's batches (bus.ObservationBatch);
	// final is set once the last batch is made.
	series string
	// mirrorMark is the value of experiment.MirrorHeader on its copies.
	mirrorMark []string
	seq        uint64
	final      bool
	pending    []pendingBatch
}

func (p *Proxy) newRoute(exp *experiment.Experiment, spec routeSpec) *route {
	rt := &route{
		key:        exp.Key(),
		uid:        exp.Metadata.UID,
		ns:         exp.Metadata.Namespace,
		name:       exp.Metadata.Name,
		host:       spec.Host,
		spec:       spec,
		methods:    map[string]bool{},
		log:        p.log.With("experiment", exp.Key()),
		sem:        newSem(p.cfg.MirrorInflight),
		rec:        p.newRecorders(exp),
		prom:       p.prom.forExperiment(exp.Key()),
		series:     nuid.Next(),
		mirrorMark: []string{exp.Key()},
	}
	rt.rec[roleDark].SetPairCap(pairCapMs(p.cfg.MirrorTimeout))
	for _, m := range spec.Methods {
		rt.methods[m] = true
	}
	rt.ctx, rt.cancel = context.WithCancel(p.ctx)
	rt.shadowHost = rt.host + "-shadow"
	if a := h1Target(spec.live); a != "" {
		rt.liveH1 = p.h1live.pool(a)
	}
	if a := h1Target(spec.dark); a != "" {
		rt.darkH1 = p.h1dark.pool(a)
	}
	live, host := spec.live, spec.Host
	rt.liveProxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(live)
			// Like Envoy's authority rewrite: live sees the experiment's
			// host whatever port or case the client used.
			pr.Out.Host = host
			pr.SetXForwarded()
		},
		Transport:  p.liveTransport(), // HTTP/1.1 or HTTP/2, as the request came (h2.go)
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
		if p.testHookAcquired != nil {
			p.testHookAcquired(rt)
		}
		if p.table.Load().byHost[host] == rt {
			return rt, t
		}
		rt.active.Add(-1)
	}
}
