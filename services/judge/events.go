package judge

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/darklaunch/darklaunch/shared"
	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

const (
	// ackWait is how long the server waits for an ack before redelivering;
	// handling an event takes milliseconds unless NATS is in trouble.
	ackWait = 30 * time.Second
	// handleTimeout bounds the handling of one event.
	handleTimeout = 20 * time.Second
	// retryDelay is the first delay before a failed event is redelivered;
	// it doubles with every delivery, up to maxRetryDelay.
	retryDelay    = 500 * time.Millisecond
	maxRetryDelay = 30 * time.Second
)

// errIgnore marks an event that is not about the stored run of its
// experiment: an older run of the same name, or one that was deleted.
var errIgnore = errors.New("event of another run")

// consumerConfig is the judge's durable consumer: only the events it acts
// on, one in flight at a time across every judge instance, because order
// matters (routing before metrics, live snapshot k before dark k).
func consumerConfig() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:     ConsumerName,
		Description: "darklaunch judge: routing, metrics and load events",
		FilterSubjects: []string{
			bus.EventTypeFilter(bus.EventRouting),
			bus.EventTypeFilter(bus.EventMetrics),
			bus.EventTypeFilter(bus.EventLoad),
		},
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       ackWait,
		MaxAckPending: 1,
	}
}

// consume handles the judge's events until ctx ends, re-creating the
// consumer if it goes away (deleted, NATS restarted without its state).
func (s *Service) consume(ctx context.Context) {
	for ctx.Err() == nil {
		cons, err := s.js.CreateOrUpdateConsumer(ctx, bus.StreamEvents, consumerConfig())
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("create events consumer; retrying", "err", err)
				sleep(ctx, time.Second)
			}
			continue
		}
		s.consumeFrom(ctx, cons)
	}
}

func (s *Service) consumeFrom(ctx context.Context, cons jetstream.Consumer) {
	it, err := cons.Messages()
	if err != nil {
		s.log.Warn("consume events; retrying", "err", err)
		sleep(ctx, time.Second)
		return
	}
	defer it.Stop()
	for {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if ctx.Err() != nil {
			if msg != nil {
				_ = msg.Nak()
			}
			release(it)
			return
		}
		if errors.Is(err, jetstream.ErrMsgIteratorClosed) || errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) {
			s.log.Warn("events consumer closed; re-creating it", "err", err)
			sleep(ctx, retryDelay)
			return
		}
		if err != nil {
			s.log.Warn("next event", "err", err)
			continue
		}
		s.handleMsg(ctx, msg)
	}
}

// release gives back the events delivered to this judge but not handled
// yet, so that another judge (or the next one) gets them at once instead of
// after ackWait, while the one-in-flight limit holds everything else back.
func release(it jetstream.MessagesContext) {
	it.Drain()
	for {
		msg, err := it.Next(jetstream.NextMaxWait(2 * time.Second))
		if err != nil {
			return
		}
		_ = msg.Nak()
	}
}

// handleMsg handles one event and acks it; a transient failure is retried
// after a growing delay. A shutdown does not interrupt the event in hand.
func (s *Service) handleMsg(ctx context.Context, msg jetstream.Msg) {
	var ev bus.Event
	if err := bus.Unmarshal(msg.Headers().Get(bus.HeaderContentType), msg.Data(), &ev); err != nil {
		s.log.Error("undecodable event dropped", "subject", msg.Subject(), "err", err)
		s.prom.eventsDropped.Inc()
		_ = msg.Term()
		return
	}
	log := s.expLog(ev.Namespace, ev.Name).With("event", ev.Type, "uid", ev.UID)
	hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), handleTimeout)
	defer cancel()
	err := s.handleEvent(hctx, &ev)
	switch {
	case err == nil:
	case errors.Is(err, errIgnore), errors.Is(err, shared.ErrNotFound):
		log.Debug("event of another or a deleted run ignored")
	default:
		delay := retryDelay
		if md, merr := msg.Metadata(); merr == nil {
			seq := md.Sequence.Stream
			s.failures[seq]++
			// NumDelivered also counts the deliveries a stopping judge
			// handed back unhandled (release): the budget is this judge's
			// own failures, with twice the budget in deliveries as the
			// backstop when several judges share the failures.
			if s.failures[seq] >= s.cfg.MaxDeliveries || md.NumDelivered >= 2*uint64(s.cfg.MaxDeliveries) {
				log.Error("event dropped: handling failed at every attempt", "failures", s.failures[seq], "deliveries", md.NumDelivered, "err", err)
				delete(s.failures, seq)
				s.prom.eventsDropped.Inc()
				_ = msg.Term()
				return
			}
			for i := uint64(1); i < md.NumDelivered && delay < maxRetryDelay; i++ {
				delay *= 2
			}
		}
		delay = min(delay, maxRetryDelay)
		log.Warn("handle event; will retry", "err", err, "retryIn", delay)
		_ = msg.NakWithDelay(delay)
		return
	}
	if md, merr := msg.Metadata(); merr == nil {
		delete(s.failures, md.Sequence.Stream)
	}
	if err := msg.Ack(); err != nil {
		log.Warn("ack event", "err", err)
	}
}

// handleEvent dispatches one event to its handler.
func (s *Service) handleEvent(ctx context.Context, ev *bus.Event) error {
	switch ev.Type {
	case bus.EventRouting:
		return s.onRouting(ctx, ev)
	case bus.EventLoad:
		return s.onLoad(ctx, ev)
	case bus.EventMetrics:
		return s.onMetrics(ctx, ev)
	}
	s.expLog(ev.Namespace, ev.Name).Warn("event of an unexpected type ignored", "type", ev.Type)
	return nil
}

// update changes the stored run the event is about. fn runs on the latest
// state, possibly more than once (compare-and-swap retries); errIgnore is
// returned when the stored experiment is another run.
func (s *Service) update(ctx context.Context, ev *bus.Event, fn func(*experiment.Experiment) error) (*experiment.Experiment, error) {
	return s.store.Update(ctx, ev.Namespace, ev.Name, func(e *experiment.Experiment) error {
		if e.Metadata.UID != ev.UID {
			return errIgnore
		}
		return fn(e)
	})
}

// publish sends events in order, each with its Msg-Id, so a republish after
// a crash is dropped by the stream as a duplicate.
func (s *Service) publish(ctx context.Context, events []outEvent) error {
	for _, o := range events {
		if err := bus.Publish(ctx, s.js, o.ev, o.msgID); err != nil {
			return err
		}
	}
	return nil
}

// outEvent is an event to publish once the state it follows from is stored.
type outEvent struct {
	ev    *bus.Event
	msgID string
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
