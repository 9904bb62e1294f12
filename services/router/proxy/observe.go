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
	"github.com/darklaunch/darklaunch/shared/experiment"
	"github.com/darklaunch/darklaunch/shared/sketch"
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

// Flush publishes one batch per experiment, role and slot closed since the
// last flush that saw traffic (or copies mirrored or dropped), then retries
// what earlier flushes could not publish.
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

// Observations are counted by the instant each request ended (a copy: the
// instant its response was read), in slots of sketch.SlotWidth(FlushInterval)
// on a grid from the experiment's start: the start itself for a route set up
// while the experiment runs (a restarted router), else the moment the route
// is set up, which is just before the start (the routing event's time). Every
// iteration's end is then a slot boundary, and the collector cuts each window
// exactly there whatever the flush timing. Copies mirrored and dropped are
// tallied in the dark recorder at their request's arrival, when the proxy
// decides.

// Tallies of the dark recorder.
const (
	tallyMirrored = 0
	tallyDropped  = 1 // + the drop reason's index
)

func (p *Proxy) newRecorders(exp *experiment.Experiment) [2]*sketch.Recorder {
	origin := time.Now()
	if st := exp.Status.StartTime; st != nil {
		origin = *st
	}
	grid := sketch.Grid{Origin: origin, Width: sketch.SlotWidth(p.cfg.FlushInterval)}
	return [2]*sketch.Recorder{sketch.NewRecorder(grid, 0), sketch.NewRecorder(grid, tallyDropped+len(dropReasons))}
}

// observe records a request of role that started at start and ends now.
func (rt *route) observe(role int, start time.Time, failed bool) {
	end := time.Now()
	rt.rec[role].Observe(end, float64(end.Sub(start).Nanoseconds())/1e6, failed)
}

// flushRoute turns the slots rt's recorders closed by now into batches and
// publishes every pending batch in order, stopping at the first failure. A
// route that serves no more (torn down, replaced, or the proxy closing)
// gives its open slot too.
func (p *Proxy) flushRoute(ctx context.Context, rt *route, now time.Time) error {
	rt.flushMu.Lock()
	defer rt.flushMu.Unlock()
	before := now
	if p.ctx.Err() != nil || p.table.Load().byKey[rt.key] != rt {
		before = time.Time{}
	}
	var batches []*bus.ObservationBatch
	for role, rec := range rt.rec {
		for _, s := range rec.Flush(before) {
			b := s.Batch(rt.uid, roleNames[role], p.cfg.Instance)
			if role == roleDark {
				b.TimeoutMs = float64(p.cfg.MirrorTimeout) / float64(time.Millisecond) // the bound of every copy's latency
				b.Mirrored = s.Tallies[tallyMirrored]
				for i, reason := range dropReasons {
					if n := s.Tallies[tallyDropped+i]; n > 0 {
						if b.Dropped == nil {
							b.Dropped = map[string]int64{}
						}
						b.Dropped[reason] = n
					}
				}
			}
			if s.Late > 0 {
				rt.log.Warn("observations counted in a later slot than they ended in: the flushes fell behind", "role", b.Role, "requests", s.Late, "slot", b.Start)
			}
			batches = append(batches, b)
		}
	}
	if len(batches) > 0 {
		// Seq grows by one per batch and never lags the wall clock (ms), so
		// a router restarted under the same Instance name does not reuse a
		// Msg-Id the stream would drop as a duplicate.
		seq := max(rt.seq+1, uint64(now.UnixMilli()))
		for _, b := range batches {
			b.Seq, rt.seq = seq, seq
			seq++
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
