package judge

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
	"github.com/nats-io/nats.go/jetstream"
)

// watchdog fails the experiments nobody moves on: an absent router leaves
// one Initializing forever, an absent collector leaves one Running forever.
// Iter8 users see the same as when a handler or the analytics service fails.
func (s *Service) watchdog(ctx context.Context) {
	t := time.NewTicker(s.cfg.WatchdogInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.failStuck(ctx)
		}
	}
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
		if reason, _ := s.stuck(e, s.now()); reason == "" {
			continue
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
		if waiting, err := s.eventsWaiting(ctx, e, *ackFloor); err != nil || waiting {
			// The router or collector did its part; the judge is behind
			// (a backlog after a restart, or an event being retried).
			if err != nil && ctx.Err() == nil {
				s.expLog(e.Metadata.Namespace, e.Metadata.Name).Warn("watchdog: look for unhandled events", "err", err)
			}
			continue
		}
		if err := s.failOne(ctx, e); err != nil && ctx.Err() == nil {
			s.expLog(e.Metadata.Namespace, e.Metadata.Name).Warn("watchdog: fail stuck experiment", "err", err)
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
// handled yet: then e is not stuck, the judge is behind.
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

// failOne fails e if, on its latest state, it is still the same run and
// still stuck (another judge, or an event, may have moved it meanwhile).
func (s *Service) failOne(ctx context.Context, e *experiment.Experiment) error {
	ev := bus.NewEvent("", source, e, s.now())
	var out []outEvent
	_, err := s.update(ctx, ev, func(e *experiment.Experiment) error {
		out = nil
		now := s.now()
		reason, text := s.stuck(e, now)
		if reason == "" {
			return bus.ErrNoChange
		}
		fail(e, reason, text, now)
		out = failedEvent(e, now)
		return nil
	})
	if err != nil {
		return err
	}
	if len(out) > 0 {
		s.expLog(e.Metadata.Namespace, e.Metadata.Name).Warn("stuck experiment failed", "uid", e.Metadata.UID, "message", out[0].ev.Message)
		s.prom.finished.WithLabelValues(ResultError).Inc()
	}
	return s.publish(ctx, out)
}

// stuck says why e should fail at now, or returns "" when it should not.
func (s *Service) stuck(e *experiment.Experiment, now time.Time) (reason, text string) {
	st := &e.Status
	switch st.Stage {
	case experiment.StageInitializing:
		since := st.InitTime
		if since == nil {
			since = e.Metadata.CreationTimestamp
		}
		if since != nil && now.Sub(*since) > s.cfg.InitTimeout {
			return experiment.ReasonHandlerFailed,
				fmt.Sprintf("no router set up mirroring within %s (is the router running?)", s.cfg.InitTimeout)
		}
	case experiment.StageRunning:
		if st.StartTime == nil {
			return "", ""
		}
		next := st.CompletedIterations + 1
		due := st.StartTime.Add(time.Duration(next) * e.Interval())
		wait := max(3*e.Interval(), s.cfg.MetricsTimeout)
		if now.Sub(due) > wait {
			return experiment.ReasonAnalyticsError,
				fmt.Sprintf("no metrics for iteration %d within %s of its due time %s (is the collector running?)",
					next, wait, due.UTC().Format(time.RFC3339))
		}
	}
	return "", ""
}
