package sketch

import (
	"math"
	"slices"
	"sync"
	"time"

	"github.com/darklaunch/darklaunch/shared/bus"
)

// Grid cuts time into the slots a Recorder counts requests in: slot j is
// [Origin + j·Width, Origin + (j+1)·Width). The proxy's origin is the
// experiment's start (or, before the proxy knows it, the moment the route
// was set up, just before the start), so that every iteration's end is a
// slot boundary.
type Grid struct {
	Origin time.Time
	Width  time.Duration
}

// Index is the slot that holds t.
func (g Grid) Index(t time.Time) int64 {
	d := t.Sub(g.Origin)
	j := int64(d / g.Width)
	if d < 0 && d%g.Width != 0 {
		j-- // floor, not truncation, before the origin
	}
	return j
}

// Bounds returns where slot j starts and ends.
func (g Grid) Bounds(j int64) (start, end time.Time) {
	start = g.Origin.Add(time.Duration(j) * g.Width)
	return start, start.Add(g.Width)
}

// SlotWidth is the slot width for a proxy that flushes every flush: the
// longest exact fraction of a second (1 s, 500 ms, 250 ms, 200 ms, 125 ms,
// 100 ms, ...) no longer than flush, so that every iteration's end, a whole
// number of seconds after the experiment's start, is a slot boundary. A
// flush of a second or more gets 1 s slots.
func SlotWidth(flush time.Duration) time.Duration {
	if flush >= time.Second {
		return time.Second
	}
	best := time.Duration(1)
	// The divisors of 10⁹ ns are 2^a·5^b with a, b ≤ 9.
	for p2 := time.Duration(1); p2 <= 512; p2 *= 2 {
		for d := p2; d <= time.Second; d *= 5 {
			if time.Second%d == 0 && d <= flush && d > best {
				best = d
			}
		}
	}
	return best
}

// RecorderSpan is how far a Recorder's flushes may fall behind before a
// slot's observations are carried into a later slot (counted late, in
// Slot.Late, never lost): its ring holds this span of slots, at least 8 and
// at most 1024.
const RecorderSpan = 32 * time.Second

// Recorder accumulates the observations of one version per slot of its
// grid, by the instant each request ended, until a Flush takes them. It is
// safe for concurrent use; Observe is the proxy's per-request cost: one
// short lock of the slot's entry, no allocation once the first flushes have
// returned their sketches for reuse.
type Recorder struct {
	grid     Grid
	ring     []slotEntry
	mask     int64
	sketches sync.Pool // emptied sketches, for the next slots
	pairCap  float64   // ms; see SetPairCap
}

// slotEntry is one slot's observations; slot j lives in ring[j & mask].
type slotEntry struct {
	mu      sync.Mutex
	used    bool
	slot    int64
	count   int64
	errors  int64
	late    int64
	sumMs   float64
	sketch  *Sketch // nil until the slot's first observation
	tallies []int64
	pairs   bus.Pairs // CapMs unset: the recorder's
}

// NewRecorder returns an empty recorder on grid (a width that is not
// positive is taken as 1 s) counting, besides requests, tallies kinds of
// events (Tally).
func NewRecorder(grid Grid, tallies int) *Recorder {
	if grid.Width <= 0 {
		grid.Width = time.Second
	}
	n := int64(8)
	for n < 1024 && time.Duration(n)*grid.Width < RecorderSpan {
		n *= 2
	}
	r := &Recorder{grid: grid, ring: make([]slotEntry, n), mask: n - 1}
	r.sketches.New = func() any { return NewSketch() }
	for i := range r.ring {
		r.ring[i].tallies = make([]int64, max(tallies, 0))
	}
	return r
}

// Grid is the recorder's grid.
func (r *Recorder) Grid() Grid { return r.grid }

// Observe records one request that ended at end: its latency and whether it
// failed.
func (r *Recorder) Observe(end time.Time, ms float64, failed bool) {
	e := r.lock(end, true)
	e.count++
	if failed {
		e.errors++
	}
	if ms > 0 {
		e.sumMs += ms
	}
	if e.sketch == nil {
		e.sketch = r.sketches.Get().(*Sketch)
	}
	e.sketch.Add(ms)
	e.mu.Unlock()
}

// SetPairCap sets the cap of ObservePair's latencies, in ms (the mirror
// timeout); call it before the recorder is used. Without it ObservePair
// records nothing: pairs are meaningless without their bound.
func (r *Recorder) SetPairCap(ms float64) {
	if ms > 0 && !math.IsInf(ms, 0) {
		r.pairCap = ms
	}
}

// ObservePair records one mirrored request answered by both versions, in
// the slot of end (the instant the later answer ended): the live and the
// dark latency, each held to [0, the pair cap], and which failed.
func (r *Recorder) ObservePair(end time.Time, liveMs, darkMs float64, liveFailed, darkFailed bool) {
	if r.pairCap == 0 {
		return
	}
	liveMs = min(max(liveMs, 0), r.pairCap)
	darkMs = min(max(darkMs, 0), r.pairCap)
	e := r.lock(end, false)
	e.pairs.Observe(liveMs, darkMs, liveFailed, darkFailed)
	e.mu.Unlock()
}

// Tally counts one event of kind i (0 ≤ i < the recorder's tallies; another
// i counts nothing) at instant at, such as a copy mirrored.
func (r *Recorder) Tally(at time.Time, i int) {
	e := r.lock(at, false)
	if uint(i) < uint(len(e.tallies)) {
		e.tallies[i]++
	}
	e.mu.Unlock()
}

// lock returns the entry of t's slot, locked, labelled with that slot. An
// entry still holding a slot one ring earlier (the flushes fell more than
// RecorderSpan behind) moves on with what it holds, counted late; an
// observation of a slot the entry has moved past joins the later slot, late
// too (request says whether the caller records a request).
func (r *Recorder) lock(t time.Time, request bool) *slotEntry {
	j := r.grid.Index(t)
	e := &r.ring[j&r.mask]
	e.mu.Lock()
	switch {
	case !e.used:
		e.used, e.slot = true, j
	case e.slot < j:
		e.late, e.slot = e.count, j
	case e.slot > j && request:
		e.late++
	}
	return e
}

// Slot is what a Recorder saw in one slot since the last Flush.
type Slot struct {
	Start, End time.Time
	Count      int64
	Errors     int64
	SumMs      float64
	// Sketch is the encoded latency sketch, nil when Count is 0.
	Sketch []byte
	// Tallies by kind (see Tally).
	Tallies []int64
	// Late counts the requests among Count that ended in an earlier slot
	// (see RecorderSpan).
	Late int64
	// Pairs sums the pairs completed in the slot (ObservePair), nil when
	// there are none.
	Pairs *bus.Pairs
}

// Flush takes what was recorded in the slots that end at or before before
// (every slot, the current one too, when before is zero), in slot order.
func (r *Recorder) Flush(before time.Time) []Slot {
	var out []Slot
	for i := range r.ring {
		e := &r.ring[i]
		e.mu.Lock()
		if !e.used {
			e.mu.Unlock()
			continue
		}
		start, end := r.grid.Bounds(e.slot)
		if !before.IsZero() && end.After(before) {
			e.mu.Unlock()
			continue
		}
		s := Slot{Start: start, End: end, Count: e.count, Errors: e.errors, SumMs: e.sumMs, Late: e.late, Tallies: slices.Clone(e.tallies)}
		if e.pairs.N > 0 {
			p := e.pairs
			p.CapMs = r.pairCap
			s.Pairs = &p
		}
		e.pairs = bus.Pairs{}
		sk := e.sketch
		e.used, e.count, e.errors, e.sumMs, e.late, e.sketch = false, 0, 0, 0, 0, nil
		clear(e.tallies)
		e.mu.Unlock()
		if sk != nil {
			s.Sketch = sk.Encode()
			sk.s.Clear()
			r.sketches.Put(sk)
		}
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b Slot) int { return a.Start.Compare(b.Start) })
	return out
}

// Batch is the observation batch of s: Start and End are the slot's
// (Slotted), Mirrored and Dropped are the caller's to fill in.
func (s *Slot) Batch(uid, role, router string) *bus.ObservationBatch {
	return &bus.ObservationBatch{
		UID: uid, Role: role, Router: router,
		Start: s.Start.UTC(), End: s.End.UTC(), Slotted: true,
		Count: s.Count, Errors: s.Errors, SumMs: s.SumMs, Sketch: s.Sketch,
		Pairs: s.Pairs,
	}
}
