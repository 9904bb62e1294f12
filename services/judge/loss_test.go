package judge

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

// TestVerdictSaysWhatWasLost: with a real nats-server, a router that died
// without its last flush (the collector's snapshots say so) and loadgen's
// count of answers above the proxy's live count for the same window give a
// verdict that names the loss and its estimate, in the reason and in
// status.loss; the values stay those observed and the verdict is unchanged.
func TestVerdictSaysWhatWasLost(t *testing.T) {
	e := newEnv(t)
	e.startJudge(Config{})
	x := e.create(e.doc("lossy", 3, experiment.Objective{Metric: experiment.MetricMeanLatency, UpperLimit: experiment.NewLimit("50")}))
	e.routing(x, true, "")
	e.waitStatus("lossy", "Running", running)

	snap := func(role string, k int32, count int64, loss *experiment.ObservationLoss) {
		v := good(k)
		v[experiment.MetricRequestCount] = f64(float64(count))
		e.publishSnapshot(x, &bus.Snapshot{Iteration: k, Role: role, Version: role, Values: v, Source: "bus", Loss: loss},
			bus.MsgID(x.Metadata.UID, bus.EventMetrics, role, fmt.Sprint(k)))
	}
	load := func(answered int64, w experiment.WindowCount) {
		e.publish(x, bus.EventLoad, "", func(ev *bus.Event) {
			ev.Load = &bus.LoadProgress{Sent: answered, Succeeded: answered, Answered: answered, Window: &w}
		})
	}
	// Iteration 1: loadgen and the proxy agree (one request either side
	// of the edge is noise).
	snap(bus.RoleLive, 1, 30, nil)
	snap(bus.RoleDark, 1, 12, nil)
	load(31, experiment.WindowCount{Iteration: 1, Requests: 29})
	e.waitStatus("lossy", "iteration 1", completed(1))
	e.waitStatus("lossy", "load of iteration 1", func(x *experiment.Experiment) bool {
		return x.Status.Load != nil && x.Status.Load.Window != nil
	})
	if got := e.get("default", "lossy"); got.Status.Loss != nil {
		t.Fatalf("loss %+v after agreeing counts, want none", got.Status.Loss)
	}

	// Iteration 2: the router died and came back: 28 answered requests are
	// missing from the live count.
	stopped := &experiment.ObservationLoss{Stopped: []string{"router-a"}}
	snap(bus.RoleLive, 2, 32, stopped)
	load(90, experiment.WindowCount{Iteration: 2, Requests: 60})
	snap(bus.RoleDark, 2, 13, stopped)
	e.waitStatus("lossy", "the loss estimated", func(x *experiment.Experiment) bool {
		return x.Status.Loss != nil && x.Status.Loss.Requests == 28
	})
	snap(bus.RoleLive, 3, 62, stopped)
	snap(bus.RoleDark, 3, 25, stopped)
	got := e.waitStatus("lossy", "completed", completed(3))
	l := got.Status.Loss
	if l == nil || l.Requests != 28 || l.Iteration != 2 || l.Answered != 60 || l.Counted != 32 || !slices.Equal(l.Stopped, []string{"router-a"}) {
		t.Fatalf("status.loss %+v, want 28 requests by iteration 2 (60 answered, 32 counted), router-a stopped", l)
	}
	deadline := time.Now().Add(10 * time.Second)
	var v *bus.Verdict
	for v == nil && time.Now().Before(deadline) {
		for _, ev := range eventsOf(e.events("lossy"), bus.EventVerdict) {
			v = ev.Verdict
		}
	}
	if v == nil {
		t.Fatal("no verdict")
	}
	if !v.Passed || v.Loss == nil || v.Loss.Requests != 28 {
		t.Errorf("verdict passed=%v loss=%+v, want a PASS that carries the loss", v.Passed, v.Loss)
	}
	for _, want := range []string{"observations lost: ~28 live requests by iteration 2", "router-a stopped without its last flush"} {
		if !strings.Contains(v.Reason, want) {
			t.Errorf("verdict reason %q does not say %q", v.Reason, want)
		}
	}
}
