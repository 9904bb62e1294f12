package collector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
	"github.com/darklaunch/darklaunch/shared/sketch"
)

// DefaultCatchUp is how long the bus source waits, by default, to consume
// the observations already stored before it measures.
const DefaultCatchUp = 2 * time.Second

// BusSource measures the observation batches the router's proxy publishes on
// darklaunch.obs.<ns>.<name>.<uid> (stream DARKLAUNCH_OBS). It replays the subject
// from the start, so a restarted collector computes the same snapshots.
type BusSource struct {
	// Stream is the observation stream (bus.Infra.Obs).
	Stream jetstream.Stream
	// CatchUp bounds the wait for the observations already stored. Default
	// DefaultCatchUp.
	CatchUp time.Duration
	// Log, optional.
	Log *slog.Logger
	// Routers, optional, says which routers are alive (routers.go), for
	// telling a router that stopped without its last flush from one that
	// has had no traffic (seriesLog).
	Routers Leases
}

var _ Source = (*BusSource)(nil)

// Open starts an ordered consumer on the experiment's observation subject,
// delivering everything stored. The subject names the experiment's UID, so
// an older experiment of the same name is not read; batches are still
// checked for the UID.
func (s *BusSource) Open(ctx context.Context, exp *experiment.Experiment) (Window, error) {
	log := s.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	catchUp := s.CatchUp
	if catchUp <= 0 {
		catchUp = DefaultCatchUp
	}
	w := newBusWindow(s.Stream, exp, catchUp, log)
	w.leases = s.Routers
	cons, err := s.Stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{w.subject},
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return nil, fmt.Errorf("consume %s: %w", w.subject, err)
	}
	cc, err := cons.Consume(w.handle, jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		w.log.Debug("observation consumer", "err", err)
	}))
	if err != nil {
		return nil, fmt.Errorf("consume %s: %w", w.subject, err)
	}
	w.stop = cc.Stop
	return w, nil
}

// newBusWindow returns a window that consumes nothing yet: Open attaches the
// consumer and sets stop.
func newBusWindow(stream jetstream.Stream, exp *experiment.Experiment, catchUp time.Duration, log *slog.Logger) *busWindow {
	return &busWindow{
		uid:      exp.Metadata.UID,
		subject:  bus.ObsSubject(exp.Metadata.Namespace, exp.Metadata.Name, exp.Metadata.UID),
		stream:   stream,
		catchUp:  catchUp,
		log:      log.With("experiment", exp.Key()),
		stop:     func() {},
		progress: make(chan struct{}),
		roles:    map[string]*roleObs{bus.RoleLive: newRoleObs(), bus.RoleDark: newRoleObs()},
		plan:     newIntervalPlan(exp),
	}
}

// busWindow holds one experiment's observation batches per role.
//
// A batch counts in the window [start, end) of every end it is Before: for
// the proxy's slotted batches, those whose slot lies before end (each
// request in the window of the moment it ended), for batches of an older
// router, those whose flush period started before end.
//
// Measure is called with an end that does not go back (the clock measures
// iteration after iteration), so the batches before the last end are folded
// into one aggregate instead of being kept: memory stays flat however long
// the experiment. A batch that arrives after the window it belongs to was
// measured (published later than the grace period) is counted once, from
// the next measurement on, and that measurement says so (Measurement.Late).
// One that arrives after the last iteration was measured is in no snapshot.
type busWindow struct {
	uid     string
	subject string
	stream  jetstream.Stream
	catchUp time.Duration
	log     *slog.Logger
	stop    func()
	plan    *intervalPlan
	leases  Leases

	mu       sync.Mutex
	closed   bool
	consumed uint64        // stream sequence of the last message handled
	progress chan struct{} // closed and replaced when consumed advances
	roles    map[string]*roleObs
	series   seriesLog
}

type roleObs struct {
	folded    *sketch.Aggregate // batches Before foldedEnd
	foldedEnd time.Time
	pending   []*bus.ObservationBatch
}

func newRoleObs() *roleObs { return &roleObs{folded: sketch.NewAggregate()} }

func (w *busWindow) handle(m jetstream.Msg) {
	meta, err := m.Metadata()
	if err != nil {
		w.log.Warn("observation without metadata", "err", err)
		return
	}
	var b bus.ObservationBatch
	decodeErr := bus.Unmarshal(m.Headers().Get(bus.HeaderContentType), m.Data(), &b)
	w.mu.Lock()
	defer w.mu.Unlock()
	if meta.Sequence.Stream <= w.consumed {
		return // redelivered after a consumer reset: already counted
	}
	switch ro := w.roles[b.Role]; {
	case decodeErr != nil:
		w.log.Warn("undecodable observation batch skipped", "seq", meta.Sequence.Stream, "err", decodeErr)
	case b.UID != w.uid:
		// An older experiment of the same name.
	case ro == nil:
		w.log.Warn("observation batch of unknown role skipped", "role", b.Role, "seq", meta.Sequence.Stream)
	default:
		ro.pending = append(ro.pending, &b)
		w.series.add(&b)
	}
	w.consumed = meta.Sequence.Stream
	w.wake()
}

// wake tells the measurements waiting in catchUpWithStream to look again;
// w.mu is held.
func (w *busWindow) wake() {
	close(w.progress)
	w.progress = make(chan struct{})
}

// Measure merges the batches of role that are Before end, after reading
// every observation already stored for the experiment.
func (w *busWindow) Measure(ctx context.Context, role string, end time.Time) (Measurement, error) {
	if _, ok := w.roles[role]; !ok {
		return Measurement{}, fmt.Errorf("role %q: want %q or %q", role, bus.RoleLive, bus.RoleDark)
	}
	if err := w.catchUpWithStream(ctx); err != nil {
		return Measurement{}, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return Measurement{}, ErrClosed
	}
	ro := w.roles[role]
	if end.Before(ro.foldedEnd) {
		return Measurement{}, fmt.Errorf("measure %s up to %s: already measured up to %s, and the bus source only moves forward", role, end.Format(time.RFC3339Nano), ro.foldedEnd.Format(time.RFC3339Nano))
	}
	keep := ro.pending[:0]
	var late int64
	for _, b := range ro.pending {
		if !b.Before(end) {
			keep = append(keep, b)
			continue
		}
		if err := ro.folded.Add(b); err != nil {
			w.log.Warn("observation batch skipped", "role", role, "router", b.Router, "seq", b.Seq, "err", err)
			continue
		}
		if !ro.foldedEnd.IsZero() && b.Before(ro.foldedEnd) {
			late += b.Count
		}
	}
	clear(ro.pending[len(keep):])
	ro.pending = keep
	ro.foldedEnd = end

	agg := ro.folded
	var mirror *experiment.MirrorStats
	if role == bus.RoleDark || agg.Mirrored > 0 || len(agg.Dropped) > 0 {
		mirror = &experiment.MirrorStats{Mirrored: agg.Mirrored, Dropped: maps.Clone(agg.Dropped)}
	}
	intervals, needed := w.plan.intervals(agg, role)
	return Measurement{Values: agg.Values(), Mirror: mirror, Intervals: intervals, Needed: needed, Late: late,
		Pairs: measuredPairs(role, agg), Loss: w.series.loss(w.leases)}, nil
}

// catchUpWithStream waits until the consumer has handled the last message
// stored on the experiment's subject, so that a batch published before the
// measurement is never missed just because it is still in flight.
func (w *busWindow) catchUpWithStream(ctx context.Context) error {
	last, err := w.stream.GetLastMsgForSubject(ctx, w.subject)
	var target uint64
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return nil // nothing stored
	case err != nil:
		return fmt.Errorf("last observation on %s: %w", w.subject, err)
	default:
		target = last.Sequence
	}
	timer := time.NewTimer(w.catchUp)
	defer timer.Stop()
	for {
		w.mu.Lock()
		consumed, progress, closed := w.consumed, w.progress, w.closed
		w.mu.Unlock()
		switch {
		case closed:
			return ErrClosed
		case consumed >= target:
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
			return fmt.Errorf("%w: read up to sequence %d of %d on %s in %s", ErrNotCaughtUp, consumed, target, w.subject, w.catchUp)
		case <-progress:
		}
	}
}

// Close stops the consumer.
func (w *busWindow) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	w.wake()
	w.mu.Unlock()
	w.stop()
	return nil
}
