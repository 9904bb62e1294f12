package judge

import (
	"cmp"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

// The rules for the events of a running experiment: Step has checked that
// cur is the run the event is about.

// liveVersion is the name the live version's values are recorded under in
// status.analysis, beside the baseline (the dark version) they are compared to.
const liveVersion = bus.RoleLive

// stepRouting moves an Initializing experiment on once the router answered:
// Running from the event's time when mirroring is set up, Completed with the
// Failed condition when it cannot be. Once it has moved on, another answer
// changes nothing.
func stepRouting(cur *experiment.Experiment, in RoutingEvent, now time.Time) Result {
	text := cmp.Or(in.Reason, "the router could not set up mirroring")
	var res Result
	if cur.Status.Stage == experiment.StageInitializing {
		next := clone(cur)
		st := &next.Status
		status := in.Status
		status.Objects = slices.Clone(status.Objects)
		st.Routing = &status
		if !in.Ready {
			st.SetCondition(experiment.ConditionTargetAcquired, "False", experiment.ReasonHandlerFailed, text, now)
			fail(next, experiment.ReasonHandlerFailed, text, now)
			res.Count.Finished = ResultError
			res.note(slog.LevelInfo, "mirroring refused: experiment failed", "reason", in.Reason)
		} else {
			start := in.Time.UTC()
			if start.IsZero() {
				start = now
			}
			st.Stage = experiment.StageRunning
			st.StartTime = &start
			share := cmp.Or(status.Host, status.Live, "live traffic")
			if status.Percent > 0 {
				share = strconv.FormatFloat(status.Percent, 'f', -1, 64) + "% of " + share
			} else {
				st.Routing.Percent = 0
			}
			msg := fmt.Sprintf("Mirroring set up (%s to %s)", share, cmp.Or(status.Dark, baselineRevision(next), next.BaselineName()))
			st.SetCondition(experiment.ConditionTargetAcquired, "True", experiment.ReasonTargetAcquired, msg, now)
			st.Message = experiment.ReasonTargetAcquired + ": " + msg
			res.note(slog.LevelInfo, "mirroring set up: experiment running")
		}
		res.Next = next
	}
	// A refusal's one output is the failed event of the state it leaves.
	st := &res.state(cur).Status
	if c := st.Condition(experiment.ConditionFailed); !in.Ready && st.Failed() &&
		c.Reason == experiment.ReasonHandlerFailed && c.Message == text {
		res.Out = []Output{failedEvent(res.state(cur), now)}
	}
	return res
}

func baselineRevision(e *experiment.Experiment) string {
	v, _ := e.BaselineVariable("revision")
	return v
}

// stepLoad records loadgen's progress; an unchanged report changes nothing.
func stepLoad(cur *experiment.Experiment, in LoadEvent) Result {
	ls := mergeLoad(cur.Status.Load, in.LoadProgress)
	if sameLoad(cur.Status.Load, &ls) {
		return Result{}
	}
	next := clone(cur)
	next.Status.Load = &ls
	if next.Status.Stage == experiment.StageRunning {
		updateLoss(&next.Status, nil)
	}
	return Result{Next: next}
}

// stepLive records the live version's values of an iteration still to
// come, for comparison with the dark version's.
func stepLive(cur *experiment.Experiment, in LiveSnapshot) Result {
	st := &cur.Status
	if st.Stage != experiment.StageRunning {
		return Result{}
	}
	next := clone(cur)
	changed := false
	// A baseline named "live" would collide with the live values; the dark
	// version's values are the ones that are judged, so they win.
	if in.Iteration > st.CompletedIterations && cur.BaselineName() != liveVersion {
		an := analysis(&next.Status)
		changed = recordValues(an, liveVersion, in.Values)
		changed = recordIntervals(an, liveVersion, in.Intervals) || changed
		if _, ok := an.Versions[liveVersion]; !ok {
			an.Versions[liveVersion] = experiment.Version{Role: bus.RoleLive}
			changed = true
		}
	}
	if noteLiveCount(&next.Status, in.Snapshot) || in.Loss != nil {
		old := next.Status.Loss
		updateLoss(&next.Status, in.Loss)
		changed = changed || !sameLoss(old, next.Status.Loss)
	}
	if !changed {
		return Result{}
	}
	return Result{Next: next}
}

// stepDark completes iteration k = snapshot.Iteration: it evaluates the
// objectives and stores the analysis, and after the last iteration the
// verdict. Its outputs are the iteration's events, whenever k is the last
// completed iteration: so a redelivery, or the collector measuring again
// after a restart, publishes them again under their Msg-Ids. An older
// iteration has none: its outputs were published before its successor was
// even delivered (one event in flight, acked after publishing), and its
// analysis is no longer stored.
func stepDark(cur *experiment.Experiment, in DarkSnapshot, now time.Time) Result {
	st := &cur.Status
	k, done, total := in.Iteration, st.CompletedIterations, cur.TotalIterations()
	var res Result
	switch {
	case k <= done:
	case st.Stage != experiment.StageRunning:
		res.note(slog.LevelInfo, "snapshot of an experiment that is not running ignored", "stage", st.Stage, "iteration", k)
	case k > total:
		res.note(slog.LevelWarn, "snapshot past the last iteration ignored", "iteration", k, "total", total)
	default:
		if k > done+1 {
			// Values are cumulative from the start, so iteration k stands
			// on its own; the skipped ones are simply not reported.
			res.note(slog.LevelWarn, "iterations skipped", "completed", done, "iteration", k)
		}
		res.Next, res.Count.Finished = judgeIteration(cur, in.Snapshot, now)
		res.Count.Iteration = true
		res.note(slog.LevelInfo, "iteration completed", "iteration", k)
	}
	if e := res.state(cur); e.Status.CompletedIterations == k {
		res.Out = iterationEvents(e, now)
	}
	return res
}

// judgeIteration is cur with iteration snap.Iteration completed, and the
// experiment's result when that was the last iteration ("" otherwise).
func judgeIteration(cur *experiment.Experiment, snap *bus.Snapshot, now time.Time) (*experiment.Experiment, string) {
	next := clone(cur)
	st := &next.Status
	k, base := snap.Iteration, next.BaselineName()
	an := analysis(st)
	rate := darkRate(next, an, snap)
	recordValues(an, base, snap.Values)
	recordIntervals(an, base, snap.Intervals)
	an.Versions[base] = experiment.Version{Role: bus.RoleDark}
	_, confident := next.Confidence()
	results := Assess(next.Spec.Criteria, snap, rate, liveOf(an))
	an.Objectives = results
	an.VersionAssessments[base] = Assessments(results)
	an.Outcome = VerdictOutcome(results, confident)
	an.WinnerAssessment = experiment.WinnerAssessment{}
	if an.Outcome == experiment.VerdictPass {
		an.WinnerAssessment = experiment.WinnerAssessment{WinnerFound: true, Winner: base}
	}
	if snap.Mirror != nil {
		an.Mirror = snap.Mirror
	}
	updateLoss(st, snap.Loss)
	st.CompletedIterations = k
	st.Message = fmt.Sprintf("%s: Completed Iteration %d", experiment.ReasonIterationUpdate, k)
	total := next.TotalIterations()
	early := k < total && confident && next.Spec.Criteria.StopEarly && an.Outcome != experiment.VerdictInconclusive
	if k != total && !early {
		return next, ""
	}
	st.Stage = experiment.StageCompleted
	st.EndTime = &now
	st.RecommendedBaseline = base
	msg := "Experiment completed successfully"
	if early {
		// The confidence sequences hold at every look at once, so
		// stopping at the first conclusive one keeps the verdict's error
		// rate (docs/statistics.md); the mirroring is removed now.
		an.StoppedEarly = true
		msg = fmt.Sprintf("Experiment stopped early after iteration %d of %d: the verdict is %s", k, total, an.Outcome)
	}
	st.SetCondition(experiment.ConditionCompleted, "True", experiment.ReasonExperimentCompleted, msg, now)
	st.Message = experiment.ReasonExperimentCompleted + ": " + msg
	switch an.Outcome {
	case experiment.VerdictPass:
		return next, ResultPass
	case experiment.VerdictInconclusive:
		return next, ResultInconclusive
	}
	return next, ResultFail
}

// darkRate is the dark version's requests per second in the iterations
// since the last one judged (the rate the requests still needed will come
// at), or over the whole window when that is not known; 0 when neither is.
// It reads an before the snapshot's values are recorded.
func darkRate(e *experiment.Experiment, an *experiment.Analysis, snap *bus.Snapshot) float64 {
	n, ok := count(snap, experiment.MetricRequestCount)
	if !ok {
		return 0
	}
	done := e.Status.CompletedIterations
	if prev := an.AggregatedMetrics[experiment.MetricRequestCount][e.BaselineName()]; prev != nil && done > 0 && snap.Iteration > done {
		if d := time.Duration(snap.Iteration-done) * e.Interval(); float64(n) > *prev {
			return (float64(n) - *prev) / d.Seconds()
		}
	}
	if d := snap.End.Sub(snap.Start); d > 0 {
		return float64(n) / d.Seconds()
	}
	return 0
}

// recordIntervals sets aggregatedIntervals[metric][version] to the
// snapshot's intervals (a metric without one has none) and reports whether
// anything changed.
func recordIntervals(an *experiment.Analysis, version string, ivs map[string]*experiment.Interval) bool {
	changed := false
	for metric, byVersion := range an.AggregatedIntervals {
		if _, ok := ivs[metric]; !ok && byVersion[version] != nil {
			delete(byVersion, version)
			changed = true
		}
	}
	for metric, iv := range ivs {
		if iv == nil {
			continue
		}
		if an.AggregatedIntervals == nil {
			an.AggregatedIntervals = map[string]map[string]*experiment.Interval{}
		}
		byVersion := an.AggregatedIntervals[metric]
		if byVersion == nil {
			byVersion = map[string]*experiment.Interval{}
			an.AggregatedIntervals[metric] = byVersion
		}
		if old := byVersion[version]; old != nil && sameInterval(old, iv) {
			continue
		}
		x := *iv
		byVersion[version] = &x
		changed = true
	}
	return changed
}

func sameInterval(a, b *experiment.Interval) bool {
	eq := func(x, y *float64) bool { return (x == nil) == (y == nil) && (x == nil || *x == *y) }
	return eq(a.Lo, b.Lo) && eq(a.Hi, b.Hi) && a.Confidence == b.Confidence && a.Method == b.Method
}

// iterationEvents are the outputs of the last completed iteration: its
// iteration event and, when it ended the experiment, the verdict and the
// completed event. They follow from the stored state alone, so a republish
// carries the same facts under the same Msg-Ids.
func iterationEvents(e *experiment.Experiment, now time.Time) []Output {
	st := &e.Status
	k, uid := st.CompletedIterations, e.Metadata.UID
	if st.Analysis == nil || k == 0 {
		return nil
	}
	results := st.Analysis.Objectives
	it := bus.NewEvent(bus.EventIteration, source, e, now)
	it.Message = fmt.Sprintf("%s: Completed Iteration %d", experiment.ReasonIterationUpdate, k)
	it.Iteration = &bus.Iteration{Number: k, Total: e.TotalIterations(), Satisfied: Satisfied(results), Objectives: results, Outcome: st.Analysis.Outcome, Loss: st.Loss}
	out := []Output{{it, bus.MsgID(uid, bus.EventIteration, strconv.Itoa(int(k)))}}
	if !st.Terminal() || st.Failed() || k != e.TotalIterations() && !st.Analysis.StoppedEarly {
		return out
	}
	v := bus.NewEvent(bus.EventVerdict, source, e, now)
	var confidence *float64
	if c, ok := e.Confidence(); ok {
		confidence = &c
	}
	v.Verdict = NewVerdict(e.BaselineName(), k, results, confidence)
	if s := experiment.SampleOf(st.Analysis, st.Routing); s != nil {
		v.Verdict.Sample = s
		if s.Skewed() {
			// A dark version that saw 2 % of the traffic instead of 40 %
			// ran a different experiment; the reader must know.
			v.Verdict.Reason += fmt.Sprintf("; only %s: more than %s of the copies were dropped, so the dark version saw a different traffic than the one asked for", s, pct(100*experiment.DropWarnShare))
		}
	}
	if st.Analysis.StoppedEarly {
		v.Verdict.StoppedEarly = true
		v.Verdict.Reason = fmt.Sprintf("stopped early after iteration %d of %d: %s", k, e.TotalIterations(), v.Verdict.Reason)
	}
	if st.Loss.Lost() {
		// It does not change the verdict: the values are those of what
		// was observed; the reader decides whether the loss matters.
		v.Verdict.Loss = st.Loss
		v.Verdict.Reason += "; " + st.Loss.String()
	}
	v.Message = v.Verdict.Reason
	c := bus.NewEvent(bus.EventCompleted, source, e, now)
	c.Message = st.Message
	c.Experiment = e
	return append(out,
		Output{v, bus.MsgID(uid, bus.EventVerdict)},
		Output{c, bus.MsgID(uid, bus.EventCompleted)})
}

// analysis returns status.analysis with its maps made.
func analysis(st *experiment.Status) *experiment.Analysis {
	if st.Analysis == nil {
		st.Analysis = &experiment.Analysis{}
	}
	an := st.Analysis
	if an.AggregatedMetrics == nil {
		an.AggregatedMetrics = map[string]map[string]*float64{}
	}
	if an.VersionAssessments == nil {
		an.VersionAssessments = map[string][]bool{}
	}
	if an.Versions == nil {
		an.Versions = map[string]experiment.Version{}
	}
	return an
}

// recordValues sets aggregatedMetrics[metric][version] for every value of a
// snapshot (nil when unavailable) and reports whether anything changed.
func recordValues(an *experiment.Analysis, version string, values map[string]*float64) bool {
	changed := false
	for metric, v := range values {
		byVersion := an.AggregatedMetrics[metric]
		if byVersion == nil {
			byVersion = map[string]*float64{}
			an.AggregatedMetrics[metric] = byVersion
		}
		old, had := byVersion[version]
		if had && (old == nil) == (v == nil) && (old == nil || *old == *v) {
			continue
		}
		if v != nil {
			x := *v
			v = &x
		}
		byVersion[version] = v
		changed = true
	}
	return changed
}

func pct(x float64) string { return strconv.FormatFloat(x, 'f', -1, 64) + " %" }
