package collector

import (
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/darklaunch/darklaunch/internal/testenv"
	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
	"github.com/darklaunch/darklaunch/shared/members"
)

// TestTwoCollectorsOneClock: two collectors on one experiment of 6
// iterations of 1 s publish each iteration's snapshots once: one clock
// runs, the other collector's none. The owner then goes away mid-way,
// stopped or cut off from NATS as a crash would; the other one takes the
// clock over within the lease's TTL and goes on after the last snapshot
// stored: the stream holds live and dark of 1..6 once each, in order, with
// the right counts.
func TestTwoCollectorsOneClock(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"stopped", "cut off"} {
		t.Run(how, func(t *testing.T) { twoCollectors(t, how == "cut off") })
	}
}

func twoCollectors(t *testing.T, crash bool) {
	const iterations = 6
	const grace = 200 * time.Millisecond
	e, exp, start := newRunning(t, "two", 0, 1, iterations)
	uid := exp.Metadata.UID
	rec := e.record(t, exp)

	cfg := Config{Grace: grace}
	type inst struct {
		svc  *Service
		stop func()
		nc   interface{ Close() }
	}
	var cs [2]inst
	for i := range cs {
		nc := e.NATS.Conn(t)
		c := cfg
		c.Instance = fmt.Sprintf("collector%d", i)
		s, err := New(c, nc, nil)
		if err != nil {
			t.Fatal(err)
		}
		cs[i] = inst{svc: s, stop: testenv.Run(t, s), nc: nc}
	}
	// Both have joined, and see each other, before the experiment exists.
	testenv.Eventually(t, "both collectors' leases", func() (bool, string) {
		ks, err := e.Members.Keys(t.Context())
		return err == nil && len(ks) == 2, fmt.Sprint(ks, err)
	})
	time.Sleep(100 * time.Millisecond) // the watches deliver the leases
	if _, err := e.Store.Create(t.Context(), exp); err != nil {
		t.Fatal(err)
	}
	// After the create: the start-up sweep purges the observations of
	// experiments that do not exist.
	// k live and 2k dark requests in iteration k, in its middle.
	for k := 1; k <= iterations; k++ {
		at := start.Add(time.Duration(k)*time.Second - 500*time.Millisecond)
		e.publishObs(t, exp, observed(uid, bus.RoleLive, at, spread(10, 1, k), 0))
		e.publishObs(t, exp, observed(uid, bus.RoleDark, at, spread(20, 1, 2*k), 0))
	}
	clocks := func(i int) float64 { return testutil.ToFloat64(cs[i].svc.prom.clocks) }
	testenv.Until(t, 2*time.Second, "one clock", func() bool { return clocks(0)+clocks(1) == 1 })
	owner := 0
	if clocks(1) == 1 {
		owner = 1
	}
	other := 1 - owner
	testenv.Until(t, 4*time.Second, "iteration 2", func() bool { return rec.has(bus.RoleDark, 2) })
	if clocks(0)+clocks(1) != 1 {
		t.Fatalf("clocks %v and %v while both collectors run, want one", clocks(0), clocks(1))
	}
	before := func() int { rec.mu.Lock(); defer rec.mu.Unlock(); return len(rec.got) }()

	gone := time.Now()
	if crash {
		cs[owner].nc.Close() // no lease deleted: the bucket's TTL drops it
	} else {
		cs[owner].stop()
	}
	testenv.Until(t, members.DefaultTTL+time.Second, "the other collector's clock", func() bool { return clocks(other) == 1 })
	took := time.Since(gone)
	testenv.Until(t, time.Duration(iterations)*time.Second, "the last iteration", func() bool { return rec.has(bus.RoleDark, iterations) })
	t.Logf("owner collector%d %s; collector%d's clock started %v later", owner, map[bool]string{true: "cut off", false: "stopped"}[crash], other, took.Round(time.Millisecond))
	if took > members.DefaultTTL+members.DefaultTTL/4 {
		t.Errorf("takeover took %v, want within the lease TTL %v (and a sweep)", took, members.DefaultTTL)
	}

	events := e.metricsEvents(t, exp, 2*iterations, nil)
	for i, me := range events {
		k, role := int32(1+i/2), roles[i%2]
		s := me.ev.Snapshot
		if s.Iteration != k || s.Role != role {
			t.Fatalf("event %d is %s k=%d, want %s k=%d", i, s.Role, s.Iteration, role, k)
		}
		want := float64(k * (k + 1) / 2) // cumulative
		if role == bus.RoleDark {
			want *= 2
		}
		if got := val(t, s.Values, "request-count"); got != want {
			t.Errorf("%s k=%d: request-count %v, want %v", role, k, got, want)
		}
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	published := map[string]int{}
	for i, me := range rec.got {
		key := fmt.Sprintf("%s/%d", me.ev.Snapshot.Role, me.ev.Snapshot.Iteration)
		published[key]++
		if i < before && published[key] > 1 {
			t.Errorf("%s published twice while both collectors ran", key)
		}
	}
	dups := 0
	for key, n := range published {
		if n > 1 {
			dups += n - 1
			t.Logf("%s published %d times (the stream kept one)", key, n)
		}
	}
	// The one a takeover may repeat: a live snapshot whose dark one the
	// stopped owner did not publish.
	if dups > 1 {
		t.Errorf("%d publications repeated, want at most 1", dups)
	}
	t.Logf("%d publications of %d snapshots", len(rec.got), 2*iterations)
}

// TestResumeFrom: a clock resumes after the last dark snapshot stored (a
// live one without its dark one is measured again), after the iteration
// the state says completed when that is later, and where the state says
// when the events cannot be read (an older NATS configuration).
func TestResumeFrom(t *testing.T) {
	t.Parallel()
	e, exp, _ := newRunning(t, "resume", 0, 1, 10)
	exp.Status.CompletedIterations = 1
	if _, err := e.Store.Create(t.Context(), exp); err != nil {
		t.Fatal(err)
	}
	r := testRunner(e, &fakeSource{}, Config{})
	r.events = e.Events
	from := func() int32 {
		t.Helper()
		k, ok := r.resumeFrom(t.Context(), exp)
		if !ok {
			t.Fatal("resumeFrom: context ended")
		}
		return k
	}
	if k := from(); k != 2 {
		t.Errorf("nothing stored, 1 completed: from %d, want 2", k)
	}
	publish := func(role string, k int32) {
		t.Helper()
		if !r.publish(t.Context(), r.log, exp, &bus.Snapshot{Iteration: k, Role: role}) {
			t.Fatal("publish")
		}
	}
	publish(bus.RoleLive, 4)
	publish(bus.RoleDark, 4)
	if k := from(); k != 5 {
		t.Errorf("dark 4 stored: from %d, want 5", k)
	}
	publish(bus.RoleLive, 5)
	if k := from(); k != 5 {
		t.Errorf("live 5 stored without its dark one: from %d, want 5", k)
	}
	if _, err := e.Store.Update(t.Context(), "default", "resume", func(x *experiment.Experiment) error {
		x.Status.CompletedIterations = 7
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if k := from(); k != 8 {
		t.Errorf("7 completed: from %d, want 8", k)
	}
	if err := e.JS.DeleteStream(t.Context(), bus.StreamEvents); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	if k := from(); k != 8 {
		t.Errorf("events unreadable, 7 completed: from %d, want 8", k)
	}
	if d := time.Since(began); d > resumeTimeout+3*time.Second {
		t.Errorf("resumed %v after the events became unreadable, want about %v", d, resumeTimeout)
	}
}

// TestRouterLeases: on a real members bucket, a router whose heartbeats
// stop is stale after TTL/2 and gone after the TTL while another router's
// heartbeats go on; once no heartbeat comes at all (the bucket lost in a
// NATS restart) no router is gone, only stale, until another service's
// heartbeat comes; a deleted lease is gone.
func TestRouterLeases(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	put := func(inst string) {
		t.Helper()
		if _, err := e.Members.Put(t.Context(), bus.RoleRouter+"."+inst, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	put("a")
	put("b")
	l := watchRouterLeases(t.Context(), e.Members, slog.New(slog.DiscardHandler))
	ttl := l.ttl
	for _, inst := range []string{"a", "b"} {
		if st := l.Lease(inst); st != LeaseLive {
			t.Fatalf("%s: %v, want live", inst, st)
		}
	}
	if st := l.Lease("never"); st != LeaseUnknown {
		t.Errorf("a router never seen: %v, want unknown", st)
	}
	// b heartbeats every TTL/4; a no more.
	beat := func(until time.Time) {
		for time.Now().Before(until) {
			put("b")
			time.Sleep(ttl / 4)
		}
	}
	began := time.Now()
	beat(began.Add(ttl * 3 / 4))
	if st := l.Lease("a"); st != LeaseStale {
		t.Errorf("a silent for 3/4 TTL: %v, want stale", st)
	}
	beat(began.Add(ttl + ttl/4))
	if st, stb := l.Lease("a"), l.Lease("b"); st != LeaseGone || stb != LeaseLive {
		t.Errorf("a silent for a TTL, b heartbeating: %v and %v, want gone and live", st, stb)
	}
	// Silence all round.
	time.Sleep(ttl * 3 / 4)
	if st, stb := l.Lease("a"), l.Lease("b"); st != LeaseStale || stb != LeaseStale {
		t.Errorf("no heartbeat from anyone: a %v and b %v, want both stale", st, stb)
	}
	// Another service's heartbeats are the bus's too.
	if _, err := e.Members.Put(t.Context(), bus.RoleCollector+".c", []byte("x")); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, "the collector's heartbeat", func() (bool, string) { st := l.Lease("a"); return st == LeaseGone, fmt.Sprint(st) })
	if err := e.Members.Delete(t.Context(), bus.RoleRouter+".b"); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, "b's deletion", func() (bool, string) { st := l.Lease("b"); return st == LeaseGone, fmt.Sprint(st) })
}
