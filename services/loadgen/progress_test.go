package loadgen

import (
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/shared/experiment"
)

// TestTallyWindows: the routed answers are counted by the iteration they
// came in, and a report counts those before the end of the last iteration
// that ended; a resumed tally goes on from the last report's window.
func TestTallyWindows(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	w := windows{start: start, interval: time.Second, total: 3}
	at := func(ms int) time.Time { return start.Add(time.Duration(ms) * time.Millisecond) }
	c := newTally(w, 2)
	for _, ms := range []int{10, 500, 999, 1000, 1500, 2500, 3200} {
		c.answered(int(ms)%2, at(ms))
	}
	for _, tc := range []struct {
		now  int
		want *experiment.WindowCount
	}{
		{900, nil},
		{1100, &experiment.WindowCount{Iteration: 1, Requests: 3}},
		{2999, &experiment.WindowCount{Iteration: 2, Requests: 5}},
		{3001, &experiment.WindowCount{Iteration: 3, Requests: 6}},
		{9000, &experiment.WindowCount{Iteration: 3, Requests: 6}}, // after the last iteration
	} {
		p := c.progress(1, time.Second, false, at(tc.now))
		if p.Answered != 7 {
			t.Errorf("at %d ms: answered %d, want 7", tc.now, p.Answered)
		}
		if (p.Window == nil) != (tc.want == nil) || (p.Window != nil && *p.Window != *tc.want) {
			t.Errorf("at %d ms: window %+v, want %+v", tc.now, p.Window, tc.want)
		}
	}

	// Once the traffic is done, no answer comes any more: the window of
	// the iteration running now holds them all.
	if p := c.progress(1, time.Second, true, at(2600)); p.Window == nil || *p.Window != (experiment.WindowCount{Iteration: 3, Requests: 6}) {
		t.Errorf("done at 2600 ms: window %+v, want 6 by iteration 3", p.Window)
	}

	// A restarted loadgen: the last report counted 3 by iteration 1.
	r := newTally(w, 2)
	r.resume(experiment.LoadStatus{Answered: 4, Window: &experiment.WindowCount{Iteration: 1, Requests: 3}})
	r.answered(0, at(1800))
	r.answered(1, at(2100))
	if p := r.progress(1, time.Second, false, at(2200)); p.Answered != 6 || p.Window == nil || *p.Window != (experiment.WindowCount{Iteration: 2, Requests: 4}) {
		t.Errorf("resumed: answered %d, window %+v; want 6 and 4 by iteration 2", p.Answered, p.Window)
	}
}
