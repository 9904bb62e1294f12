// Package members tells the instances of one darklaunch service about each
// other, so that they can divide their work: loadgen instances share an
// experiment's rate (Share), collector instances give each experiment one
// clock (Owns, While).
//
// It is a lease per instance in a JetStream KV bucket (BucketMembers), not a
// consensus of our own: every instance puts its key <role>.<instance> every
// TTL/4 and deletes it when it stops; the bucket's MaxAge drops the key of
// an instance that died, and every instance watches the role's keys. An
// instance that has seen nothing of another for a TTL, while its own
// heartbeats still come back, counts it gone. While its own heartbeats do
// not come back (NATS is electing a leader, the connection is down) it
// changes nothing: it cannot tell a dead peer from a silent bus, and
// taking a peer's share on a silent bus would double the work.
package members

import (
	"context"
	"errors"
	"hash/fnv"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// BucketMembers is the KV bucket of the leases, key <role>.<instance>.
const BucketMembers = "darklaunch-members"

// DefaultTTL is how long a silent instance keeps its place.
const DefaultTTL = 3 * time.Second

// BucketConfig is the bucket's configuration for instances with leases of
// ttl (DefaultTTL if zero), replicated replicas times. On file, not in
// memory: a NATS restart keeps the leases (a bucket in memory was gone
// after one, and nobody made it again until the judge restarted), and a
// lease is only a few puts a second.
func BucketConfig(ttl time.Duration, replicas int) jetstream.KeyValueConfig {
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	return jetstream.KeyValueConfig{
		Bucket:      BucketMembers,
		Description: "darklaunch service instances (leases)",
		History:     1,
		TTL:         ttl,
		Storage:     jetstream.FileStorage,
		Replicas:    max(replicas, 1),
	}
}

// Config configures Join.
type Config struct {
	// KV is the members bucket (BucketConfig).
	KV jetstream.KeyValue
	// Role is the service (bus.RoleLoadgen, ...): instances of one role
	// see each other only.
	Role string
	// Instance names this instance; unique within the role.
	Instance string
	// TTL is how long an instance that stopped heartbeating keeps its
	// place. Default DefaultTTL; it should be the bucket's.
	TTL time.Duration
	// Log receives warnings. Default: discarded.
	Log *slog.Logger
}

// Group is one instance's view of its role's instances.
type Group struct {
	cfg Config
	key string

	mu       sync.Mutex
	seen     map[string]time.Time // instance → when its last heartbeat was seen
	members  []string             // sorted; always holds this instance
	changed  chan struct{}        // closed at the next change of members
	stopping bool

	stop context.CancelFunc
	done sync.WaitGroup
}

// Join starts heartbeating and watching until ctx ends or Leave is called.
// The group holds this instance from the start, and the others once the
// watch has delivered them.
func Join(ctx context.Context, cfg Config) (*Group, error) {
	if cfg.KV == nil || cfg.Role == "" || cfg.Instance == "" {
		return nil, errors.New("members: Join needs a bucket, a role and an instance name")
	}
	if strings.ContainsAny(cfg.Instance, ".*> \t") {
		return nil, errors.New("members: instance name " + cfg.Instance + " must not hold '.', '*', '>' or spaces")
	}
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	g := &Group{cfg: cfg, key: cfg.Role + "." + cfg.Instance, seen: map[string]time.Time{},
		members: []string{cfg.Instance}, changed: make(chan struct{})}
	// The watch goes first: the first heartbeat then comes back on it.
	w, err := cfg.KV.Watch(ctx, cfg.Role+".*")
	if err != nil {
		return nil, err
	}
	ctx, g.stop = context.WithCancel(ctx)
	g.done.Go(func() { g.heartbeat(ctx) })
	g.done.Go(func() { g.watch(ctx, w) })
	return g, nil
}

// Instance is this instance's name.
func (g *Group) Instance() string { return g.cfg.Instance }

// Members are the live instances, sorted by name.
func (g *Group) Members() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.members)
}

// Changed is closed at the next change of Members.
func (g *Group) Changed() <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.changed
}

// Share is this instance's place among the live ones: index i of n, for a
// split of work by i mod n that the instances agree on whenever their
// views agree. After Leave it is 0 of 0.
func (g *Group) Share() (index, n int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stopping {
		return 0, 0
	}
	i, _ := slices.BinarySearch(g.members, g.cfg.Instance)
	return i, len(g.members)
}

// Owner is the live instance that owns key: the one of highest rendezvous
// hash (Thaler and Ravishankar, "Using name-based mappings to increase hit
// rates", 1998), so that a change of members moves only the keys of the
// instance that left or the share of the one that joined.
func (g *Group) Owner(key string) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return owner(g.members, key)
}

func owner(members []string, key string) string {
	var best string
	var bestScore uint64
	for _, m := range members {
		h := fnv.New64a()
		_, _ = h.Write([]byte(m))
		_, _ = h.Write([]byte{0})
		_, _ = h.Write([]byte(key))
		// fnv's last bytes mix weakly into its high bits: finish it
		// (splitmix64's finalizer).
		s := mix(h.Sum64())
		if best == "" || s > bestScore || (s == bestScore && m < best) {
			best, bestScore = m, s
		}
	}
	return best
}

func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// Owns says whether this instance owns key now.
func (g *Group) Owns(key string) bool { return g.Owner(key) == g.cfg.Instance }

// While runs work for key whenever this instance owns it, until ctx ends:
// work's context ends when the ownership moves to another instance, and
// work starts again if it comes back. It returns when ctx has ended and
// work has returned.
func (g *Group) While(ctx context.Context, key string, work func(ctx context.Context)) {
	for ctx.Err() == nil {
		changed := g.Changed()
		if !g.Owns(key) {
			select {
			case <-ctx.Done():
			case <-changed:
			}
			continue
		}
		if g.owned(ctx, key, work) {
			// Done on its own: the work is not started again until
			// ownership moves away and back.
			g.waitMoved(ctx, key)
		}
	}
}

// owned runs work while this instance owns key and ctx lasts, and says
// whether work returned on its own.
func (g *Group) owned(ctx context.Context, key string, work func(ctx context.Context)) (finishedFirst bool) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		work(wctx)
	}()
	for {
		changed := g.Changed()
		if !g.Owns(key) {
			break
		}
		select {
		case <-finished:
			return true
		case <-ctx.Done():
		case <-changed:
			continue
		}
		break
	}
	cancel()
	<-finished
	return false
}

// waitMoved waits until this instance no longer owns key, or ctx ends.
func (g *Group) waitMoved(ctx context.Context, key string) {
	for ctx.Err() == nil && g.Owns(key) {
		select {
		case <-ctx.Done():
		case <-g.Changed():
		}
	}
}

// Leave stops heartbeating and deletes this instance's key, so that the
// others take its work at once instead of after a TTL.
func (g *Group) Leave(ctx context.Context) {
	g.mu.Lock()
	// A left instance is no member, not even of its own view: it owns
	// nothing, and its While calls stop their work.
	g.stopping = true
	g.members = nil
	close(g.changed)
	g.changed = make(chan struct{})
	g.mu.Unlock()
	g.stop()
	g.done.Wait()
	if err := g.cfg.KV.Delete(ctx, g.key); err != nil {
		g.cfg.Log.Warn("members: delete lease", "key", g.key, "err", err)
	}
}

func (g *Group) heartbeat(ctx context.Context) {
	tick := time.NewTicker(g.cfg.TTL / 4)
	defer tick.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, g.cfg.TTL/2)
		if _, err := g.cfg.KV.Put(pctx, g.key, []byte(time.Now().UTC().Format(time.RFC3339Nano))); err != nil && ctx.Err() == nil {
			g.cfg.Log.Warn("members: heartbeat", "key", g.key, "err", err)
		}
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (g *Group) watch(ctx context.Context, w jetstream.KeyWatcher) {
	defer func() { _ = w.Stop() }()
	sweep := time.NewTicker(g.cfg.TTL / 4)
	defer sweep.Stop()
	initial := true // the watch delivers the current leases first, then nil
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-w.Updates():
			if !ok {
				// The watch ended (its consumer lost for good): watch again.
				nw, err := g.cfg.KV.Watch(ctx, g.cfg.Role+".*")
				if err != nil {
					if ctx.Err() == nil {
						g.cfg.Log.Warn("members: watch", "err", err)
					}
					return
				}
				_ = w.Stop()
				w, initial = nw, true
				continue
			}
			if e == nil {
				initial = false
				continue
			}
			g.saw(e, initial)
		case <-sweep.C:
			g.sweep(time.Now())
		}
	}
}

// saw records a watched heartbeat or deletion. A heartbeat the watch
// delivers among the current leases (initial) is as old as its entry: an
// instance that died before this one watched is then counted gone when the
// others, which watched it die, count it gone, not a TTL after this one
// joined, which would divide the work differently meanwhile. The server's
// clock is not this one's: the entry's time counts only within the last
// TTL, and never as later than now.
func (g *Group) saw(e jetstream.KeyValueEntry, initial bool) {
	inst := strings.TrimPrefix(e.Key(), g.cfg.Role+".")
	at := time.Now()
	if c := e.Created(); initial && c.Before(at) {
		at = later(c, at.Add(-g.cfg.TTL))
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if e.Operation() == jetstream.KeyValuePut {
		g.seen[inst] = at
	} else if inst != g.cfg.Instance {
		delete(g.seen, inst)
	}
	g.update()
}

// sweep forgets the instances not seen for a TTL, provided this one's own
// heartbeats are coming back.
func (g *Group) sweep(now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if now.Sub(g.seen[g.cfg.Instance]) > g.cfg.TTL/2 {
		return
	}
	for inst, at := range g.seen {
		if now.Sub(at) > g.cfg.TTL {
			delete(g.seen, inst)
		}
	}
	g.update()
}

// update recomputes members from seen, with g.mu held.
func (g *Group) update() {
	if g.stopping {
		return
	}
	ms := []string{g.cfg.Instance}
	for inst := range g.seen {
		if inst != g.cfg.Instance {
			ms = append(ms, inst)
		}
	}
	slices.Sort(ms)
	if slices.Equal(ms, g.members) {
		return
	}
	g.members = ms
	close(g.changed)
	g.changed = make(chan struct{})
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
