package collector

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/darklaunch/darklaunch/shared"
	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
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

// resumeFrom is the first iteration exp's clock must measure now: after
// the one the state says completed and after the last dark snapshot
// stored (every iteration's last), so that a collector taking the clock
// over from another one goes on where it stopped, however long ago that
// was (the stream's duplicate window is 10 minutes). A live snapshot
// stored without its dark one is measured again (the stream drops the
// second). ok is false when ctx ended first.
func (r *runner) resumeFrom(ctx context.Context, exp *experiment.Experiment) (int32, bool) {
	from := exp.Status.CompletedIterations + 1
	for ctx.Err() == nil {
		k, err := r.lastStored(ctx, exp)
		if err == nil {
			return max(from, k+1), true
		}
		r.log.Warn("last snapshot stored not readable; trying again", "experiment", exp.Key(), "err", err)
		shared.SleepUntil(ctx, time.Now().Add(time.Second))
	}
	return 0, false
}

// lastStored is the iteration of the last dark snapshot of exp's run
// stored in the events stream, 0 for none.
func (r *runner) lastStored(ctx context.Context, exp *experiment.Experiment) (int32, error) {
	if r.events == nil {
		return 0, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
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
