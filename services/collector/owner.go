package collector

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
	"github.com/darklaunch/darklaunch/shared/retry"
)

// Any number of collectors may run; each experiment gets one clock among
// them. The collectors hold leases in the members bucket (shared/members,
// role collector) and the owner of an experiment's UID by rendezvous
// hashing runs its clock (members.Group.While); when the owner leaves (a
// stop deletes its lease at once) or dies (its lease is dropped after the
// bucket's TTL), the UID moves to another collector, which resumes the
// clock after the last snapshot stored (resumeFrom). Two collectors whose
// views of the members disagree for a moment may both measure an
// iteration: the snapshot's Msg-Id (<uid>.metrics.<role>.<k>) makes the
// stream keep the first one only. Everything else a collector does (the
// start-up purge, the purge of a deleted run) is idempotent and done by
// every collector.

// ownedClock runs exp's clock while this collector owns exp's UID, or
// always without a group.
func (r *runner) ownedClock(ctx context.Context, exp *experiment.Experiment) {
	run := func(ctx context.Context) {
		if from, ok := r.resumeFrom(ctx, exp); ok {
			r.clock(ctx, exp, from)
		}
	}
	if r.group == nil {
		run(ctx)
		return
	}
	r.group.While(ctx, exp.Metadata.UID, run)
}

// resumeTimeout bounds the search for the last snapshot stored; past it
// the clock resumes where the state says (an older NATS configuration may
// not let the collector read single events).
const resumeTimeout = 5 * time.Second

// resumeFrom is the first iteration exp's clock must measure now: after
// the last dark snapshot stored (every iteration's last), so that a
// collector taking the clock over from another one goes on where it
// stopped, however long ago that was (the stream's duplicate window is 10
// minutes), and after the one the state says completed. A live snapshot
// stored without its dark one is measured again (the stream drops the
// second). ok is false when ctx ended first.
func (r *runner) resumeFrom(ctx context.Context, exp *experiment.Experiment) (int32, bool) {
	from := exp.Status.CompletedIterations + 1
	if r.store != nil {
		// The task's exp is the state its clock started with.
		if cur, _, err := r.store.Get(ctx, exp.Metadata.Namespace, exp.Metadata.Name); err == nil && cur.Metadata.UID == exp.Metadata.UID {
			from = max(from, cur.Status.CompletedIterations+1)
		}
	}
	k, err := retry.Value(ctx, retry.Policy{First: 100 * time.Millisecond, Max: time.Second, Within: resumeTimeout}, func(ctx context.Context) (int32, error) {
		return r.lastStored(ctx, exp)
	}, func(err error, _ time.Duration) {
		r.log.Debug("last snapshot stored not readable; trying again", "experiment", exp.Key(), "err", err)
	})
	switch {
	case ctx.Err() != nil:
		return 0, false
	case err != nil:
		r.log.Warn("last snapshot stored not readable: resuming after the iteration the state says completed", "experiment", exp.Key(), "from", from, "err", err)
		return from, true
	}
	return max(from, k+1), true
}

// lastStored is the iteration of the last dark snapshot of exp's run
// stored in the events stream, 0 for none.
func (r *runner) lastStored(ctx context.Context, exp *experiment.Experiment) (int32, error) {
	if r.events == nil {
		return 0, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	m, err := r.events.GetLastMsgForSubject(ctx, bus.EventSubject(exp.Metadata.Namespace, exp.Metadata.Name, bus.EventMetrics))
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return 0, nil
	case err != nil:
		return 0, err
	}
	var ev bus.Event
	if err := bus.Unmarshal(m.Header.Get(bus.HeaderContentType), m.Data, &ev); err != nil || ev.Snapshot == nil {
		return 0, nil // not ours to judge: measure from the state's count
	}
	switch {
	case ev.UID != exp.Metadata.UID:
		return 0, nil // an older run of the same name
	case ev.Snapshot.Role == bus.RoleDark:
		return ev.Snapshot.Iteration, nil
	default:
		return ev.Snapshot.Iteration - 1, nil
	}
}
