package router

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/darklaunch/darklaunch/services/router/mirroring"
	"github.com/darklaunch/darklaunch/shared"
	"github.com/darklaunch/darklaunch/shared/experiment"
	"github.com/darklaunch/darklaunch/shared/retry"
)

// A host is mirrored for one experiment at a time, and a backend refuses a
// host that another run's routing holds (mirroring.HostHeld). That refusal
// is final only while the holding run goes on. A run that has ended keeps
// its host a little longer: its teardown runs in the background, and it may
// have ended in a way this router has not seen yet (the watch delivers the
// keys' changes one by one; a router restarted since the holder was
// deleted never sees that deletion). So when Setup is refused, the Service
// finds out how the holder stands: being torn down here, wait for that;
// completed or deleted in the state, tear it down; and then set up again,
// for up to InitTimeout in all. A holder that goes on (it runs, or is being
// set up) is looked at again for holderGrace, then the refusal stands.

// holderGrace is how long a host held by a run that goes on is watched for
// that run's end before the refusal stands: a delete sent at the same
// moment as the create (the judge may store the create first) lands well
// within it, and a refusal is no worse for coming a second later.
const holderGrace = time.Second

// handoverFirst is the first pause before Setup is tried again on a held
// host; it doubles up to InitInterval. A teardown's end wakes the wait at
// once.
const handoverFirst = 10 * time.Millisecond

// errHolderRuns says that the run holding the host goes on.
var errHolderRuns = errors.New("the experiment holding the host goes on")

// ending is a teardown under way; done is closed when it has returned.
type ending struct {
	uid  string
	done chan struct{}
}

// setup is the backend's Setup of e, handing the host over from a run that
// has ended (see above).
func (s *Service) setup(ctx context.Context, e *experiment.Experiment) (experiment.RoutingStatus, error) {
	start := time.Now()
	grace := min(holderGrace, s.cfg.InitTimeout)
	pause := retry.Policy{First: handoverFirst, Max: s.cfg.InitInterval}
	logged, woken := false, false
	for n := 1; ; n++ {
		status, err := s.backend.Setup(ctx, e)
		var held *mirroring.HostHeld
		if !errors.As(err, &held) || held.Holder == nil || ctx.Err() != nil {
			return status, err
		}
		done, why := s.handOver(ctx, held.Holder)
		bound := s.cfg.InitTimeout
		switch waited := time.Since(start); {
		case errors.Is(why, errHolderRuns):
			if waited >= grace {
				return status, err
			}
			bound = grace
		case waited >= bound:
			if why == nil {
				why = errors.New("its routing was not removed in time")
			}
			return status, fmt.Errorf("%w; waited %s for that experiment's routing to go: %v", err, bound, why)
		case !logged:
			s.log.Info("host held by an experiment that has ended; waiting for its routing to go", "experiment", e.Key(), "holder", held.Holder.Key(), "holderUID", held.Holder.Metadata.UID)
			logged = true
		}
		if woken {
			// A teardown ended and the host is still held: it failed. Try
			// again at the pace of the pauses, not as fast as it fails.
			done = nil
		}
		t := time.NewTimer(max(0, min(pause.Wait(n), bound-time.Since(start))))
		select {
		case <-ctx.Done():
			t.Stop()
			return status, err
		case <-done:
			woken = true
		case <-t.C:
		}
		t.Stop()
	}
}

// handOver makes sure the routing of holder, a run that holds a host
// another run asks for, is being removed if that run has ended, and
// returns what is closed once it is. errHolderRuns: holder goes on; another
// error: its state could not be read now (try again).
func (s *Service) handOver(ctx context.Context, holder *experiment.Experiment) (<-chan struct{}, error) {
	if done := s.underWay(holder.Key(), holder.Metadata.UID); done != nil {
		return done, nil
	}
	cur, _, err := s.store.Get(ctx, holder.Metadata.Namespace, holder.Metadata.Name)
	switch {
	case errors.Is(err, shared.ErrNotFound):
		// Deleted: holder is all there is to tear down.
	case err != nil:
		return nil, fmt.Errorf("reading the state of %s: %w", holder.Key(), err)
	case holder.Metadata.UID != "" && cur.Metadata.UID != holder.Metadata.UID:
		// Replaced by a new run of that name: the holder run is gone.
	case cur.Status.Terminal():
		// Completed (with KeepRouting, its routing would have stayed until
		// the deletion: a new experiment on its host ends that).
		holder = cur
	default:
		return nil, errHolderRuns
	}
	return s.teardown(holder), nil
}

// teardown removes the experiment's routing in the background: it waits
// for copies in flight, which must hold up neither the watch nor the
// experiment's task. A teardown of the same run already under way is not
// started again; the returned channel is closed once it has returned.
func (s *Service) teardown(e *experiment.Experiment) <-chan struct{} {
	key, uid := e.Key(), e.Metadata.UID
	s.mu.Lock()
	defer s.mu.Unlock()
	if done := s.underWayLocked(key, uid); done != nil {
		return done
	}
	run := &ending{uid: uid, done: make(chan struct{})}
	s.ending[key] = append(s.ending[key], run)
	s.teardowns.Add(1)
	go func() {
		defer s.teardowns.Done()
		ctx := s.ctx
		if err := s.backend.Teardown(ctx, e); err != nil && ctx.Err() == nil {
			s.log.Warn("teardown incomplete", "experiment", key, "err", err)
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		runs := s.ending[key]
		for i, r := range runs {
			if r == run {
				runs = append(runs[:i], runs[i+1:]...)
				break
			}
		}
		if len(runs) == 0 {
			delete(s.ending, key)
		} else {
			s.ending[key] = runs
		}
		close(run.done)
	}()
	return run.done
}

// underWay is what is closed once the teardown under way of the run key,
// uid ends ("": any run of key), or nil when there is none.
func (s *Service) underWay(key, uid string) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.underWayLocked(key, uid)
}

func (s *Service) underWayLocked(key, uid string) chan struct{} {
	for _, r := range s.ending[key] {
		if uid == "" || r.uid == uid {
			return r.done
		}
	}
	return nil
}
