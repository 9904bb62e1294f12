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

// observe records a request of role that started at start and ends now,
// and returns its latency in ms.
func (rt *route) observe(role int, start time.Time, failed bool) float64 {
	end := time.Now()
	ms := float64(end.Sub(start).Nanoseconds()) / 1e6
	rt.rec[role].Observe(end, ms, failed)
	return ms
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
	if rt.seq == 0 && len(batches) == 0 {
		// The route's first flush opens its series even without traffic:
		// the collector then knows at once that this route went on after
		// an earlier one of the experiment that ended without its Final
		// batch (a router killed and started again).
		batches = append(batches, p.emptyBatch(rt, now))
	}
	if before.IsZero() && !rt.final {
		// The route's last flush: its last batch says so, an empty one if
		// nothing is left, so that the collector knows the series ended
		// here and not in a crash.
		rt.final = true
		if len(batches) == 0 {
			batches = append(batches, p.emptyBatch(rt, now))
		}
		batches[len(batches)-1].Final = true
	}
	// Seq numbers the route's batches 1, 2, 3, ... in its own series, so
	// that the collector sees a gap; the series is in the Msg-Id, so a
	// router restarted under the same Instance name does not reuse one
	// the stream would drop as a duplicate.
	for _, b := range batches {
		rt.seq++
		b.Seq, b.Series = rt.seq, rt.series
		rt.pending = append(rt.pending, pendingBatch{
			msgID: bus.MsgID(rt.uid, b.Role, p.cfg.Instance, rt.series, strconv.FormatUint(b.Seq, 10)),
			batch: b,
		})
	}
	if n := len(rt.pending) - maxPending; n > 0 {
		rt.log.Error("observations lost: NATS unreachable for too long", "batches", n)
		rt.pending = append(rt.pending[:0:0], rt.pending[n:]...)
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

// emptyBatch is a live batch of no request, for the slot that holds now.
func (p *Proxy) emptyBatch(rt *route, now time.Time) *bus.ObservationBatch {
	grid := rt.rec[roleLive].Grid()
	var empty sketch.Slot
	empty.Start, empty.End = grid.Bounds(grid.Index(now))
	return empty.Batch(rt.uid, roleNames[roleLive], p.cfg.Instance)
}
