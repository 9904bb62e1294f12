package loadgen

import (
	"sync"
	"time"

	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
	"github.com/darklaunch/darklaunch/shared/sketch"
)

// tally counts the requests of one experiment's traffic and their
// client-side latencies, measured from each request's due time. Each worker
// records into a shard of its own, whose lock only a report contends for;
// a report merges them.
type tally struct {
	win    windows
	shards []shard

	// What an earlier process reported (resume): its totals, and its count
	// of routed answers up to iteration baseIter.
	mu       sync.Mutex
	resumed  shardCounts
	base     int64
	baseIter int32
}

// shardCounts are the totals of one shard.
type shardCounts struct {
	sent, succeeded, failed, canceled int64
	// answered: the routed answers (bus.LoadProgress.Answered), in total
	// and by the iteration they came in (1-based; 0 before the start), for
	// the comparison with the live request-count of an iteration's window
	// (experiment.ObservationLoss).
	answered int64
}

type shard struct {
	mu sync.Mutex
	shardCounts
	byIter  map[int32]int64
	latency *sketch.Sketch
	_       [64]byte // keeps a neighbour's lock off this one's cache line
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

// newTally is the tally of a traffic of the given workers.
func newTally(w windows, workers int) *tally {
	t := &tally{win: w, shards: make([]shard, max(workers, 1))}
	for i := range t.shards {
		t.shards[i].latency = sketch.NewSketch()
		t.shards[i].byIter = map[int32]int64{}
	}
	return t
}

// resume starts from the totals an earlier process reported. The answers
// that process had after its last report are not known: the loss estimate
// can only be too low, never too high.
func (t *tally) resume(last experiment.LoadStatus) {
	t.mu.Lock()
	t.resumed = shardCounts{sent: last.Sent, succeeded: last.Succeeded, failed: last.Failed, canceled: last.Canceled, answered: last.Answered}
	if w := last.Window; w != nil {
		t.base, t.baseIter = w.Requests, w.Iteration
	}
	t.mu.Unlock()
}

// answered records a routed answer that came at t to worker w.
func (t *tally) answered(w int, at time.Time) {
	k := t.win.iteration(at)
	s := &t.shards[w]
	s.mu.Lock()
	s.answered++
	s.byIter[k]++
	s.mu.Unlock()
}

// window counts the routed answers that came before the end of the last
// iteration that ended by now; nil before the first one ended. A request
// the proxy finished before that end but whose answer loadgen read after it
// is not in the count, so the count never exceeds the proxy's live
// request-count of that window unless observations were lost. Once the
// traffic is done no answer comes any more, and every answer is in the
// window of the iteration running now. byIter is the shards' merged; t.mu
// is held.
func (t *tally) window(byIter map[int32]int64, now time.Time, done bool) *experiment.WindowCount {
	j := t.win.iteration(now) - 1
	if done {
		j = min(j+1, t.win.total)
	}
	if j < 1 || j < t.baseIter {
		return nil
	}
	n := t.base
	for k, c := range byIter {
		if k > t.baseIter && k <= j {
			n += c
		}
	}
	return &experiment.WindowCount{Iteration: j, Requests: n}
}

// dispatched counts a request of worker w as sent.
func (t *tally) dispatched(w int) {
	s := &t.shards[w]
	s.mu.Lock()
	s.sent++
	s.mu.Unlock()
}

// finished records the outcome of a request of worker w: a 2xx answer
// succeeded; any other status, a transport error or a timeout failed.
// Every latency counts, failures included, since a timeout is the slowest
// answer there is.
func (t *tally) finished(w int, latency time.Duration, ok bool) {
	ms := float64(latency) / float64(time.Millisecond)
	s := &t.shards[w]
	s.mu.Lock()
	if ok {
		s.succeeded++
	} else {
		s.failed++
	}
	s.latency.Add(ms)
	s.mu.Unlock()
}

// canceledByStop records a request of worker w cut short by the traffic's
// own stop: no outcome and no latency, since the target was not given the
// time to answer.
func (t *tally) canceledByStop(w int) {
	s := &t.shards[w]
	s.mu.Lock()
	s.canceled++
	s.mu.Unlock()
}

// progress is the report with totals since the traffic started; elapsed is
// the time since then, for the achieved rate.
func (t *tally) progress(target float64, elapsed time.Duration, done bool, now time.Time) *bus.LoadProgress {
	t.mu.Lock()
	defer t.mu.Unlock()
	sum := t.resumed
	byIter := map[int32]int64{}
	latency := sketch.NewSketch()
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		sum.sent += s.sent
		sum.succeeded += s.succeeded
		sum.failed += s.failed
		sum.canceled += s.canceled
		sum.answered += s.answered
		for k, c := range s.byIter {
			byIter[k] += c
		}
		_ = latency.Merge(s.latency) // same mapping: cannot fail
		s.mu.Unlock()
	}
	p := &bus.LoadProgress{
		Sent:       sum.sent,
		Succeeded:  sum.succeeded,
		Failed:     sum.failed,
		Canceled:   sum.canceled,
		TargetRate: target,
		Done:       done,
		Answered:   sum.answered,
		Window:     t.window(byIter, now, done),
	}
	if s := elapsed.Seconds(); s > 0 {
		p.AchievedRate = float64(sum.sent) / s
	}
	p.P50Ms, _ = latency.Quantile(0.50)
	p.P95Ms, _ = latency.Quantile(0.95)
	p.P99Ms, _ = latency.Quantile(0.99)
	return p
}
