package collector

import (
	"slices"

	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

// seriesLog follows the numbering of the routers' observation batches (see
// bus.ObservationBatch): each route a proxy sets up numbers its batches 1,
// 2, 3, ... in a series of its own and marks the last one Final. What it
// shows is what never reached the collector:
//   - a gap: a batch the router made but never published (it kept too many
//     while NATS was unreachable). Batches of a series are published in
//     order, so a gap below the highest number seen is for good;
//   - a series without its Final batch whose router is gone: the router
//     stopped without its last flush (kill -9, a crash), and what it had
//     observed since its last flush is gone. How many requests that was
//     only loadgen's counts can say (the judge estimates it).
//
// A router is gone when its lease in the members bucket is (Leases), or
// when a later series of the same router went on (restarted under the same
// name). Any number of routers run side by side, and one may publish
// nothing for long (no traffic reaches it), so another router's series
// going on says nothing of a router whose lease is live. Of one whose
// lease is stale (heartbeats missed: killed a moment ago, and maybe
// restarted under another name) or that holds none (older than the
// leases, or gone before this collector started), a later series of any
// router is taken for its end, as with a single router.
//
// Batches without a series (routers before numbering) say nothing.
type seriesLog struct {
	byID  map[string]*series
	order uint64 // arrival counter
}

type series struct {
	router string
	seen   uint64 // batches received
	top    uint64 // highest Seq received
	final  bool
	first  uint64 // arrival of the first batch
	last   uint64 // arrival of the last batch
}

// add records b; each batch is added once (the stream de-duplicates by
// Msg-Id and the window skips redeliveries).
func (l *seriesLog) add(b *bus.ObservationBatch) {
	if b.Series == "" {
		return
	}
	if l.byID == nil {
		l.byID = map[string]*series{}
	}
	l.order++
	s := l.byID[b.Series]
	if s == nil {
		s = &series{router: b.Router, first: l.order}
		l.byID[b.Series] = s
	}
	s.seen++
	s.top = max(s.top, b.Seq)
	s.final = s.final || b.Final
	s.last = l.order
}

// loss says what the numbering shows lost so far, with the routers'
// leases (nil: none known); nil when nothing.
func (l *seriesLog) loss(leases Leases) *experiment.ObservationLoss {
	var out experiment.ObservationLoss
	for _, s := range l.byID {
		if s.top > s.seen {
			out.Batches += int64(s.top - s.seen)
		}
		if s.final {
			continue
		}
		lease := LeaseUnknown
		if leases != nil {
			lease = leases.Lease(s.router)
		}
		if lease == LeaseGone {
			if !slices.Contains(out.Stopped, s.router) {
				out.Stopped = append(out.Stopped, s.router)
			}
			continue
		}
		for _, t := range l.byID {
			if t.first > s.last && (lease != LeaseLive || t.router == s.router) {
				if !slices.Contains(out.Stopped, s.router) {
					out.Stopped = append(out.Stopped, s.router)
				}
				break
			}
		}
	}
	if !out.Lost() {
		return nil
	}
	slices.Sort(out.Stopped)
	return &out
}
