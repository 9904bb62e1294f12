package judge

import (
	"log/slog"
	"strconv"
	"time"

	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

// The rules for the API's create and delete: the API shell (api.go) turns
// a Result.Err into the reply's code and answers with Result.Reply.

// stepCreate starts a new run of in.Doc: a new UID, stage Initializing,
// announced by its created event. A name whose last run completed is
// replaced; one still running is a conflict.
func stepCreate(cur *experiment.Experiment, in Create, now time.Time) Result {
	if cur != nil && !cur.Status.Terminal() {
		return Result{Err: alreadyRunning(cur)}
	}
	e := *in.Doc
	md := &e.Metadata
	md.UID = in.UID
	md.CreationTimestamp = &now
	md.Generation = 1
	md.ResourceVersion = ""
	e.Status = experiment.Status{
		Stage:    experiment.StageInitializing,
		InitTime: &now,
		Message:  experiment.ReasonExperimentInitialized + ": Started initialization",
	}
	st := &e.Status
	st.SetCondition(experiment.ConditionCompleted, "False", experiment.ReasonExperimentInitialized, "Experiment initialized", now)
	st.SetCondition(experiment.ConditionFailed, "False", experiment.ReasonExperimentInitialized, "Experiment initialized", now)
	st.SetCondition(experiment.ConditionTargetAcquired, "Unknown", experiment.ReasonExperimentInitialized, "Waiting for the router to set up mirroring", now)

	ev := bus.NewEvent(bus.EventCreated, source, &e, now)
	ev.Message = st.Message
	ev.Experiment = &e
	res := Result{Next: &e, Reply: &e, Out: []Output{{ev, bus.MsgID(md.UID, bus.EventCreated)}}, Count: Count{Created: true}}
	if in.Damaged != 0 {
		res.note(slog.LevelWarn, "damaged state entry replaced by a new run", "revision", in.Damaged)
	}
	res.note(slog.LevelInfo, "experiment created", "uid", md.UID)
	return res
}

// stepDelete removes an experiment and announces it with its last state;
// the router, loadgen and collector see the key go and stop their work. A
// damaged entry has no last state: the reply carries the name only, and the
// deleted event says what was removed.
func stepDelete(cur *experiment.Experiment, in Delete, now time.Time) Result {
	if in.Damaged != 0 {
		e := &experiment.Experiment{
			APIVersion: experiment.APIVersionV2Alpha1,
			Kind:       experiment.Kind,
			Metadata:   experiment.Metadata{Name: in.Ref.Name, Namespace: in.Ref.Namespace},
		}
		ev := bus.NewEvent(bus.EventDeleted, source, e, now)
		ev.Message = experiment.ReasonExperimentDeleted + ": damaged state entry deleted"
		id := bus.MsgID("damaged", in.Ref.Namespace, in.Ref.Name, strconv.FormatUint(in.Damaged, 10), bus.EventDeleted)
		res := Result{Remove: true, Reply: e, Out: []Output{{ev, id}}}
		res.note(slog.LevelWarn, "damaged state entry deleted", "revision", in.Damaged)
		return res
	}
	if cur == nil {
		return Result{Err: notFound(in.Ref)}
	}
	ev := bus.NewEvent(bus.EventDeleted, source, cur, now)
	ev.Message = experiment.ReasonExperimentDeleted + ": Experiment deleted"
	ev.Experiment = cur
	res := Result{Remove: true, Reply: cur, Out: []Output{{ev, bus.MsgID(cur.Metadata.UID, bus.EventDeleted)}}}
	res.note(slog.LevelInfo, "experiment deleted", "uid", cur.Metadata.UID)
	return res
}
