package members_test

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/darklaunch/darklaunch/internal/testenv"
	"github.com/darklaunch/darklaunch/shared/members"
)

const ttl = 600 * time.Millisecond

// bucket is a members bucket with short leases on a server of its own.
func bucket(t *testing.T) (*testenv.NATS, jetstream.KeyValue) {
	t.Helper()
	srv := testenv.StartNATS(t)
	js, err := jetstream.New(srv.Conn(t))
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.CreateOrUpdateKeyValue(t.Context(), members.BucketConfig(ttl, 1))
	if err != nil {
		t.Fatal(err)
	}
	return srv, kv
}

func join(t *testing.T, ctx context.Context, kv jetstream.KeyValue, role, inst string) *members.Group {
	t.Helper()
	g, err := members.Join(ctx, members.Config{KV: kv, Role: role, Instance: inst, TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func waitMembers(t *testing.T, g *members.Group, want ...string) {
	t.Helper()
	testenv.EventuallyWithin(t, 5*time.Second, g.Instance()+" sees "+fmt.Sprint(want), func() (bool, string) {
		got := g.Members()
		return slices.Equal(got, want), fmt.Sprint(got)
	})
}

func TestGroupSeesJoinsLeavesAndDeaths(t *testing.T) {
	_, kv := bucket(t)
	a := join(t, t.Context(), kv, "loadgen", "a")
	b := join(t, t.Context(), kv, "loadgen", "b")
	cctx, kill := context.WithCancel(t.Context())
	c := join(t, cctx, kv, "loadgen", "c")
	// Another role's instance is not a member.
	join(t, t.Context(), kv, "collector", "x")
	for _, g := range []*members.Group{a, b, c} {
		waitMembers(t, g, "a", "b", "c")
	}
	if i, n := b.Share(); i != 1 || n != 3 {
		t.Fatalf("b's share = %d of %d, want 1 of 3", i, n)
	}

	// A graceful stop is seen at once (its key deleted), long before a TTL.
	start := time.Now()
	b.Leave(context.Background())
	waitMembers(t, a, "a", "c")
	if d := time.Since(start); d > ttl {
		t.Errorf("a left instance seen gone after %s, want well within the TTL %s", d, ttl)
	}

	// A dead one (no delete, no more heartbeats) within about a TTL.
	start = time.Now()
	kill()
	waitMembers(t, a, "a")
	if d := time.Since(start); d < ttl/2 || d > 3*ttl {
		t.Errorf("a dead instance seen gone after %s, want about the TTL %s", d, ttl)
	}
	if i, n := a.Share(); i != 0 || n != 1 {
		t.Fatalf("a's share = %d of %d, want 0 of 1", i, n)
	}
}

func TestOwnersAgreeAndMoveOnlyWhatTheyMust(t *testing.T) {
	_, kv := bucket(t)
	var gs []*members.Group
	for _, n := range []string{"a", "b", "c"} {
		gs = append(gs, join(t, t.Context(), kv, "collector", n))
	}
	for _, g := range gs {
		waitMembers(t, g, "a", "b", "c")
	}
	keys := make([]string, 300)
	per := map[string]int{}
	before := map[string]string{}
	for i := range keys {
		keys[i] = fmt.Sprintf("ns.exp-%d", i)
		o := gs[0].Owner(keys[i])
		for _, g := range gs[1:] {
			if g.Owner(keys[i]) != o {
				t.Fatalf("%s: instances disagree on its owner", keys[i])
			}
		}
		per[o]++
		before[keys[i]] = o
	}
	for _, n := range []string{"a", "b", "c"} {
		// 100 expected each; 3 sigma of a binomial(300, 1/3) is 24.
		if per[n] < 70 || per[n] > 130 {
			t.Errorf("%s owns %d of 300 keys, want about 100: %v", n, per[n], per)
		}
	}
	gs[1].Leave(context.Background())
	waitMembers(t, gs[0], "a", "c")
	for _, k := range keys {
		if o := gs[0].Owner(k); before[k] != "b" && o != before[k] {
			t.Fatalf("%s moved from %s to %s though its owner stayed", k, before[k], o)
		}
	}
}

func TestWhileRunsOnTheOwnerOnly(t *testing.T) {
	_, kv := bucket(t)
	var running atomic.Int32
	var starts atomic.Int32
	work := func(ctx context.Context) {
		running.Add(1)
		starts.Add(1)
		<-ctx.Done()
		running.Add(-1)
	}
	actx, killA := context.WithCancel(t.Context())
	defer killA()
	a := join(t, actx, kv, "collector", "a")
	b := join(t, t.Context(), kv, "collector", "b")
	waitMembers(t, a, "a", "b")
	waitMembers(t, b, "a", "b")
	key := "ns.x"
	owner, other := a, b
	if b.Owns(key) {
		owner, other = b, a
	}
	go a.While(actx, key, work)
	go b.While(t.Context(), key, work)
	testenv.Until(t, 2*time.Second, "the owner works", func() bool { return running.Load() == 1 })
	time.Sleep(ttl)
	if n := running.Load(); n != 1 {
		t.Fatalf("%d instances work on one key, want 1", n)
	}
	// The owner goes: the other takes the work over.
	if owner == a {
		killA()
	} else {
		owner.Leave(context.Background())
	}
	testenv.Until(t, 5*time.Second, "the other takes over", func() bool { return other.Owns(key) && starts.Load() == 2 })
	testenv.Until(t, 2*time.Second, "one at work", func() bool { return running.Load() == 1 })
}

func TestSilentBusChangesNothing(t *testing.T) {
	srv, kv := bucket(t)
	a := join(t, t.Context(), kv, "loadgen", "a")
	join(t, t.Context(), kv, "loadgen", "b")
	waitMembers(t, a, "a", "b")
	// With the server gone nobody's heartbeats come back, a's own neither:
	// a cannot tell b dead from the bus silent, and keeps b.
	srv.Stop()
	time.Sleep(3 * ttl)
	if got := a.Members(); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("a sees %v while the bus is down, want [a b] kept", got)
	}
}

func TestJoinRejectsBadNames(t *testing.T) {
	_, kv := bucket(t)
	for _, inst := range []string{"", "a.b", "a b", "*"} {
		if _, err := members.Join(t.Context(), members.Config{KV: kv, Role: "loadgen", Instance: inst}); err == nil {
			t.Errorf("Join(instance %q) succeeded, want an error", inst)
		}
	}
}

// TestJoinerCountsADeadLeaseFromItsLastHeartbeat: a lease whose instance
// died before a new one joined is counted from its last heartbeat, as the
// instances that watched it die count it, not from the join: the joiner
// counts it gone when they do, instead of a TTL after it joined.
func TestJoinerCountsADeadLeaseFromItsLastHeartbeat(t *testing.T) {
	_, kv := bucket(t)
	if _, err := kv.Put(t.Context(), "loadgen.ghost", []byte(time.Now().UTC().Format(time.RFC3339Nano))); err != nil {
		t.Fatal(err)
	}
	time.Sleep(ttl / 2)
	joined := time.Now()
	a := join(t, t.Context(), kv, "loadgen", "a")
	waitMembers(t, a, "a", "ghost")
	waitMembers(t, a, "a")
	// Gone at the ghost's heartbeat + TTL (+ a sweep of TTL/4): half a TTL
	// or so after the join; a TTL at least if counted from the join.
	if d := time.Since(joined); d >= ttl {
		t.Errorf("the dead lease counted gone %v after the join, want by its own heartbeat + TTL (about %v)", d, ttl/2)
	}
}
