package collector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/darklaunch/darklaunch/shared"
	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
	"github.com/darklaunch/darklaunch/shared/retry"
)

// roles are measured in this order each iteration: the judge records the
// live snapshot, then evaluates the dark one against the objectives.
var roles = []string{bus.RoleLive, bus.RoleDark}

// clock measures exp at startTime + k·interval for every iteration k from
// first on, each Grace after the iteration's end, and publishes a snapshot
// per role. Iterations whose time has passed (after a restart, or a clock
// taken over) are measured at once.
func (r *runner) clock(ctx context.Context, exp *experiment.Experiment, first int32) {
	log := r.log.With("experiment", exp.Key(), "uid", exp.Metadata.UID)
	start := exp.Status.StartTime.UTC()
	iv, total := exp.Interval(), exp.TotalIterations()
	if first > total {
		return
	}
	var win Window
	defer func() {
		if win != nil {
			win.Close()
		}
	}()
	open := func(ctx context.Context) (Window, error) {
		if win != nil {
			return win, nil
		}
		w, err := r.source.Open(ctx, exp)
		if err != nil {
			return nil, fmt.Errorf("open source %s: %w", r.cfg.Source, err)
		}
		win = w
		return w, nil
	}
	// Open now rather than at the first measurement: the bus source replays
	// the stored observations meanwhile.
	if _, err := open(ctx); err != nil && ctx.Err() == nil {
		log.Warn("metrics source unavailable; retrying at the next measurement", "err", err)
	}
	log.Info("clock started", "from", first, "iterations", total, "interval", iv)
	r.prom.clocks.Inc()
	defer r.prom.clocks.Dec()
	for k := first; k <= total; k++ {
		end := start.Add(time.Duration(k) * iv)
		if !shared.SleepUntil(ctx, end.Add(r.cfg.Grace)) {
			return
		}
		var live *Measurement // this iteration's, for the dark one's comparison
		for _, role := range roles {
			began := time.Now()
			m, err := r.measure(ctx, log, open, role, end)
			if ctx.Err() != nil {
				return // stopped: an interrupted measurement is no measurement
			}
			r.prom.duration.Observe(time.Since(began).Seconds())
			snap := r.snapshot(exp, k, role, start, end, m, err)
			switch {
			case err != nil:
			case role == bus.RoleLive:
				live = &m
			case role == bus.RoleDark:
				snap.Paired = comparison(exp, m, live)
			}
			if err != nil {
				log.Warn("metrics unavailable", "iteration", k, "role", role, "err", err)
			}
			if m.Late > 0 {
				log.Warn("observations arrived after their iteration was measured: counted from this iteration on", "iteration", k, "role", role, "requests", m.Late)
				r.prom.late.WithLabelValues(role).Add(float64(m.Late))
			}
			if !r.publish(ctx, log, exp, snap) {
				return
			}
			r.prom.published(snap, err != nil)
		}
	}
	log.Info("clock done", "iterations", total)
}

// measure asks the window for role's values, retrying a failing source for
// up to MeasureTimeout: a NATS restart at the wrong moment must not turn an
// iteration's values unavailable. A source with no values, or a closed
// window, is not asked again.
func (r *runner) measure(ctx context.Context, log *slog.Logger, open func(context.Context) (Window, error), role string, end time.Time) (Measurement, error) {
	p := retry.Policy{First: 100 * time.Millisecond, Max: time.Second, Within: r.cfg.MeasureTimeout}
	return retry.Value(ctx, p, func(ctx context.Context) (Measurement, error) {
		w, err := open(ctx)
		if err != nil {
			return Measurement{}, err
		}
		m, err := w.Measure(ctx, role, end)
		if errors.Is(err, ErrNoValues) || errors.Is(err, ErrClosed) {
			return m, retry.Permanent(err)
		}
		return m, err
	}, func(err error, _ time.Duration) {
		log.Debug("measurement failed; retrying", "role", role, "err", err)
	})
}

// snapshot builds the snapshot of one role at the end of iteration k. When
// the source failed every value is unavailable, with the reason: never zero,
// so an objective on it is false ("unavailable"), as in Iter8. An
// unavailable value keeps the source's reason when it gave one.
func (r *runner) snapshot(exp *experiment.Experiment, k int32, role string, start, end time.Time, m Measurement, err error) *bus.Snapshot {
	snap := &bus.Snapshot{
		Iteration: k,
		Role:      role,
		Version:   versionName(exp, role),
		Start:     start,
		End:       end.UTC(),
		Source:    r.cfg.Source,
		Values:    m.Values,
		Mirror:    m.Mirror,
		Intervals: m.Intervals,
		Needed:    m.Needed,
		Loss:      m.Loss,
	}
	if err != nil {
		snap.Values = map[string]*float64{}
		snap.Errors = map[string]string{}
		snap.Intervals, snap.Needed = nil, nil
		for _, name := range experiment.MetricNames() {
			snap.Values[name] = nil
			snap.Errors[name] = fmt.Sprintf("source %s failed: %v", r.cfg.Source, err)
		}
		return snap
	}
	for name, v := range m.Values {
		if v == nil {
			if snap.Errors == nil {
				snap.Errors = map[string]string{}
			}
			reason := m.Reasons[name]
			if reason == "" {
				reason = "no value: no request of this version observed since the experiment started"
			}
			snap.Errors[name] = reason
		}
	}
	return snap
}

func versionName(exp *experiment.Experiment, role string) string {
	if role == bus.RoleDark {
		return exp.BaselineName()
	}
	return experiment.LiveVersion
}

// publish publishes the snapshot with Msg-Id <uid>.metrics.<role>.<k>, so a
// restarted collector's republication is dropped by the stream. It retries
// until it succeeds or ctx ends: a lost snapshot would stall the judge.
func (r *runner) publish(ctx context.Context, log *slog.Logger, exp *experiment.Experiment, snap *bus.Snapshot) bool {
	ev := bus.NewEvent(bus.EventMetrics, Name, exp, time.Now())
	ev.Snapshot = snap
	ev.Message = fmt.Sprintf("iteration %d/%d: %s version %s measured", snap.Iteration, exp.TotalIterations(), snap.Role, snap.Version)
	id := bus.MsgID(exp.Metadata.UID, bus.EventMetrics, snap.Role, strconv.Itoa(int(snap.Iteration)))
	// Every second: a lost snapshot would stall the judge.
	err := retry.Do(ctx, retry.Policy{First: time.Second, Max: time.Second}, func(ctx context.Context) error {
		return bus.Publish(ctx, r.js, ev, id)
	}, func(err error, _ time.Duration) {
		log.Warn("publish snapshot; retrying", "iteration", snap.Iteration, "role", snap.Role, "err", err)
	})
	return err == nil
}
