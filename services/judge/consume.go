package judge

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/darklaunch/darklaunch/shared"
	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/retry"
)

const (
	// ackWait is how long the server waits for an ack before it delivers
	// an event again. Handling takes milliseconds, and the judge says every
	// ackWait/4 that it is still at it (inProgress), so a short wait costs
	// nothing; while an event that nobody will ack holds back every other
	// (MaxAckPending is 1) for no longer than this: one whose judge was
	// killed while handling it, or one whose ack a crash of NATS lost (a
	// killed nats-server can come back with its consumers' last state
	// updates gone, and the event it thought delivered still pending). It
	// was 30s: a NATS restart once held the judge 20s behind.
	ackWait = time.Second
	// handleTimeout bounds the handling of one event.
	handleTimeout = 20 * time.Second
	// pullExpiry is how long a pull request waits on the server; its idle
	// heartbeats come every half of it, so a pull the server lost
	// without a reconnect (nats.go re-pulls at once after one) is noticed
	// within pullExpiry (nats.go's default: 30s).
	pullExpiry = 5 * time.Second
	// Consuming names the judge's parts of readiness, one per partition
	// (consumingPart): each partition's consumer set up on the connection
	// as it is now.
	Consuming = "events consumer"
)

// eventRetry is when a failed event is delivered again: 500ms after its
// first delivery, doubling with every delivery, up to 30s.
var eventRetry = retry.Policy{First: 500 * time.Millisecond, Max: 30 * time.Second}

// consumerRetry is how the consumer is set up again: at once after a
// reconnect, then from 100ms doubling to a second while JetStream does
// not answer.
var consumerRetry = retry.Policy{First: 100 * time.Millisecond, Max: time.Second}

// consumerConfig is the durable consumer of partition p of the judge's
// queue (bus.StreamJudge), shared by every judge instance: one event in
// flight at a time across them all, because order matters within an
// experiment (routing before metrics, live snapshot k before dark k), and
// an experiment's events are all on one partition.
func consumerConfig(p int) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       bus.JudgeConsumer(p),
		Description:   fmt.Sprintf("darklaunch judge: routing, metrics and load events of partition %d", p),
		FilterSubject: bus.JudgeFilter(p),
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       ackWait,
		MaxAckPending: 1,
	}
}

// consumingPart is partition p's part of the judge's readiness.
func consumingPart(p int) string { return fmt.Sprintf("%s %d", Consuming, p) }

// consumingParts are the readiness parts of every partition.
func consumingParts() []string {
	parts := make([]string, bus.JudgePartitions)
	for p := range parts {
		parts[p] = consumingPart(p)
	}
	return parts
}

// partition is this judge's consumer of one partition. Its goroutine is
// the only user of retries.
type partition struct {
	*Service
	p       int
	part    string
	retries retryBudget
}

// consume handles the judge's events, every partition in parallel, until
// ctx ends.
func (s *Service) consume(ctx context.Context) {
	var wg sync.WaitGroup
	for p := range bus.JudgePartitions {
		pt := &partition{Service: s, p: p, part: consumingPart(p),
			retries: retryBudget{max: s.cfg.MaxDeliveries, failures: map[uint64]int{}}}
		wg.Go(func() { pt.consume(ctx) })
	}
	wg.Wait()
}

// consume handles the partition's events until ctx ends. It sets the
// consumer up again (creating it if it went away: deleted, NATS restarted
// without it) whenever consuming stops, and at once whenever the
// connection is re-established, since what a restarted server had of it
// may be gone.
func (s *partition) consume(ctx context.Context) {
	for ctx.Err() == nil {
		cctx, cancel := bus.UntilReconnect(ctx, s.nc)
		cons, err := retry.Value(cctx, consumerRetry, func(ctx context.Context) (jetstream.Consumer, error) {
			return s.js.CreateOrUpdateConsumer(ctx, bus.StreamJudge, consumerConfig(s.p))
		}, func(err error, _ time.Duration) {
			s.ready.Down(s.part, err)
			s.log.Warn("create events consumer; retrying", "partition", s.p, "err", err)
		})
		if err == nil {
			s.consumeFrom(ctx, cctx, cons)
		}
		cancel()
		if bus.Reconnected(cctx) && ctx.Err() == nil {
			s.ready.Down(s.part, bus.ErrReconnected)
			if s.p == 0 {
				s.log.Info("NATS reconnected; consuming events again")
			}
		}
	}
}

// consumeFrom handles events from cons until cctx ends (ctx ended, or the
// connection was re-established) or the consumer is lost. An event in hand
// is handled under ctx whatever cctx does.
func (s *partition) consumeFrom(ctx, cctx context.Context, cons jetstream.Consumer) {
	it, err := cons.Messages(jetstream.PullExpiry(pullExpiry))
	if err != nil {
		s.ready.Down(s.part, err)
		s.log.Warn("consume events; retrying", "partition", s.p, "err", err)
		shared.Sleep(cctx, time.Second)
		return
	}
	defer it.Stop()
	s.ready.Up(s.part)
	for {
		msg, err := it.Next(jetstream.NextContext(cctx))
		if cctx.Err() != nil {
			if msg != nil {
				_ = msg.Nak()
			}
			release(it)
			return
		}
		if errors.Is(err, jetstream.ErrMsgIteratorClosed) || errors.Is(err, jetstream.ErrConsumerDeleted) ||
			errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrNoHeartbeat) {
			s.ready.Down(s.part, err)
			s.log.Warn("events consumer lost; setting it up again", "partition", s.p, "err", err)
			shared.Sleep(cctx, eventRetry.First)
			return
		}
		if err != nil {
			s.log.Warn("next event", "partition", s.p, "err", err)
			continue
		}
		s.handleMsg(ctx, msg)
	}
}

// inProgress tells the server every ackWait/4 that msg is being handled,
// until the returned stop is called, so that it is not delivered again
// meanwhile.
func inProgress(msg jetstream.Msg) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(ackWait / 4)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				_ = msg.InProgress()
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
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

// handleMsg handles one event and acks it; a failed handling is retried as
// retries says. A shutdown does not interrupt the event in hand.
func (s *partition) handleMsg(ctx context.Context, msg jetstream.Msg) {
	ev, err := bus.DecodeEvent(msg.Headers().Get(bus.HeaderContentType), msg.Data())
	if err != nil {
		s.log.Error("undecodable event dropped", "subject", msg.Subject(), "err", err)
		s.prom.eventsDropped.Inc()
		_ = msg.Term()
		return
	}
	if ev.Subject() != bus.EventSubjectOf(msg.Subject()) {
		// Only the subject is the publisher's right (bus.Permissions): an
		// event that claims another type or experiment than its subject's
		// is a forgery, or a bug; either way it is not a fact.
		s.log.Error("event whose type or experiment is not its subject's dropped", "subject", msg.Subject(), "claims", ev.Subject())
		s.prom.eventsDropped.Inc()
		_ = msg.Term()
		return
	}
	log := s.expLog(ev.Namespace, ev.Name).With("event", ev.Type, "uid", ev.UID)
	in, ignored := EventInput(ev)
	if in == nil {
		log.Log(ctx, ignored.Level, ignored.Msg, ignored.Args...)
	} else {
		hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), handleTimeout)
		stop := inProgress(msg)
		err = s.handle(hctx, bus.Ref{Namespace: ev.Namespace, Name: ev.Name}, in, log)
		stop()
		cancel()
	}
	if err == nil {
		if md, merr := msg.Metadata(); merr == nil {
			s.retries.forget(md.Sequence.Stream)
		}
		if err := msg.Ack(); err != nil {
			log.Warn("ack event", "err", err)
		}
		return
	}
	drop, delay, delivered := false, eventRetry.First, uint64(0)
	if md, merr := msg.Metadata(); merr == nil {
		delivered = md.NumDelivered
		drop, delay = s.retries.failed(md.Sequence.Stream, delivered)
	}
	if drop {
		log.Error("event dropped: handling failed at every attempt", "deliveries", delivered, "err", err)
		s.prom.eventsDropped.Inc()
		_ = msg.Term()
		return
	}
	log.Warn("handle event; will retry", "err", err, "retryIn", delay)
	_ = msg.NakWithDelay(delay)
}

// retryBudget is the judge's one retry policy for an event whose handling
// fails: retried after a delay that doubles with each delivery
// (eventRetry), and dropped at its max-th failure, so that a poison
// event (its experiment's state corrupt, say) holds back the others for
// about a minute at most. Failures are counted by this judge, per stream
// sequence, because the server's delivery count also rises when a stopping
// judge hands an event back unhandled (release), which is no failure; and
// the delivery count still drops an event at twice max, because several
// judges share the failures of one event and each sees only its own. Only
// its partition's goroutine uses it.
type retryBudget struct {
	max      int
	failures map[uint64]int
}

// failed records a failure of the event at stream sequence seq, delivered
// for the delivered-th time, and says whether to drop it or when to retry.
func (b *retryBudget) failed(seq, delivered uint64) (drop bool, delay time.Duration) {
	b.failures[seq]++
	if b.failures[seq] >= b.max || delivered >= 2*uint64(b.max) {
		delete(b.failures, seq)
		return true, 0
	}
	return false, eventRetry.Wait(int(min(delivered, 64)))
}

// forget ends the count of an event that was handled.
func (b *retryBudget) forget(seq uint64) { delete(b.failures, seq) }
