package proxy

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/darklaunch/darklaunch/shared"
	"github.com/darklaunch/darklaunch/shared/bus"
)

// maxPending bounds the batches kept per experiment while NATS is
// unreachable: at the default flush interval, half an hour of both roles.
const maxPending = 3600

// publishTimeout bounds one publish of one batch.
const publishTimeout = 5 * time.Second

// pendingBatch is a batch not yet acknowledged by the stream. Its Msg-Id is
// fixed when it is made, so a retry is de-duplicated.
type pendingBatch struct {
	msgID string
	batch *bus.ObservationBatch
}

// runFlusher publishes the observations every FlushInterval until ctx ends.
// The last flush is Close's.
func (p *Proxy) runFlusher(ctx context.Context) {
	shared.Every(ctx, p.cfg.FlushInterval, func() {
		if err := p.Flush(ctx); err != nil && ctx.Err() == nil {
			p.log.Warn("observations not published yet; retrying at the next flush", "err", err)
		}
	})
}

// Flush publishes one batch per experiment and role that saw traffic (or
// drops) since the last flush, then retries what earlier flushes could not
// publish.
func (p *Proxy) Flush(ctx context.Context) error {
	// One flush at a time (the flusher's and Close's): the bookkeeping of
	// retired routes below relies on it.
	p.flushing.Lock()
	defer p.flushing.Unlock()
	now := time.Now()
	var errs []error
	for _, rt := range p.table.Load().byKey {
		if err := p.flushRoute(ctx, rt, now); err != nil {
			errs = append(errs, err)
		}
	}
	p.mu.Lock()
	retired := p.retired
	p.mu.Unlock()
	var keep []*route
	for _, rt := range retired {
		if err := p.flushRoute(ctx, rt, now); err != nil {
			errs = append(errs, err)
		}
		if len(rt.pendingBatches()) > 0 {
			keep = append(keep, rt)
		}
	}
	p.mu.Lock()
	// Routes retired while we flushed were appended after the ones we saw.
	p.retired = append(keep, p.retired[len(retired):]...)
	p.mu.Unlock()
	return errors.Join(errs...)
}

// flushRoute turns what rt recorded since the last flush into batches and
// publishes every pending batch in order, stopping at the first failure.
func (p *Proxy) flushRoute(ctx context.Context, rt *route, now time.Time) error {
	rt.flushMu.Lock()
	defer rt.flushMu.Unlock()
	start := rt.periodStart
	rt.periodStart = now

	var batches []*bus.ObservationBatch
	for role := range rt.rec {
		b := &bus.ObservationBatch{UID: rt.uid, Role: roleNames[role], Router: p.cfg.Instance, Start: start.UTC(), End: now.UTC()}
		b.Count, b.Errors, b.SumMs, b.Sketch = rt.rec[role].Flush()
		if role == roleDark {
			b.Mirrored = rt.mirrored.Swap(0)
			for i, reason := range dropReasons {
				if n := rt.dropped[i].Swap(0); n > 0 {
					if b.Dropped == nil {
						b.Dropped = map[string]int64{}
					}
					b.Dropped[reason] = n
				}
			}
		}
		if b.Count > 0 || b.Mirrored > 0 || len(b.Dropped) > 0 {
			batches = append(batches, b)
		}
	}
	if len(batches) > 0 {
		// Seq grows by one per flush and starts from the wall clock, so a
		// router restarted under the same Instance name does not reuse a
		// Msg-Id the stream would drop as a duplicate.
		rt.seq = max(rt.seq+1, uint64(now.UnixMilli()))
		for _, b := range batches {
			b.Seq = rt.seq
			rt.pending = append(rt.pending, pendingBatch{
				msgID: bus.MsgID(rt.uid, b.Role, p.cfg.Instance, strconv.FormatUint(b.Seq, 10)),
				batch: b,
			})
		}
		if n := len(rt.pending) - maxPending; n > 0 {
			rt.log.Error("observations lost: NATS unreachable for too long", "batches", n)
			rt.pending = append(rt.pending[:0:0], rt.pending[n:]...)
		}
	}
	if p.js == nil {
		rt.pending = nil
		return nil
	}
	subject := bus.ObsSubject(rt.ns, rt.name, rt.uid)
	for len(rt.pending) > 0 {
		pb := rt.pending[0]
		if err := publishBatch(ctx, p.js, subject, pb); err != nil {
			return fmt.Errorf("observations of %s: %w", rt.key, err)
		}
		rt.pending = rt.pending[1:]
	}
	rt.pending = nil
	return nil
}

func publishBatch(ctx context.Context, js jetstream.JetStream, subject string, pb pendingBatch) error {
	m, err := bus.NewMsg(subject, pb.batch)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	_, err = js.PublishMsg(ctx, m, jetstream.WithMsgID(pb.msgID))
	return err
}

func (rt *route) pendingBatches() []pendingBatch {
	rt.flushMu.Lock()
	defer rt.flushMu.Unlock()
	return rt.pending
}
