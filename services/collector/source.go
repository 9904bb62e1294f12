package collector

import (
	"context"
	"errors"
	"time"

	"github.com/darklaunch/darklaunch/shared/experiment"
)

// Source measures the versions of one experiment.
type Source interface {
	Open(ctx context.Context, exp *experiment.Experiment) (Window, error)
}

// Window measures one experiment; Measure returns cumulative values over
// [exp start, end) for role (bus.RoleLive / bus.RoleDark). A nil value is
// unavailable (e.g. a latency when no request was observed).
type Window interface {
	Measure(ctx context.Context, role string, end time.Time) (values map[string]*float64, mirror *experiment.MirrorStats, err error)
	Close() error
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
