package loadgen

import (
	"sync"
	"time"

	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
	"github.com/darklaunch/darklaunch/shared/sketch"
)

// tally counts the requests of one experiment's traffic and their
// client-side latencies, measured from each request's due time.
type tally struct {
	mu        sync.Mutex
	sent      int64
	succeeded int64
	failed    int64
	canceled  int64
	latency   *sketch.Sketch

	// The routed answers (bus.LoadProgress.Answered), in total and by the
	// iteration they came in (1-based; 0 before the start), for the
	// comparison with the live request-count of an iteration's window
	// (experiment.ObservationLoss). base is an earlier process's count up
	// to iteration baseIter.
	win      windows
	total    int64
	byIter   map[int32]int64
	base     int64
	baseIter int32
}

// windows are the experiment's iteration windows: iteration k ends at
// start + k × interval.
type windows struct {
	start    time.Time
	interval time.Duration
	total    int32
}

// iteration is the iteration whose window ends after t and holds it; 0
// before the start, total+1 after the last one.
func (w windows) iteration(t time.Time) int32 {
	if w.interval <= 0 || t.Before(w.start) {
		return 0
	}
	k := int64(t.Sub(w.start)/w.interval) + 1
	return int32(min(k, int64(w.total)+1))
}

func newTally(w windows) *tally {
	return &tally{latency: sketch.NewSketch(), win: w, byIter: map[int32]int64{}}
}

// resume starts from the totals an earlier process reported. The answers
// that process had after its last report are not known: the loss estimate
// can only be too low, never too high.
func (t *tally) resume(last experiment.LoadStatus) {
	t.mu.Lock()
	t.sent, t.succeeded, t.failed, t.canceled = last.Sent, last.Succeeded, last.Failed, last.Canceled
	t.total = last.Answered
	if w := last.Window; w != nil {
		t.base, t.baseIter = w.Requests, w.Iteration
	}
	t.mu.Unlock()
}

// answered records a routed answer that came at t.
func (t *tally) answered(at time.Time) {
	k := t.win.iteration(at)
	t.mu.Lock()
	t.total++
	t.byIter[k]++
	t.mu.Unlock()
}

// window counts the routed answers that came before the end of the last
// iteration that ended by now; nil before the first one ended. A request
// the proxy finished before that end but whose answer loadgen read after it
// is not in the count, so the count never exceeds the proxy's live
// request-count of that window unless observations were lost. Once the
// traffic is done no answer comes any more, and every answer is in the
// window of the iteration running now. t.mu is held.
func (t *tally) window(now time.Time, done bool) *experiment.WindowCount {
	j := t.win.iteration(now) - 1
	if done {
		j = min(j+1, t.win.total)
	}
	if j < 1 || j < t.baseIter {
		return nil
	}
	n := t.base
	for k, c := range t.byIter {
		if k > t.baseIter && k <= j {
			n += c
		}
	}
	return &experiment.WindowCount{Iteration: j, Requests: n}
}

// dispatched counts a request as sent.
func (t *tally) dispatched() {
	t.mu.Lock()
	t.sent++
	t.mu.Unlock()
}

// finished records a request's outcome: a 2xx answer succeeded; any other
// status, a transport error or a timeout failed. Every latency counts,
// failures included, since a timeout is the slowest answer there is.
func (t *tally) finished(latency time.Duration, ok bool) {
	ms := float64(latency) / float64(time.Millisecond)
	t.mu.Lock()
	if ok {
		t.succeeded++
	} else {
		t.failed++
	}
	t.latency.Add(ms)
	t.mu.Unlock()
}

// canceledByStop records a request cut short by the traffic's own stop: no
// outcome and no latency, since the target was not given the time to answer.
func (t *tally) canceledByStop() {
	t.mu.Lock()
	t.canceled++
	t.mu.Unlock()
}

// progress is the report with totals since the traffic started; elapsed is
// the time since then, for the achieved rate.
func (t *tally) progress(target float64, elapsed time.Duration, done bool, now time.Time) *bus.LoadProgress {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := &bus.LoadProgress{
		Sent:       t.sent,
		Succeeded:  t.succeeded,
		Failed:     t.failed,
		Canceled:   t.canceled,
		TargetRate: target,
		Done:       done,
		Answered:   t.total,
		Window:     t.window(now, done),
	}
	if s := elapsed.Seconds(); s > 0 {
		p.AchievedRate = float64(t.sent) / s
	}
	p.P50Ms, _ = t.latency.Quantile(0.50)
	p.P95Ms, _ = t.latency.Quantile(0.95)
	p.P99Ms, _ = t.latency.Quantile(0.99)
	return p
}
