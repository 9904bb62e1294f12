package proxy

import (
	"sync"
	"sync/atomic"
	"time"
)

// pair joins the live and the dark answer to one mirrored request, which
// end in either order on two goroutines (ServeHTTP and sendCopy). Each side
// writes its own fields, then counts itself done; the side that counts
// last has both answers and records the pair in the dark recorder, in the
// slot of that instant (see route.pair). A side whose answer is unknown
// (the client went away before live answered; the copy was cut short by a
// teardown) voids the pair: it was not a comparison of the two versions.
// A copy that was never sent is no pair either: mirror makes none.
//
// Pairs are pooled: a mirrored request allocates none once the pool is warm.
type pair struct {
	pending                atomic.Int32 // answers still out: 2, 1, 0
	liveMs, darkMs         float64
	liveFailed, darkFailed bool
	liveKnown, darkKnown   bool
}

var pairs = sync.Pool{New: func() any { return new(pair) }}

func newPair() *pair {
	c := pairs.Get().(*pair)
	c.pending.Store(2)
	return c
}

// live records the live answer (known false: none). A nil pair records
// nothing: the request was not mirrored.
func (c *pair) live(rt *route, ms float64, failed, known bool) {
	if c == nil {
		return
	}
	c.liveMs, c.liveFailed, c.liveKnown = ms, failed, known
	c.done(rt)
}

// dark records the dark answer (known false: none).
func (c *pair) dark(rt *route, ms float64, failed, known bool) {
	if c == nil {
		return
	}
	c.darkMs, c.darkFailed, c.darkKnown = ms, failed, known
	c.done(rt)
}

// done counts one side in; the atomic orders the first side's writes
// before the last side's reads.
func (c *pair) done(rt *route) {
	if c.pending.Add(-1) != 0 {
		return
	}
	if c.liveKnown && c.darkKnown {
		rt.rec[roleDark].ObservePair(time.Now(), c.liveMs, c.darkMs, c.liveFailed, c.darkFailed)
	}
	c.liveMs, c.darkMs = 0, 0
	c.liveFailed, c.darkFailed, c.liveKnown, c.darkKnown = false, false, false, false
	pairs.Put(c)
}

// pairCapMs is the cap of a pair's latencies: the mirror timeout, the
// longest a dark answer can take. A live answer slower than that counts as
// the cap too, so that both lie in the range the intervals assume.
func pairCapMs(timeout time.Duration) float64 { return float64(timeout.Nanoseconds()) / 1e6 }
