package sketch

import (
	"sync"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/shared/bus"
)

// batchOf is the batch of one slot in which the given latencies were
// observed, the first failed of them failures.
func batchOf(latMs []float64, failed int) *bus.ObservationBatch {
	t0 := time.Unix(1700000000, 0)
	r := NewRecorder(Grid{Origin: t0, Width: time.Second}, 0)
	for i, ms := range latMs {
		r.Observe(t0, ms, i < failed)
	}
	s := Slot{Start: t0, End: t0.Add(time.Second)}
	if slots := r.Flush(time.Time{}); len(slots) == 1 {
		s = slots[0]
	}
	return s.Batch("u", bus.RoleLive, "r")
}

// TestGridEdges: a slot holds its start and not its end, before the origin
// too.
func TestGridEdges(t *testing.T) {
	o := time.Unix(1700000000, 123456789)
	g := Grid{Origin: o, Width: time.Second}
	for _, tc := range []struct {
		at   time.Duration
		want int64
	}{
		{0, 0}, {time.Second - 1, 0}, {time.Second, 1}, {3*time.Second - 1, 2}, {3 * time.Second, 3},
		{-1, -1}, {-time.Second, -1}, {-time.Second - 1, -2},
	} {
		j := g.Index(o.Add(tc.at))
		if j != tc.want {
			t.Errorf("Index(origin%+v) = %d, want %d", tc.at, j, tc.want)
		}
		start, end := g.Bounds(j)
		if at := o.Add(tc.at); at.Before(start) || !at.Before(end) {
			t.Errorf("origin%+v is outside its slot [%v, %v)", tc.at, start.Sub(o), end.Sub(o))
		}
	}
}

// TestSlotWidth: an exact fraction of a second no longer than the flush.
func TestSlotWidth(t *testing.T) {
	for flush, want := range map[time.Duration]time.Duration{
		time.Second: time.Second, 5 * time.Second: time.Second, 500 * time.Millisecond: 500 * time.Millisecond,
		300 * time.Millisecond: 250 * time.Millisecond, 200 * time.Millisecond: 200 * time.Millisecond,
		50 * time.Millisecond: 50 * time.Millisecond, 30 * time.Millisecond: 25 * time.Millisecond,
		time.Millisecond: time.Millisecond, 3: 2,
	} {
		got := SlotWidth(flush)
		if got != want || time.Second%got != 0 {
			t.Errorf("SlotWidth(%v) = %v, want %v", flush, got, want)
		}
	}
}

// TestRecorderSlotsByEnd: a request is counted in the slot of its end, one
// ending on a boundary in the slot that starts there; a flush takes only
// the slots closed by then, in order, until a flush of everything.
func TestRecorderSlotsByEnd(t *testing.T) {
	o := time.Unix(1700000000, 0)
	r := NewRecorder(Grid{Origin: o, Width: time.Second}, 1)
	at := func(d time.Duration) time.Time { return o.Add(d) }
	r.Observe(at(2*time.Second-1), 5, false) // slot 1
	r.Observe(at(2*time.Second), 7, true)    // slot 2
	r.Observe(at(0), 3, false)               // slot 0
	r.Observe(at(time.Second-1), 4, false)   // slot 0
	r.Tally(at(time.Second), 0)              // slot 1

	got := r.Flush(at(2 * time.Second)) // slots 0 and 1 are closed; 2 is open
	want := []struct{ start, count, errors, tally int64 }{{0, 2, 0, 0}, {1, 1, 0, 1}}
	if len(got) != len(want) {
		t.Fatalf("flush at 2s: %d slots, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		s := got[i]
		if s.Start != at(time.Duration(w.start)*time.Second) || s.End.Sub(s.Start) != time.Second ||
			s.Count != w.count || s.Errors != w.errors || s.Tallies[0] != w.tally || s.Late != 0 {
			t.Errorf("slot %d: %+v, want start %ds, %d requests, %d errors, tally %d", i, s, w.start, w.count, w.errors, w.tally)
		}
		if (s.Count > 0) != (s.Sketch != nil) {
			t.Errorf("slot %d: %d requests, sketch %d bytes", i, s.Count, len(s.Sketch))
		}
	}
	if again := r.Flush(at(2 * time.Second)); len(again) != 0 {
		t.Errorf("a second flush took %+v again", again)
	}
	rest := r.Flush(time.Time{})
	if len(rest) != 1 || rest[0].Start != at(2*time.Second) || rest[0].Count != 1 || rest[0].Errors != 1 {
		t.Errorf("the open slot: %+v, want slot 2 with 1 failed request", rest)
	}
}

// TestRecorderFallsBehind: a slot left unflushed for a whole ring moves on
// with its observations, which are counted late, never lost.
func TestRecorderFallsBehind(t *testing.T) {
	o := time.Unix(1700000000, 0)
	r := NewRecorder(Grid{Origin: o, Width: time.Second}, 0)
	ring := time.Duration(len(r.ring)) * time.Second
	r.Observe(o, 1, false)
	r.Observe(o, 2, false)
	r.Observe(o.Add(ring), 3, false) // the same entry, one ring later
	r.Observe(o, 4, true)            // a straggler of the slot moved past
	got := r.Flush(time.Time{})
	if len(got) != 1 || got[0].Start != o.Add(ring) || got[0].Count != 4 || got[0].Errors != 1 || got[0].Late != 3 {
		t.Errorf("slots %+v, want one at %v with 4 requests, 3 of them late", got, ring)
	}
}

// TestRecorderConcurrent: flushes while requests are observed across slot
// boundaries lose nothing and count nothing twice.
func TestRecorderConcurrent(t *testing.T) {
	o := time.Now()
	r := NewRecorder(Grid{Origin: o, Width: time.Millisecond}, 1)
	const workers, each = 4, 2000
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				at := o.Add(time.Duration(i*workers+w) * 10 * time.Microsecond)
				r.Observe(at, 1, i%2 == 0)
				r.Tally(at, 0)
			}
		})
	}
	var count, errs, tallies int64
	add := func(slots []Slot) {
		for _, s := range slots {
			count, errs, tallies = count+s.Count, errs+s.Errors, tallies+s.Tallies[0]
		}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for end := o; ; end = end.Add(time.Millisecond) {
		select {
		case <-done:
			add(r.Flush(time.Time{}))
			if count != workers*each || errs != workers*each/2 || tallies != workers*each {
				t.Errorf("%d requests, %d errors, %d tallies; want %d, %d, %d", count, errs, tallies, workers*each, workers*each/2, workers*each)
			}
			return
		default:
			add(r.Flush(end))
		}
	}
}

// TestRecorderPairs: a pair is counted in the slot of the instant it was
// completed, each latency held to the cap, with who failed; a flush empties
// the slot; without a cap nothing is recorded.
func TestRecorderPairs(t *testing.T) {
	o := time.Unix(1700000000, 0)
	r := NewRecorder(Grid{Origin: o, Width: time.Second}, 0)
	r.ObservePair(o, 10, 20, false, false) // no cap yet: not recorded
	r.SetPairCap(100)
	r.ObservePair(o, 10, 20, false, false)
	r.ObservePair(o.Add(time.Second-1), 30, 250, false, true) // dark held to 100
	r.ObservePair(o.Add(time.Second), 40, 41, true, true)     // next slot
	r.Observe(o, 20, false)
	got := r.Flush(o.Add(time.Second))
	if len(got) != 1 || got[0].Pairs == nil || got[0].Count != 1 {
		t.Fatalf("slots %+v, want one with a request and pairs", got)
	}
	want := bus.Pairs{CapMs: 100}
	want.Observe(10, 20, false, false)
	want.Observe(30, 100, false, true)
	if p := *got[0].Pairs; p != want {
		t.Errorf("pairs %+v, want %+v", p, want)
	}
	if b := got[0].Batch("u", bus.RoleDark, "r"); b.Pairs != got[0].Pairs {
		t.Errorf("the batch does not carry the slot's pairs: %+v", b.Pairs)
	}
	rest := r.Flush(time.Time{})
	if len(rest) != 1 || rest[0].Count != 0 || rest[0].Pairs == nil || rest[0].Pairs.N != 1 || rest[0].Pairs.BothFailed != 1 {
		t.Errorf("the open slot: %+v, want only one pair, both failed", rest)
	}
	r.Observe(o.Add(3*time.Second), 1, false)
	if again := r.Flush(time.Time{}); len(again) != 1 || again[0].Pairs != nil {
		t.Errorf("a flushed slot's pairs came back: %+v", again)
	}
}
