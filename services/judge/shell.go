package judge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/darklaunch/darklaunch/shared"
	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

// The shell around Step: read the stored state, step, store by
// compare-and-swap, publish. Events (consume.go) and the watchdog
// (watchdog.go) go through handle; the API (api.go) through commit, since a
// request has its own replies and its own undo.

// maxCommitAttempts bounds the compare-and-swap retries of one fact.
const maxCommitAttempts = 20

// committed is a Result as it was stored.
type committed struct {
	Result
	// prev is the experiment stepped on (nil: none, or a damaged entry) and
	// rev the revision the result was stored at (the one read when nothing
	// was written).
	prev *experiment.Experiment
	rev  uint64
	// damaged is why the entry read did not decode, when a Create or Delete
	// replaced or removed it.
	damaged error
}

// commit steps in on the stored experiment ref names and stores the result
// by compare-and-swap on the revision it read. When another writer got there
// first, it steps again on a fresh read, except for a create: a create that
// raced another is refused rather than judged again. A Result.Err is
// returned as the error, with nothing stored.
func (s *Service) commit(ctx context.Context, ref bus.Ref, in Input) (committed, error) {
	_, isCreate := in.(Create)
	_, isDelete := in.(Delete)
	// Only an event or a tick steps on the cached state (stateCache); a
	// create or a delete reads the bucket, and the entry is dropped.
	cached, fromCache := s.cache.get(ref)
	if isCreate || isDelete {
		s.cache.drop(ref)
		fromCache = false
	}
	for attempt := 1; ; attempt++ {
		c := committed{}
		step := in
		var cur *experiment.Experiment
		var rev uint64
		var err error
		if fromCache {
			cur, rev = cached.exp, cached.rev
		} else {
			cur, rev, err = s.store.Get(ctx, ref.Namespace, ref.Name)
		}
		switch {
		case errors.Is(err, shared.ErrNotFound):
			cur, rev = nil, 0
		case errors.Is(err, bus.ErrUndecodable):
			// A damaged entry is no run: a create takes its key, a delete
			// removes it; for everything else it is an error.
			switch x := in.(type) {
			case Create:
				x.Damaged = rev
				step = x
			case Delete:
				x.Damaged = rev
				step = x
			default:
				return c, err
			}
			cur, c.damaged = nil, err
		case err != nil:
			return c, fmt.Errorf("read experiment %s: %w", ref, err)
		}
		c.Result, c.prev, c.rev = Step(cur, step, s.now(), s.limits()), cur, rev
		if c.Err != nil {
			return c, c.Err
		}
		if fromCache && c.Next == nil && !c.Remove {
			// Nothing to write, so nothing checks the guess: step again
			// on the stored state.
			fromCache = false
			continue
		}
		c.rev, err = s.write(ctx, ref, c.Result, rev)
		if errors.Is(err, shared.ErrConflict) && fromCache {
			fromCache = false // someone wrote since: read what they wrote
			s.cache.drop(ref)
			continue
		}
		if errors.Is(err, shared.ErrConflict) && !isCreate && attempt < maxCommitAttempts {
			continue
		}
		if err != nil {
			s.cache.drop(ref)
			return c, err
		}
		if !isCreate && !isDelete {
			s.cache.put(ref, c.Result.state(cur), c.rev)
		}
		return c, nil
	}
}

// write stores what res says at revision rev (0: the key must be new) and
// returns the revision written.
func (s *Service) write(ctx context.Context, ref bus.Ref, res Result, rev uint64) (uint64, error) {
	var err error
	switch {
	case res.Remove:
		if err = s.store.Delete(ctx, ref.Namespace, ref.Name, rev); err != nil {
			return 0, fmt.Errorf("delete experiment %s: %w", ref, err)
		}
		return rev, nil
	case res.Next == nil:
		return rev, nil
	case rev == 0:
		rev, err = s.store.Create(ctx, res.Next)
	default:
		rev, err = s.store.Replace(ctx, res.Next, rev)
	}
	if err != nil {
		return 0, fmt.Errorf("store experiment %s: %w", ref, err)
	}
	return rev, nil
}

// restore undoes a commit whose outputs could not be published, by
// compare-and-swap on the revision it wrote: the state it replaced is put
// back, or the key it created deleted.
func (s *Service) restore(ctx context.Context, ref bus.Ref, c committed) error {
	s.cache.drop(ref)
	if c.prev == nil {
		return s.store.Delete(ctx, ref.Namespace, ref.Name, c.rev)
	}
	_, err := s.store.Replace(ctx, c.prev, c.rev)
	return err
}

// handle applies one fact about a run and publishes its outputs, whether it
// changed the state or had been applied already: see machine.go.
func (s *Service) handle(ctx context.Context, ref bus.Ref, in Input, log *slog.Logger) error {
	c, err := s.commit(ctx, ref, in)
	if err != nil {
		return err
	}
	s.record(log, c.Result)
	if err := s.publish(ctx, c.Out); err != nil {
		s.cache.drop(ref)
		return err
	}
	return nil
}

// publish sends events in order, each with its Msg-Id, so a republish after
// a crash is dropped by the stream as a duplicate.
func (s *Service) publish(ctx context.Context, out []Output) error {
	for _, o := range out {
		if err := bus.Publish(ctx, s.js, o.Event, o.MsgID); err != nil {
			return err
		}
	}
	return nil
}

// record logs a stored result's notes and counts its change.
func (s *Service) record(log *slog.Logger, res Result) {
	for _, n := range res.Notes {
		log.Log(context.Background(), n.Level, n.Msg, n.Args...)
	}
	if res.Count.Created {
		s.prom.created.Inc()
	}
	if res.Count.Iteration {
		s.prom.iterations.Inc()
	}
	if res.Count.Finished != "" {
		s.prom.finished.WithLabelValues(res.Count.Finished).Inc()
	}
}

func (s *Service) limits() Limits {
	return Limits{InitTimeout: s.cfg.InitTimeout, MetricsTimeout: s.cfg.MetricsTimeout}
}
