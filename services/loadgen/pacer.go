package loadgen

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// schedule is an open-loop timetable: request i is due at Start + i/Rate,
// whatever happened to the requests before it. End (exclusive; zero for
// none) bounds it, so at any time t at most Rate·(t−Start)+1 requests are due.
type schedule struct {
	Start time.Time
	Rate  float64
	End   time.Time
	// First is the first request (slot) sent: those before it were due
	// before this traffic began (a restart, a join) and are not burst.
	First int64
	// Share, when set, is this instance's place among the loadgens that
	// share the traffic (members.Group.Share), asked at each slot's due
	// time: slot i is this instance's when i mod n == index, and none is
	// when n is 0 (the instance left). nil: every slot is.
	Share func() (index, n int)
}

// mine says whether slot i is this instance's to send now.
func (s schedule) mine(i int64) bool {
	if s.Share == nil {
		return true
	}
	index, n := s.Share()
	return n > 0 && i%int64(n) == int64(index)
}

// firstSlot is the first slot of a timetable that started at start and is
// joined at now: the first one due at or after now.
func firstSlot(start, now time.Time, rate float64) int64 {
	if !now.After(start) {
		return 0
	}
	return int64(math.Ceil(now.Sub(start).Seconds() * rate))
}

// due is the intended send time of request i.
func (s schedule) due(i int64) time.Time {
	return s.Start.Add(time.Duration(float64(i) / s.Rate * float64(time.Second)))
}

// lateGrace is how long after the schedule's end the requests due before it
// are still sent by a generator running late: a moment of a busy machine
// at the end costs no request, and one that cannot keep up at all stops
// soon after the end instead of sending its whole backlog.
const lateGrace = time.Second

// pace sends the schedule's requests with concurrency workers until ctx ends
// or the schedule does, then returns, once every worker is done, how many
// it fired and when it fired the last one.
//
// The workers take tickets from one counter: a worker that takes ticket i
// waits until it is due and calls fire with its own index w (0 ≤ w <
// concurrency, for state of its own: a connection, a latency shard) and
// due(i), from which latency is measured. When a stalled server holds every
// worker, the tickets that fall due meanwhile are taken late, when a worker
// is free again, and fired at once: the wait shows up as their latency
// instead of as requests never sent (no coordinated omission, as in wrk2 or
// fortio -uniform). A worker does not sleep for a ticket already due, so a
// timer coarser than 1/rate only adds to latency, never takes away from the
// rate.
//
// With a Share, a worker takes every slot as before but fires only this
// instance's, decided when the slot is due (not when it is taken, which at
// a low rate can be many slots ahead), so that a change of members moves
// the slots due from then on: the instances' union is the schedule itself
// whenever their views of the members agree.
//
// Every request due before End is sent, unless it is still untaken
// lateGrace after End: a generator that cannot keep up then sends fewer,
// and the time it took, up to its last request, shows it (the achieved
// rate is to be computed over that time, not over the schedule's).
func pace(ctx context.Context, s schedule, concurrency int, fire func(ctx context.Context, w int, due time.Time)) (fired int64, last time.Time) {
	var next, n atomic.Int64
	next.Store(s.First)
	lasts := make([]time.Time, concurrency) // by worker
	var wg sync.WaitGroup
	for w := range concurrency {
		wg.Go(func() {
			timer := time.NewTimer(time.Hour)
			timer.Stop()
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				due, now := s.due(i), time.Now()
				if !s.End.IsZero() && (!due.Before(s.End) || now.Sub(s.End) > lateGrace) {
					return
				}
				if d := due.Sub(now); d > 0 {
					timer.Reset(d)
					select {
					case <-ctx.Done():
						timer.Stop()
						return
					case <-timer.C:
					}
				}
				if ctx.Err() != nil {
					return
				}
				if !s.mine(i) {
					continue // another instance's
				}
				n.Add(1)
				lasts[w] = time.Now()
				fire(ctx, w, due)
			}
		})
	}
	wg.Wait()
	for _, t := range lasts {
		last = later(last, t)
	}
	return n.Load(), last
}
