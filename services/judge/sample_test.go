package judge

import (
	"strings"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

// TestVerdictSaysTheSampleWasSkewed: when more than 5 % of the copies meant
// for the dark version were dropped, the verdict says what share it really
// saw; below that it only carries the sample.
func TestVerdictSaysTheSampleWasSkewed(t *testing.T) {
	for _, tc := range []struct {
		mirrored, dropped int64
		warn              bool
	}{{398, 2, false}, {23, 377, true}} {
		x := newEnv(t).doc("skewed", 1)
		now := time.Now().UTC()
		live := 1000.0
		x.Status.Stage, x.Status.CompletedIterations = experiment.StageCompleted, 1
		x.Status.Routing = &experiment.RoutingStatus{Backend: "proxy", Percent: 40}
		x.Status.Analysis = &experiment.Analysis{
			AggregatedMetrics: map[string]map[string]*float64{experiment.MetricRequestCount: {experiment.LiveVersion: &live}},
			Mirror:            &experiment.MirrorStats{Mirrored: tc.mirrored, Dropped: map[string]int64{"inflight": tc.dropped}},
			Outcome:           experiment.VerdictPass,
		}
		var v *bus.Verdict
		for _, o := range iterationEvents(x, now) {
			if o.Event.Verdict != nil {
				v = o.Event.Verdict
			}
		}
		if v == nil || v.Sample == nil || v.Sample.Mirrored != tc.mirrored {
			t.Fatalf("verdict %+v: want one with the sample", v)
		}
		if got := strings.Contains(v.Reason, "saw a different traffic than the one asked for"); got != tc.warn {
			t.Errorf("%d mirrored, %d dropped: reason %q; want a warning: %v", tc.mirrored, tc.dropped, v.Reason, tc.warn)
		}
	}
}
