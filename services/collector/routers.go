package collector

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/members"
	"github.com/darklaunch/darklaunch/shared/retry"
)

// Leases says how a router instance stands, as its lease in the members
// bucket shows (routers hold one under role router, named as their proxy's
// observation batches name them).
type Leases interface {
	Lease(instance string) LeaseState
}

// LeaseState is what the members bucket says of a router.
type LeaseState int

const (
	// LeaseUnknown: never seen there (a router older than the leases, or
	// one gone before this collector started).
	LeaseUnknown LeaseState = iota
	// LeaseLive: heartbeating.
	LeaseLive
	// LeaseStale: two heartbeats missed (TTL/2), the lease not yet lapsed:
	// a router killed a moment ago, or one on a slow bus.
	LeaseStale
	// LeaseGone: deleted (a stop) or lapsed (no heartbeat for a TTL while
	// other instances' heartbeats come).
	LeaseGone
)

// routerLeases follows the routers' leases: an instance is alive while
// its heartbeat was seen within the lease's TTL (the bucket drops an
// expired key without a word) and it has not deleted its key (a stop).
// While no heartbeat of any instance of any service comes (the bucket lost
// in a restart of NATS, which keeps it in memory; the watch broken) a
// silent router is no more than stale: the bus is silent, not necessarily
// the router.
type routerLeases struct {
	ttl time.Duration

	mu      sync.Mutex
	seen    map[string]time.Time // zero: deleted
	lastAny time.Time            // the last heartbeat of any instance of any role
}

// leasesReadyTimeout bounds the wait for the leases stored at start-up.
const leasesReadyTimeout = 5 * time.Second

// watchRouterLeases follows the routers' leases in kv until ctx ends. It
// returns once the leases already stored are known (or after
// leasesReadyTimeout), so that no measurement takes a live router for one
// never seen.
func watchRouterLeases(ctx context.Context, kv jetstream.KeyValue, log *slog.Logger) *routerLeases {
	l := &routerLeases{ttl: members.DefaultTTL, seen: map[string]time.Time{}}
	sctx, cancel := context.WithTimeout(ctx, leasesReadyTimeout)
	if st, err := kv.Status(sctx); err == nil && st.TTL() > 0 {
		l.ttl = st.TTL()
	}
	cancel()
	ready := make(chan struct{})
	var once sync.Once
	go func() {
		_ = retry.Do(ctx, retry.Policy{First: 100 * time.Millisecond, Max: 5 * time.Second}, func(ctx context.Context) error {
			// Every role's: the others' heartbeats say that the bus
			// delivers them.
			w, err := kv.Watch(ctx, "*.*")
			if err != nil {
				return err
			}
			defer func() { _ = w.Stop() }()
			for {
				select {
				case <-ctx.Done():
					return nil
				case e, ok := <-w.Updates():
					if !ok {
						return errWatchEnded
					}
					if e == nil {
						once.Do(func() { close(ready) })
						continue
					}
					l.saw(e)
				}
			}
		}, func(err error, _ time.Duration) {
			log.Warn("watching the routers' leases; watching again", "err", err)
		})
	}()
	select {
	case <-ready:
	case <-ctx.Done():
	case <-time.After(leasesReadyTimeout):
		log.Warn("the routers' leases not read in time: a router not seen yet is judged by its batches alone")
	}
	return l
}

var errWatchEnded = errors.New("watch of the routers' leases ended")

func (l *routerLeases) saw(e jetstream.KeyValueEntry) {
	role, inst, _ := strings.Cut(e.Key(), ".")
	put := e.Operation() == jetstream.KeyValuePut
	l.mu.Lock()
	defer l.mu.Unlock()
	if put {
		l.lastAny = time.Now()
	}
	switch {
	case role != bus.RoleRouter:
	case put:
		l.seen[inst] = l.lastAny
	default:
		l.seen[inst] = time.Time{}
	}
}

// Lease implements Leases.
func (l *routerLeases) Lease(instance string) LeaseState {
	l.mu.Lock()
	defer l.mu.Unlock()
	at, known := l.seen[instance]
	switch since := time.Since(at); {
	case !known:
		return LeaseUnknown
	case at.IsZero():
		return LeaseGone
	case since <= l.ttl/2:
		return LeaseLive
	case since > l.ttl && time.Since(l.lastAny) <= l.ttl/2:
		return LeaseGone
	}
	return LeaseStale
}
