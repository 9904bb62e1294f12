package loadgen

import (
	"context"
	"sync"
	"time"
)

// schedule is an open-loop timetable: request i is due at Start + i/Rate,
// whatever happened to the requests before it. End (exclusive; zero for
// none) bounds it, so at any time t at most Rate·(t−Start)+1 requests are due.
type schedule struct {
	Start time.Time
	Rate  float64
	End   time.Time
}

// due is the intended send time of request i.
func (s schedule) due(i int64) time.Time {
	return s.Start.Add(time.Duration(float64(i) / s.Rate * float64(time.Second)))
}

// pace fires one request per due time until ctx ends or the schedule does,
// with at most concurrency requests in flight, then waits for those in
// flight and returns how many it fired.
//
// fire gets the request's due time, and latency is measured from it: when a
// stalled server holds every slot, the dispatcher waits, and that wait shows
// up as latency of the requests that were due meanwhile instead of as
// requests never sent (no coordinated omission, as in wrk2).
func pace(ctx context.Context, s schedule, concurrency int, fire func(ctx context.Context, due time.Time)) int64 {
	slots := make(chan struct{}, concurrency)
	var inflight sync.WaitGroup
	defer inflight.Wait()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var i int64
	for ; ; i++ {
		due := s.due(i)
		if !s.End.IsZero() && !due.Before(s.End) {
			return i
		}
		if d := time.Until(due); d > 0 {
			timer.Reset(d)
			select {
			case <-ctx.Done():
				return i
			case <-timer.C:
			}
		}
		select {
		case <-ctx.Done():
			return i
		case slots <- struct{}{}:
		}
		if ctx.Err() != nil { // select picks at random when both are ready
			<-slots
			return i
		}
		inflight.Add(1)
		go func() {
			defer inflight.Done()
			defer func() { <-slots }()
			fire(ctx, due)
		}()
	}
}
