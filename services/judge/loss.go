package judge

import (
	"slices"

	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

// Lost observations (experiment.ObservationLoss). The collector finds what
// the routers' batch numbering shows (a gap, a router stopped without its
// last flush); the judge estimates how many live requests that was, from
// loadgen's count of the requests a version answered before the end of an
// iteration (LoadProgress.Window) against the live request-count the proxy's
// observations give for the same window. loadgen reads an answer after the
// proxy finished the request, so without a loss its count is never the
// higher one; a few requests either side of a window's edge are noise, and
// a difference is only called a loss beyond lossTolerance unless the
// numbering shows one.

// keptLiveCounts is how many recent live request-counts the status keeps:
// loadgen's window lags the snapshots by up to an interval or two.
const keptLiveCounts = 4

// lossTolerance is the difference (in requests, and as a share of the
// answered ones) below which loadgen's and the proxy's counts are taken to
// agree when the batch numbering shows nothing lost.
const (
	lossToleranceRequests = 2
	lossToleranceShare    = 0.01
)

// sameLoad reports whether two load reports say the same.
func sameLoad(a, b *experiment.LoadStatus) bool {
	if a == nil || b == nil {
		return a == b
	}
	x, y := *a, *b
	x.Window, y.Window = nil, nil
	return x == y && (a.Window == nil) == (b.Window == nil) && (a.Window == nil || *a.Window == *b.Window)
}

// noteLiveCount keeps the live request-count of a snapshot measured from the
// proxy's observations; it reports whether the status changed.
func noteLiveCount(st *experiment.Status, snap *bus.Snapshot) bool {
	v := snap.Values[experiment.MetricRequestCount]
	if snap.Source != "bus" || v == nil {
		return false
	}
	wc := experiment.WindowCount{Iteration: snap.Iteration, Requests: int64(*v)}
	if i := slices.IndexFunc(st.LiveCounts, func(c experiment.WindowCount) bool { return c.Iteration == wc.Iteration }); i >= 0 {
		if st.LiveCounts[i] == wc {
			return false
		}
		st.LiveCounts[i] = wc
	} else {
		st.LiveCounts = append(st.LiveCounts, wc)
		slices.SortFunc(st.LiveCounts, func(a, b experiment.WindowCount) int { return int(a.Iteration - b.Iteration) })
		if n := len(st.LiveCounts) - keptLiveCounts; n > 0 {
			st.LiveCounts = slices.Delete(st.LiveCounts, 0, n)
		}
	}
	return true
}

// updateLoss merges what a snapshot's collector found into st.Loss and
// estimates the requests lost from the latest window both loadgen and the
// proxy counted.
func updateLoss(st *experiment.Status, found *experiment.ObservationLoss) {
	l := st.Loss
	if l == nil {
		l = &experiment.ObservationLoss{}
	}
	l.Merge(found)
	if st.Load != nil && st.Load.Window != nil {
		w := *st.Load.Window
		i := slices.IndexFunc(st.LiveCounts, func(c experiment.WindowCount) bool { return c.Iteration == w.Iteration })
		if i >= 0 && w.Iteration >= l.Iteration {
			l.Iteration, l.Answered, l.Counted = w.Iteration, w.Requests, st.LiveCounts[i].Requests
			l.Requests = max(0, l.Answered-l.Counted)
		}
	}
	evidence := l.Batches > 0 || len(l.Stopped) > 0
	if !evidence && float64(l.Requests) <= max(lossToleranceRequests, lossToleranceShare*float64(l.Answered)) {
		// Noise at a window's edge, not a loss.
		l.Requests = 0
	}
	if l.Lost() {
		st.Loss = l
	} else {
		st.Loss = nil
	}
}

// sameLoss reports whether two loss reports say the same.
func sameLoss(a, b *experiment.ObservationLoss) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Requests == b.Requests && a.Iteration == b.Iteration && a.Answered == b.Answered &&
		a.Counted == b.Counted && a.Batches == b.Batches && slices.Equal(a.Stopped, b.Stopped)
}
