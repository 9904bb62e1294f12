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
}

func newTally() *tally { return &tally{latency: sketch.NewSketch()} }

// resume starts from the totals an earlier process reported.
func (t *tally) resume(last experiment.LoadStatus) {
	t.mu.Lock()
	t.sent, t.succeeded, t.failed, t.canceled = last.Sent, last.Succeeded, last.Failed, last.Canceled
	t.mu.Unlock()
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
func (t *tally) progress(target float64, elapsed time.Duration, done bool) *bus.LoadProgress {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := &bus.LoadProgress{
		Sent:       t.sent,
		Succeeded:  t.succeeded,
		Failed:     t.failed,
		Canceled:   t.canceled,
		TargetRate: target,
		Done:       done,
	}
	if s := elapsed.Seconds(); s > 0 {
		p.AchievedRate = float64(t.sent) / s
	}
	p.P50Ms, _ = t.latency.Quantile(0.50)
	p.P95Ms, _ = t.latency.Quantile(0.95)
	p.P99Ms, _ = t.latency.Quantile(0.99)
	return p
}
