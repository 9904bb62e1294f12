package judge

import (
	"context"
	"errors"

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
	var ackFloor *uint64 // read once per pass, when needed
	for _, e := range list {
		ref := bus.Ref{Namespace: e.Metadata.Namespace, Name: e.Metadata.Name}
		log := s.expLog(ref.Namespace, ref.Name)
		tick := Tick{Run: Run{e.Metadata.UID}}
		if !Step(e, tick, s.now(), s.limits()).Changed() {
			continue // not stuck: no need to look at the consumer
		}
		if ackFloor == nil {
			floor, err := s.eventsAckFloor(ctx)
			if err != nil {
				if ctx.Err() == nil {
					s.log.Warn("watchdog: read the events consumer; no experiment failed this pass", "err", err)
				}
				return
			}
			ackFloor = &floor
		}
		waiting, err := s.eventsWaiting(ctx, e, *ackFloor)
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

// eventsAckFloor is the stream sequence up to which the judge's consumer
// has handled every event.
func (s *Service) eventsAckFloor(ctx context.Context) (uint64, error) {
	cons, err := s.events.Consumer(ctx, ConsumerName)
	if err != nil {
		return 0, err
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.AckFloor.Stream, nil
}

// eventsWaiting reports whether the event that would move e on (its routing
// event while Initializing, a metrics event while Running) is stored but not
// handled yet: the judge is behind (a backlog after a restart, or an event
// being retried), not the router or collector.
func (s *Service) eventsWaiting(ctx context.Context, e *experiment.Experiment, ackFloor uint64) (bool, error) {
	typ := bus.EventMetrics
	if e.Status.Stage == experiment.StageInitializing {
		typ = bus.EventRouting
	}
	last, err := s.events.GetLastMsgForSubject(ctx, bus.EventSubject(e.Metadata.Namespace, e.Metadata.Name, typ))
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return false, nil
	case err != nil:
		return false, err
	}
	return last.Sequence > ackFloor, nil
}
