package collector

import (
	"context"
	"errors"
	"time"

	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

// Source measures the versions of one experiment.
type Source interface {
	Open(ctx context.Context, exp *experiment.Experiment) (Window, error)
}

// Window measures one experiment; Measure returns cumulative values over
// [exp start, end) for role (bus.RoleLive / bus.RoleDark). An error means the
// source could not measure at all (the clock retries); a value the source
// could not compute is unavailable in the Measurement instead.
type Window interface {
	Measure(ctx context.Context, role string, end time.Time) (Measurement, error)
	Close() error
}

// Measurement is what a window measured of one version.
type Measurement struct {
	// Values by metric name; a nil value is unavailable (e.g. a latency when
	// no request was observed), never zero.
	Values map[string]*float64
	// Reasons explains unavailable values by metric name ("query failed:
	// ..."); an unavailable value without one gets the clock's generic reason.
	Reasons map[string]string
	// Mirror counts what the proxy mirrored and dropped; nil when the source
	// does not know (Prometheus).
	Mirror *experiment.MirrorStats
	// Intervals holds a confidence interval per metric where the data
	// allows one; Needed, for the dark version, how many more requests each
	// inconclusive objective needs (see intervalPlan).
	Intervals map[string]*experiment.Interval
	Needed    []bus.Needed
	// Late counts the requests in Values that belonged to an earlier
	// measurement's window but arrived after it (the bus source).
	Late int64
	// Pairs sums the pairs of live and dark answers to the same mirrored
	// requests in the window (the bus source, dark); nil when the source
	// has none (Prometheus).
	Pairs *bus.Pairs
	// Loss is what the bus source found lost so far (seriesLog); nil when
	// nothing.
	Loss *experiment.ObservationLoss
}

// Sentinel errors of the sources.
var (
	// ErrNoValues: the source has nothing for this version (flagger's
	// ErrNoValuesFound); its values are unavailable, not zero.
	ErrNoValues = errors.New("no values found")
	// ErrNotCaughtUp: the source could not read every observation already
	// stored in time; measuring now would undercount.
	ErrNotCaughtUp = errors.New("observations not caught up")
	// ErrUnknownSource: no source has that name.
	ErrUnknownSource = errors.New("unknown metrics source")
	// ErrClosed: the window was closed.
	ErrClosed = errors.New("window closed")
)
