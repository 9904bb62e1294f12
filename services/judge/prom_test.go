package judge

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

// TestPromMetrics: every transition is counted once when it is stored, not
// once per event (duplicates, republishes), and the stage gauge follows the
// bucket.
func TestPromMetrics(t *testing.T) {
	e := newEnv(t)
	reg := prometheus.NewRegistry()
	s, _ := e.runJudge(Config{Registry: reg})
	m := s.prom

	pass := e.create(e.doc("pass", 2))
	fail := e.create(e.doc("fail", 1))
	refused := e.create(e.doc("refused", 1))
	e.create(e.doc("waiting", 1)) // no router answers: stays Initializing

	e.routing(pass, true, "")
	e.routing(fail, true, "")
	e.routing(refused, false, "dark version does not answer")
	e.routing(refused, false, "dark version does not answer") // a second router: no second count
	e.waitStatus("pass", "Running", running)
	e.waitStatus("fail", "Running", running)

	e.snapshot(pass, bus.RoleDark, 1, good(1))
	e.snapshotWithID(pass, bus.RoleDark, 1, good(1), "again-dark-1") // measured again: no second count
	e.snapshot(pass, bus.RoleDark, 2, good(2))
	e.snapshot(fail, bus.RoleDark, 1, slow(1))
	e.waitStatus("pass", "Completed", func(x *experiment.Experiment) bool { return x.Status.Terminal() })
	e.waitStatus("fail", "Completed", func(x *experiment.Experiment) bool { return x.Status.Terminal() })
	e.waitStatus("refused", "Failed", failed)
	e.waitConsumed()

	if got := testutil.ToFloat64(m.created); got != 4 {
		t.Errorf("created %v, want 4", got)
	}
	if got := testutil.ToFloat64(m.iterations); got != 3 {
		t.Errorf("iterations %v, want 3 (2 of pass, 1 of fail)", got)
	}
	for result, want := range map[string]float64{ResultPass: 1, ResultFail: 1, ResultError: 1} {
		if got := testutil.ToFloat64(m.finished.WithLabelValues(result)); got != want {
			t.Errorf("finished{result=%q} %v, want %v", result, got, want)
		}
	}

	s.failStuck(context.Background()) // the watchdog pass sets the gauge
	for stage, want := range map[experiment.Stage]float64{experiment.StageInitializing: 1, experiment.StageRunning: 0, experiment.StageCompleted: 3} {
		if got := testutil.ToFloat64(m.experiments.WithLabelValues(string(stage))); got != want {
			t.Errorf("experiments{stage=%q} %v, want %v", stage, got, want)
		}
	}

	// The metrics are in the registry the judge was given.
	if n, err := testutil.GatherAndCount(reg, "darklaunch_judge_experiments_finished_total"); err != nil || n != 4 {
		t.Errorf("registry has %d finished series (err %v), want 4 (pass, fail, inconclusive, error)", n, err)
	}
}
