package judge

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/darklaunch/darklaunch/shared/experiment"
)

// stepTick fails the experiment nobody moves on: an absent router leaves one
// Initializing forever, an absent collector leaves one Running forever.
// Iter8 users see the same as when a handler or the analytics service fails.
func stepTick(cur *experiment.Experiment, in Tick, now time.Time, lim Limits) Result {
	reason, text := stuck(cur, now, lim)
	if reason == "" || in.EventsWaiting {
		return Result{}
	}
	next := clone(cur)
	fail(next, reason, text, now)
	res := Result{Next: next, Out: []Output{failedEvent(next, now)}, Count: Count{Finished: ResultError}}
	res.note(slog.LevelWarn, "stuck experiment failed", "message", next.Status.Message)
	return res
}

// stuck says why e should fail at now, or returns "" when it should not.
func stuck(e *experiment.Experiment, now time.Time, lim Limits) (reason, text string) {
	st := &e.Status
	switch st.Stage {
	case experiment.StageInitializing:
		since := st.InitTime
		if since == nil {
			since = e.Metadata.CreationTimestamp
		}
		if since != nil && now.Sub(*since) > lim.InitTimeout {
			return experiment.ReasonHandlerFailed,
				fmt.Sprintf("no router set up mirroring within %s (is the router running?)", lim.InitTimeout)
		}
	case experiment.StageRunning:
		if st.StartTime == nil {
			return "", ""
		}
		next := st.CompletedIterations + 1
		due := st.StartTime.Add(time.Duration(next) * e.Interval())
		wait := max(3*e.Interval(), lim.MetricsTimeout)
		if now.Sub(due) > wait {
			return experiment.ReasonAnalyticsError,
				fmt.Sprintf("no metrics for iteration %d within %s of its due time %s (is the collector running?)",
					next, wait, due.UTC().Format(time.RFC3339))
		}
	}
	return "", ""
}
