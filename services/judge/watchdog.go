package judge

import (
	"context"
	"errors"
	"slices"

	"github.com/darklaunch/darklaunch/shared"
	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
	"github.com/nats-io/nats.go/jetstream"
)

// watchdog ticks every experiment each WatchdogInterval: Step fails those
// nobody moves on (stepTick).
func (s *Service) watchdog(ctx context.Context) {
	shared.Every(ctx, s.cfg.WatchdogInterval, func() { s.failStuck(ctx) })
}

// failStuck fails every stuck experiment once.
func (s *Service) failStuck(ctx context.Context) {
	list, err := s.store.List(ctx)
	switch {
	case errors.Is(err, bus.ErrUndecodable):
		s.log.Warn("watchdog: state entries skipped", "err", err)
	case err != nil:
		if ctx.Err() == nil {
			s.log.Warn("watchdog: list experiments", "err", err)
		}
		return
	}
	s.prom.countStages(list)
	s.cache.keepOnly(list)
	var lagging *bool // the queue's source behind: read once per pass, when needed
	for _, e := range list {
		ref := bus.Ref{Namespace: e.Metadata.Namespace, Name: e.Metadata.Name}
		log := s.expLog(ref.Namespace, ref.Name)
		tick := Tick{Run: Run{e.Metadata.UID}}
		if !Step(e, tick, s.now(), s.limits()).Changed() {
			continue // not stuck: no need to look at the queue
		}
		waiting, err := s.eventsWaiting(ctx, e, &lagging)
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("watchdog: look for unhandled events", "err", err)
			}
			continue
		}
		// On its latest state: another judge, or an event, may have moved
		// it meanwhile.
		tick.EventsWaiting = waiting
		if err := s.handle(ctx, ref, tick, log); err != nil && ctx.Err() == nil {
			log.Warn("watchdog: fail stuck experiment", "err", err)
		}
	}
}

// eventsWaiting reports whether the event that would move e on (its routing
// event while Initializing, a metrics event while Running) is stored but not
// handled yet: the judge is behind (a backlog after a restart, or an event
// being retried), not the router or collector. An event is handled once it
// is gone from the judge's queue (a work queue: acked is deleted); one
// stored on the events stream but not in the queue is waiting still while
// the queue's source lags behind the events stream.
func (s *Service) eventsWaiting(ctx context.Context, e *experiment.Experiment, lagging **bool) (bool, error) {
	typ := bus.EventMetrics
	if e.Status.Stage == experiment.StageInitializing {
		typ = bus.EventRouting
	}
	ns, name := e.Metadata.Namespace, e.Metadata.Name
	if _, err := s.events.GetLastMsgForSubject(ctx, bus.EventSubject(ns, name, typ)); errors.Is(err, jetstream.ErrMsgNotFound) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	if _, err := s.queue.GetLastMsgForSubject(ctx, bus.JudgeSubject(ns, name, typ)); err == nil {
		return true, nil
	} else if !errors.Is(err, jetstream.ErrMsgNotFound) {
		return false, err
	}
	if *lagging == nil {
		info, err := s.queue.Info(ctx)
		if err != nil {
			return false, err
		}
		lag := slices.ContainsFunc(info.Sources, func(src *jetstream.StreamSourceInfo) bool { return src.Lag > 0 })
		*lagging = &lag
	}
	return **lagging, nil
}
