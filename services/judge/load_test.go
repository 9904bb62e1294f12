package judge

import (
	"testing"

	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

// TestMergeLoadSumsTheInstancesShares: loadgen instances that share the
// rate each report their own share; the status counts their sum, keeps
// the share of one that stopped reporting, and sums the window only where
// every share counted the same iteration.
func TestMergeLoadSumsTheInstancesShares(t *testing.T) {
	w := func(k int32, n int64) *experiment.WindowCount {
		return &experiment.WindowCount{Iteration: k, Requests: n}
	}
	report := func(instance string, instances int32, sent int64, window *experiment.WindowCount) bus.LoadProgress {
		return bus.LoadProgress{Instance: instance, Instances: instances, Sent: sent, Succeeded: sent, Answered: sent, AchievedRate: float64(sent) / 10, Window: window}
	}
	// Alone: the report is the whole, as before the shares.
	ls := mergeLoad(nil, report("a", 1, 100, w(1, 90)))
	if ls.Sent != 100 || ls.Shares != nil || ls.Instance != "a" || *ls.Window != *w(1, 90) {
		t.Fatalf("alone: %+v", ls)
	}
	// b joins: a's last report becomes its share.
	ls = mergeLoad(&ls, report("b", 2, 20, w(1, 10)))
	if ls.Sent != 120 || len(ls.Shares) != 2 || ls.Shares["a"].Sent != 100 || *ls.Window != *w(1, 100) {
		t.Fatalf("b joined: %+v", ls)
	}
	// a reports its next window, b has not yet: the window stays.
	ls = mergeLoad(&ls, report("a", 2, 150, w(2, 140)))
	if ls.Sent != 170 || *ls.Window != *w(1, 100) {
		t.Fatalf("the shares' windows differ: %+v", ls)
	}
	ls = mergeLoad(&ls, report("b", 2, 60, w(2, 50)))
	if ls.Sent != 210 || ls.Succeeded != 210 || ls.Answered != 210 || *ls.Window != *w(2, 190) || ls.AchievedRate != 21 {
		t.Fatalf("both at iteration 2: %+v", ls)
	}
	// a dies; b, alone now, goes on: a's share still counts.
	ls = mergeLoad(&ls, report("b", 1, 100, w(3, 90)))
	if ls.Sent != 250 || ls.Shares["a"].Sent != 150 {
		t.Fatalf("after a died: %+v", ls)
	}
	// A report without an instance (a loadgen of before the shares) is
	// the whole.
	if ls := mergeLoad(&ls, bus.LoadProgress{Sent: 7}); ls.Sent != 7 || ls.Shares != nil {
		t.Fatalf("no instance: %+v", ls)
	}
	// The same report twice changes nothing.
	again := mergeLoad(&ls, report("b", 1, 100, w(3, 90)))
	if !sameLoad(&ls, &again) {
		t.Errorf("a repeated report changed the status: %+v then %+v", ls, again)
	}
}
