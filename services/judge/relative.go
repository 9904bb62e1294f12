package judge

import (
	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

// relativeResult judges an objective relative to live (reference: live):
// its limit bounds the ratio dark ÷ live of a latency, or the difference
// dark − live of error-rate, computed from the pairs the proxy sees (see
// docs/statistics.md). This is the hook for that evaluation; until it is
// there, such an objective is inconclusive (and not satisfied), whatever
// the dark version's own value. level is the confidence each objective is
// judged at (stats.Split over all objectives, this one included).
func relativeResult(o experiment.Objective, r experiment.ObjectiveResult, _ *bus.Snapshot, _ float64) experiment.ObjectiveResult {
	return experiment.ObjectiveResult{
		Metric:     o.Metric,
		UpperLimit: r.UpperLimit,
		LowerLimit: r.LowerLimit,
		Reference:  o.Reference,
		Outcome:    experiment.OutcomeInconclusive,
		Reason:     "relative objectives (reference: live) are not evaluated yet",
	}
}
