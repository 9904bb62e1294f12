package judge

import (
	"maps"
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
	type counts struct {
		sent, succeeded, failed, canceled, answered int64
		rate                                        float64
		instance                                    string
	}
	of := func(l *experiment.LoadStatus) counts {
		return counts{l.Sent, l.Succeeded, l.Failed, l.Canceled, l.Answered, l.AchievedRate, l.Instance}
	}
	return of(a) == of(b) && (a.Window == nil) == (b.Window == nil) && (a.Window == nil || *a.Window == *b.Window) &&
		maps.Equal(a.Shares, b.Shares)
}

// mergeLoad is the load status after report p, given the last one, prev.
// A report of one loadgen alone is the whole traffic's, as it always was.
// Once several instances share the rate (p.Instances > 1), each reports
// its own share: the status keeps every instance's latest report
// (Shares) and counts their sum, so that an instance that stopped or
// died still counts what it sent. The window is summed only where every
// share has counted the same iteration; else the last one stays.
func mergeLoad(prev *experiment.LoadStatus, p bus.LoadProgress) experiment.LoadStatus {
	share := experiment.LoadShare{Sent: p.Sent, Succeeded: p.Succeeded, Failed: p.Failed, Canceled: p.Canceled,
		AchievedRate: p.AchievedRate, Answered: p.Answered}
	if p.Window != nil {
		share.Window = *p.Window
	}
	shared := prev != nil && len(prev.Shares) > 0
	if p.Instance == "" || (p.Instances <= 1 && !shared) {
		return experiment.LoadStatus{Sent: p.Sent, Succeeded: p.Succeeded, Failed: p.Failed, Canceled: p.Canceled,
			AchievedRate: p.AchievedRate, Answered: p.Answered, Window: p.Window, Instance: p.Instance}
	}
	shares := map[string]experiment.LoadShare{}
	switch {
	case shared:
		maps.Copy(shares, prev.Shares)
	case prev != nil && prev.Instance != "" && prev.Instance != p.Instance:
		// The instance that was alone until now: its last report.
		s := experiment.LoadShare{Sent: prev.Sent, Succeeded: prev.Succeeded, Failed: prev.Failed,
			Canceled: prev.Canceled, AchievedRate: prev.AchievedRate, Answered: prev.Answered}
		if prev.Window != nil {
			s.Window = *prev.Window
		}
		shares[prev.Instance] = s
	}
	shares[p.Instance] = share
	sum := experiment.LoadStatus{Shares: shares}
	var window *experiment.WindowCount
	for _, name := range slices.Sorted(maps.Keys(shares)) {
		s := shares[name]
		sum.Sent += s.Sent
		sum.Succeeded += s.Succeeded
		sum.Failed += s.Failed
		sum.Canceled += s.Canceled
		sum.AchievedRate += s.AchievedRate
		sum.Answered += s.Answered
		switch {
		case window == nil:
			window = &experiment.WindowCount{Iteration: s.Window.Iteration, Requests: s.Window.Requests}
		case window.Iteration == s.Window.Iteration:
			window.Requests += s.Window.Requests
		default:
			window.Iteration = -1 // the shares disagree
		}
	}
	switch {
	case window != nil && window.Iteration > 0:
		sum.Window = window
	case prev != nil:
		sum.Window = prev.Window
	}
	return sum
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
