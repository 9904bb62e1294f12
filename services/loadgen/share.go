package loadgen

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
	"github.com/darklaunch/darklaunch/shared/members"
)

// Sharing the rate. The loadgen instances on a bus hold leases in the
// members bucket (shared/members, role loadgen); each numbers an
// experiment's requests alike, slot i due at startTime + delay + i/rate,
// and sends the slots i with i mod n == index, where index of n is its
// place among the live instances (Group.Share), asked when each slot is
// due. So n instances together send the schedule of one, each a share:
// without coordination beyond the leases, and with neither a gap nor a
// double send while their views of the members agree.
//
// A change of members moves the slots due from the moment each instance
// sees it: an instance that stops leaves (deletes its lease) and the others
// see it within a watch's delivery, a few milliseconds; one that dies is
// counted gone by the others after its TTL without a heartbeat (checked
// every TTL/4), so its share is not sent for up to 1¼ TTL; one that joins
// first waits (up to a TTL) until it sees the leases already there, so that
// it does not send the whole rate meanwhile. The join comes after the
// watch of the experiments is up; a traffic due before the join is done
// waits for it, and then sends the slots due meanwhile at once. Between two
// instances' views of one change (a watch's delivery apart) a slot can go
// twice or not at all. A loadgen that cannot join (no bucket, a bad
// instance name) sends the whole rate, as a single one does.

// join makes this loadgen one of the instances that share every
// experiment's rate until ctx ends; nil when it cannot join.
func (s *Service) join(ctx context.Context, kv jetstream.KeyValue) *members.Group {
	if kv == nil {
		s.log.Error("no members bucket: not sharing the rate with other loadgen instances, this one sends all of it")
		return nil
	}
	g, err := members.Join(ctx, members.Config{KV: kv, Role: bus.RoleLoadgen, Instance: s.cfg.Instance, TTL: s.cfg.MemberTTL, Log: s.log})
	if err != nil {
		s.log.Error("not sharing the rate with other loadgen instances, this one sends all of it", "err", err)
		return nil
	}
	settle(ctx, g, kv, s.cfg.MemberTTL)
	index, n := g.Share()
	s.log.Info("sharing the rate with the other loadgen instances", "members", g.Members(), "index", index, "of", n)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-g.Changed():
			}
			if ctx.Err() != nil {
				return
			}
			index, n := g.Share()
			s.log.Info("loadgen instances changed: the rate is shared anew", "members", g.Members(), "index", index, "of", n)
		}
	}()
	return g
}

// waitWatching waits, for up to max, until the watch of the experiments is
// up.
func (s *Service) waitWatching(ctx context.Context, max time.Duration) {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(max)
	for s.ready.Ready() != nil {
		select {
		case <-ctx.Done():
			return
		case <-deadline:
			return
		case <-tick.C:
		}
	}
}

// settle waits, for up to ttl, until g holds every lease of the role that
// the bucket holds now: a new instance's group holds only itself until its
// watch has delivered the others.
func settle(ctx context.Context, g *members.Group, kv jetstream.KeyValue, ttl time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, ttl)
	defer cancel()
	var want []string
	if l, err := kv.ListKeysFiltered(ctx, bus.RoleLoadgen+".*"); err == nil {
		for k := range l.Keys() {
			want = append(want, strings.TrimPrefix(k, bus.RoleLoadgen+"."))
		}
	}
	for {
		changed, have := g.Changed(), g.Members()
		if !slices.ContainsFunc(want, func(m string) bool { return !slices.Contains(have, m) }) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

// share is this instance's share of the traffic now (index of n); 0 of 1
// when it shares nothing. Only once r.joined is closed.
func (r *runner) share() (index, n int) {
	if r.group == nil {
		return 0, 1
	}
	return r.group.Share()
}

// resumption is when a traffic goes on from status.load, the totals of the
// last report the judge stored: at once when this instance sends the rate
// alone; when it shares it, only if a report finds it alone by the first
// report after until (1½ TTL after the start), since the others it saw at
// the start were then the leases of dead instances (a loadgen restarted
// under a new name sees its old lease for up to a TTL), not instances that
// count their shares in reports of their own.
//
// Once several shared the rate, status.load keeps each instance's latest
// report (Shares) and the judge sums them: an instance goes on from its
// own report only, at once (a loadgen restarted under its own name, the
// chart's pod name), and from nothing under a new name; the others'
// reports stay counted where they are.
type resumption struct {
	last     *experiment.LoadStatus
	until    time.Time
	instance string
}

// ready returns, once, the totals to go on from, if it is time to.
func (p *resumption) ready(alone bool, now time.Time) *experiment.LoadStatus {
	last := p.last
	switch {
	case last == nil:
		return nil
	case len(last.Shares) > 0:
		p.last = nil
		own, ok := last.Shares[p.instance]
		if !ok {
			return nil
		}
		w := own.Window
		ls := &experiment.LoadStatus{Sent: own.Sent, Succeeded: own.Succeeded, Failed: own.Failed, Canceled: own.Canceled,
			AchievedRate: own.AchievedRate, Answered: own.Answered}
		if w.Iteration > 0 {
			ls.Window = &w
		}
		return ls
	case alone:
		p.last = nil
		return last
	case now.After(p.until):
		p.last = nil
	}
	return nil
}
