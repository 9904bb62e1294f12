package judge

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

// liveVersion is the name the live version's values are recorded under in
// status.analysis, beside the baseline (the dark version) they are compared to.
const liveVersion = bus.RoleLive

// onRouting moves an Initializing experiment on once the router answered:
// Running from the event's time when mirroring is set up, Completed with the
// Failed condition when it cannot be.
func (s *Service) onRouting(ctx context.Context, ev *bus.Event) error {
	r := ev.Routing
	log := s.expLog(ev.Namespace, ev.Name)
	if r == nil {
		log.Warn("routing event without its routing section ignored", "uid", ev.UID)
		return nil
	}
	text := cmp.Or(r.Reason, "the router could not set up mirroring")
	var out []outEvent
	var outcome string // for the log
	_, err := s.update(ctx, ev, func(e *experiment.Experiment) error {
		out, outcome = nil, ""
		st := &e.Status
		now := s.now()
		if st.Stage != experiment.StageInitializing {
			// Handled already. The only output of a routing event is the
			// failed event of a refusal: republish it (same Msg-Id) in case
			// the judge stopped between storing the failure and publishing it.
			if c := st.Condition(experiment.ConditionFailed); !r.Ready && st.Failed() &&
				c.Reason == experiment.ReasonHandlerFailed && c.Message == text {
				out = failedEvent(e, now)
			}
			return bus.ErrNoChange
		}
		status := r.Status
		st.Routing = &status
		if !r.Ready {
			st.SetCondition(experiment.ConditionTargetAcquired, "False", experiment.ReasonHandlerFailed, text, now)
			fail(e, experiment.ReasonHandlerFailed, text, now)
			out, outcome = failedEvent(e, now), "mirroring refused: experiment failed"
			return nil
		}
		start := ev.Time.UTC()
		if start.IsZero() {
			start = now
		}
		st.Stage = experiment.StageRunning
		st.StartTime = &start
		share := cmp.Or(status.Host, status.Live, "live traffic")
		if p := finite(&status.Percent); p != nil && *p > 0 {
			share = strconv.FormatFloat(*p, 'f', -1, 64) + "% of " + share
		} else {
			st.Routing.Percent = 0 // NaN would make the state unreadable as JSON
		}
		msg := fmt.Sprintf("Mirroring set up (%s to %s)", share, cmp.Or(status.Dark, baselineRevision(e), e.BaselineName()))
		st.SetCondition(experiment.ConditionTargetAcquired, "True", experiment.ReasonTargetAcquired, msg, now)
		st.Message = experiment.ReasonTargetAcquired + ": " + msg
		outcome = "mirroring set up: experiment running"
		return nil
	})
	if err != nil {
		return err
	}
	if outcome != "" {
		log.Info(outcome, "uid", ev.UID, "ready", r.Ready, "reason", r.Reason)
		if !r.Ready {
			s.prom.finished.WithLabelValues(ResultError).Inc()
		}
	}
	return s.publish(ctx, out)
}

func baselineRevision(e *experiment.Experiment) string {
	v, _ := e.BaselineVariable("revision")
	return v
}

// fail ends an experiment the way Iter8 does: stage Completed with the
// Failed condition true, and the reason in status.message.
func fail(e *experiment.Experiment, reason, text string, now time.Time) {
	st := &e.Status
	st.Stage = experiment.StageCompleted
	st.EndTime = &now
	st.Message = reason + ": " + text
	st.SetCondition(experiment.ConditionFailed, "True", reason, text, now)
	st.SetCondition(experiment.ConditionCompleted, "True", reason, "Experiment failed", now)
}

// failedEvent announces a failed experiment, with its state.
func failedEvent(e *experiment.Experiment, now time.Time) []outEvent {
	ev := bus.NewEvent(bus.EventFailed, source, e, now)
	ev.Message = e.Status.Message
	ev.Experiment = e
	return []outEvent{{ev, bus.MsgID(e.Metadata.UID, bus.EventFailed)}}
}

// onLoad records loadgen's progress; an unchanged report writes nothing.
func (s *Service) onLoad(ctx context.Context, ev *bus.Event) error {
	p := ev.Load
	if p == nil {
		s.expLog(ev.Namespace, ev.Name).Warn("load event without its load section ignored", "uid", ev.UID)
		return nil
	}
	ls := experiment.LoadStatus{Sent: p.Sent, Succeeded: p.Succeeded, Failed: p.Failed, Canceled: p.Canceled, AchievedRate: p.AchievedRate}
	if math.IsNaN(ls.AchievedRate) || math.IsInf(ls.AchievedRate, 0) {
		ls.AchievedRate = 0
	}
	_, err := s.update(ctx, ev, func(e *experiment.Experiment) error {
		if e.Status.Load != nil && *e.Status.Load == ls {
			return bus.ErrNoChange
		}
		e.Status.Load = &ls
		return nil
	})
	return err
}

// onMetrics handles one snapshot: the live version's is recorded for
// comparison, the dark version's completes an iteration.
func (s *Service) onMetrics(ctx context.Context, ev *bus.Event) error {
	snap := ev.Snapshot
	log := s.expLog(ev.Namespace, ev.Name)
	if snap == nil {
		log.Warn("metrics event without its snapshot ignored", "uid", ev.UID)
		return nil
	}
	switch snap.Role {
	case bus.RoleLive:
		return s.onLiveSnapshot(ctx, ev, snap)
	case bus.RoleDark:
		return s.onDarkSnapshot(ctx, ev, snap)
	}
	log.Warn("snapshot of an unknown role ignored", "role", snap.Role, "iteration", snap.Iteration)
	return nil
}

func (s *Service) onLiveSnapshot(ctx context.Context, ev *bus.Event, snap *bus.Snapshot) error {
	_, err := s.update(ctx, ev, func(e *experiment.Experiment) error {
		st := &e.Status
		// A baseline named "live" would collide with the live values; the
		// dark version's values are the ones that are judged, so they win.
		if st.Stage != experiment.StageRunning || snap.Iteration <= st.CompletedIterations || e.BaselineName() == liveVersion {
			return bus.ErrNoChange
		}
		an := analysis(st)
		changed := recordValues(an, liveVersion, snap.Values)
		if _, ok := an.Versions[liveVersion]; !ok {
			an.Versions[liveVersion] = experiment.Version{Role: bus.RoleLive}
			changed = true
		}
		if !changed {
			return bus.ErrNoChange
		}
		return nil
	})
	return err
}

// onDarkSnapshot completes iteration k = snapshot.Iteration: it evaluates
// the objectives, stores the analysis and publishes the iteration event, and
// after the last iteration the verdict and the completed event.
func (s *Service) onDarkSnapshot(ctx context.Context, ev *bus.Event, snap *bus.Snapshot) error {
	log := s.expLog(ev.Namespace, ev.Name)
	k := snap.Iteration
	var out []outEvent
	judged, finished := false, ""
	_, err := s.update(ctx, ev, func(e *experiment.Experiment) error {
		out, judged, finished = nil, false, ""
		st := &e.Status
		done, total := st.CompletedIterations, e.TotalIterations()
		now := s.now()
		switch {
		case k == done && k > 0 && st.Analysis != nil:
			// Handled already (a redelivery, or the collector measuring
			// again after a restart): republish the outputs with their
			// Msg-Ids, in case the judge stopped between storing and
			// publishing them. The stream drops the duplicates.
			out = iterationEvents(e, now)
			return bus.ErrNoChange
		case k <= done:
			// An older iteration: its outputs were published before its
			// successor was even delivered (one event in flight, acked
			// after publishing), and its analysis is no longer stored.
			return bus.ErrNoChange
		case st.Stage != experiment.StageRunning:
			log.Info("snapshot of an experiment that is not running ignored", "stage", st.Stage, "iteration", k)
			return bus.ErrNoChange
		case k > total:
			log.Warn("snapshot past the last iteration ignored", "iteration", k, "total", total)
			return bus.ErrNoChange
		case k > done+1:
			// Values are cumulative from the start, so iteration k stands
			// on its own; the skipped ones are simply not reported.
			log.Warn("iterations skipped", "completed", done, "iteration", k)
		}

		base := e.BaselineName()
		an := analysis(st)
		recordValues(an, base, snap.Values)
		an.Versions[base] = experiment.Version{Role: bus.RoleDark}
		var objectives []experiment.Objective
		if e.Spec.Criteria != nil {
			objectives = e.Spec.Criteria.Objectives
		}
		results := Evaluate(objectives, snap.Values, snap.Errors)
		an.Objectives = results
		an.VersionAssessments[base] = Assessments(results)
		an.WinnerAssessment = experiment.WinnerAssessment{}
		if Satisfied(results) {
			an.WinnerAssessment = experiment.WinnerAssessment{WinnerFound: true, Winner: base}
		}
		if snap.Mirror != nil {
			an.Mirror = snap.Mirror
		}
		st.CompletedIterations = k
		st.Message = fmt.Sprintf("%s: Completed Iteration %d", experiment.ReasonIterationUpdate, k)
		if k == total {
			st.Stage = experiment.StageCompleted
			st.EndTime = &now
			st.RecommendedBaseline = base
			st.SetCondition(experiment.ConditionCompleted, "True", experiment.ReasonExperimentCompleted, "Experiment completed successfully", now)
			st.Message = experiment.ReasonExperimentCompleted + ": Experiment completed successfully"
			finished = ResultFail
			if Satisfied(results) {
				finished = ResultPass
			}
		}
		out, judged = iterationEvents(e, now), true
		return nil
	})
	if err != nil {
		return err
	}
	if judged {
		log.Info("iteration completed", "iteration", k, "uid", ev.UID)
		s.prom.iterations.Inc()
	}
	if finished != "" {
		s.prom.finished.WithLabelValues(finished).Inc()
	}
	return s.publish(ctx, out)
}

// iterationEvents are the outputs of the last completed iteration: its
// iteration event and, when it ended the experiment, the verdict and the
// completed event. They follow from the stored state alone, so a republish
// carries the same facts under the same Msg-Ids.
func iterationEvents(e *experiment.Experiment, now time.Time) []outEvent {
	st := &e.Status
	k, uid := st.CompletedIterations, e.Metadata.UID
	if st.Analysis == nil || k == 0 {
		return nil
	}
	results := st.Analysis.Objectives
	it := bus.NewEvent(bus.EventIteration, source, e, now)
	it.Message = fmt.Sprintf("%s: Completed Iteration %d", experiment.ReasonIterationUpdate, k)
	it.Iteration = &bus.Iteration{Number: k, Total: e.TotalIterations(), Satisfied: Satisfied(results), Objectives: results}
	out := []outEvent{{it, bus.MsgID(uid, bus.EventIteration, strconv.Itoa(int(k)))}}
	if !st.Terminal() || st.Failed() || k != e.TotalIterations() {
		return out
	}
	v := bus.NewEvent(bus.EventVerdict, source, e, now)
	v.Verdict = NewVerdict(e.BaselineName(), k, results)
	v.Message = v.Verdict.Reason
	c := bus.NewEvent(bus.EventCompleted, source, e, now)
	c.Message = st.Message
	c.Experiment = e
	return append(out,
		outEvent{v, bus.MsgID(uid, bus.EventVerdict)},
		outEvent{c, bus.MsgID(uid, bus.EventCompleted)})
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
		v = finite(v)
		byVersion := an.AggregatedMetrics[metric]
		if byVersion == nil {
			byVersion = map[string]*float64{}
			an.AggregatedMetrics[metric] = byVersion
		}
		old, had := byVersion[version]
		if had && (old == nil) == (v == nil) && (old == nil || *old == *v) {
			continue
		}
		byVersion[version] = v
		changed = true
	}
	return changed
}
