package judge

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/darklaunch/darklaunch/shared/experiment"
	"github.com/darklaunch/darklaunch/shared/telemetry"
)

// Results of darklaunch_judge_experiments_finished_total.
const (
	ResultPass = "pass" // completed, every objective met
	ResultFail = "fail" // completed, an objective not met
	// ResultInconclusive: completed, with a confidence level, and not
	// every objective shown either way.
	ResultInconclusive = "inconclusive"
	ResultError        = "error" // failed: mirroring refused, or no router or collector moved it
)

// stages are the stages darklaunch_judge_experiments reports, every one of
// them each time, so a stage nobody is in reads 0 rather than its last count.
var stages = []experiment.Stage{experiment.StageInitializing, experiment.StageRunning, experiment.StageCompleted}

// promMetrics are the judge's Prometheus metrics. Each counts a transition
// when it is stored, so a redelivered event or a republish counts once, and
// several judges add up.
type promMetrics struct {
	created     prometheus.Counter
	iterations  prometheus.Counter
	finished    *prometheus.CounterVec
	experiments *prometheus.GaugeVec
	// eventsDropped: undecodable, or failing at every attempt.
	eventsDropped prometheus.Counter
}

func newPromMetrics(reg prometheus.Registerer) (*promMetrics, error) {
	r := &telemetry.Registrar{Reg: reg}
	counter := func(name, help string) prometheus.Counter {
		return telemetry.Add(r, prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help}))
	}
	m := &promMetrics{
		created:    counter("darklaunch_judge_experiments_created_total", "Experiments this judge accepted (API create)."),
		iterations: counter("darklaunch_judge_iterations_total", "Iterations this judge evaluated against the objectives."),
		finished: telemetry.Add(r, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "darklaunch_judge_experiments_finished_total",
			Help: "Experiments this judge ended, by result (pass: every objective met; fail: an objective not met; inconclusive: with a confidence level, not shown either way; error: the experiment failed).",
		}, []string{"result"})),
		eventsDropped: counter("darklaunch_judge_events_dropped_total",
			"Events the judge gave up on: undecodable, or failing at every attempt (see its error log)."),
		experiments: telemetry.Add(r, prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "darklaunch_judge_experiments",
			Help: "Experiments in the state bucket by stage, as of the judge's last watchdog pass (every judge reports the same: use max).",
		}, []string{"stage"})),
	}
	if r.Err != nil {
		return nil, r.Err
	}
	for _, res := range []string{ResultPass, ResultFail, ResultInconclusive, ResultError} {
		m.finished.WithLabelValues(res) // a zero is news too
	}
	return m, nil
}

// countStages sets darklaunch_judge_experiments from a listing of the bucket.
func (m *promMetrics) countStages(list []*experiment.Experiment) {
	n := map[experiment.Stage]int{}
	for _, e := range list {
		n[e.Status.Stage]++
	}
	for _, st := range stages {
		m.experiments.WithLabelValues(string(st)).Set(float64(n[st]))
	}
}
