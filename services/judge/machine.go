package judge

import (
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

// Input is one fact the judge reacts to: an event of a run (RoutingEvent,
// LoadEvent, LiveSnapshot, DarkSnapshot), the watchdog's Tick, or an API
// request (Create, Delete).
type Input interface{ input() }

// Run names the run of an experiment a fact is about: an experiment's name
// is run again by a create, each run with a UID of its own.
type Run struct{ UID string }

// RoutingEvent is the router's answer: mirroring is set up (Ready) or cannot
// be. Time is the event's time, the experiment's start.
type RoutingEvent struct {
	Run
	Time time.Time
	bus.Routing
}

// LoadEvent is loadgen's progress report.
type LoadEvent struct {
	Run
	bus.LoadProgress
}

// LiveSnapshot is the collector's measurement of the live version, kept
// beside the dark version's values for comparison.
type LiveSnapshot struct {
	Run
	*bus.Snapshot
}

// DarkSnapshot is the collector's measurement of the dark version: it
// completes iteration Snapshot.Iteration.
type DarkSnapshot struct {
	Run
	*bus.Snapshot
}

// Tick is the watchdog's look at a run: it fails the run when no router or
// collector moved it in time. EventsWaiting says the event that would move
// it is in the stream but not handled yet: the judge is behind, not the
// router or collector, and nothing fails. A tick is not a fact that is
// delivered again, so unlike an event it has outputs only when it changed
// the state: a failed experiment stays in the bucket, and announcing it on
// every tick would repeat its failed event once the stream's duplicate
// window had passed.
type Tick struct {
	Run
	EventsWaiting bool
}

// Create starts a new run of a name from a defaulted, valid document, with
// the new run's UID. Damaged is the revision of a stored entry that does not
// decode, which the new run replaces (0: none).
type Create struct {
	Doc     *experiment.Experiment
	UID     string
	Damaged uint64
}

// Delete removes the experiment Ref names. Damaged is the revision of a
// stored entry that does not decode, which is removed instead (0: none).
type Delete struct {
	Ref     bus.Ref
	Damaged uint64
}

func (Run) input()    {}
func (Create) input() {}
func (Delete) input() {}

func (r Run) runUID() string { return r.UID }

// Limits are the watchdog's timeouts (Config.InitTimeout, MetricsTimeout).
type Limits struct {
	InitTimeout    time.Duration
	MetricsTimeout time.Duration
}

// Result is what a Step decided.
type Result struct {
	// Next is the experiment to store; nil leaves the stored one as it is.
	Next *experiment.Experiment
	// Remove deletes the stored experiment.
	Remove bool
	// Out are the events to publish once the state is stored, in order.
	Out []Output
	// Reply is the experiment an API request is answered with.
	Reply *experiment.Experiment
	// Err refuses an API request (404, 409); nothing is stored.
	Err error
	// Count is what the judge's Prometheus metrics count for this change;
	// zero when nothing changed, so a repeated fact counts once.
	Count Count
	// Notes are what is worth a log line.
	Notes []Note
}

// Changed reports whether the stored state is to be written.
func (r Result) Changed() bool { return r.Next != nil || r.Remove }

// Output is an event to publish with its Nats-Msg-Id.
type Output struct {
	Event *bus.Event
	MsgID string
}

// Count is one change as the judge's metrics count it.
type Count struct {
	Created   bool
	Iteration bool
	// Finished is the experiment's result when it ended: ResultPass,
	// ResultFail or ResultError.
	Finished string
}

// Note is a log line the shell writes for a step.
type Note struct {
	Level slog.Level
	Msg   string
	Args  []any
}

// Step is the judge's lifecycle: it applies one fact to cur, the stored
// experiment of the name the fact is about (nil: none stored), at now, and
// says what to store and publish. It does no I/O, reads no clock and never
// changes cur, so the shell (shell.go) reads the state, steps, stores by
// compare-and-swap and publishes, and after a conflict simply steps again on
// a fresh read.
//
// The outputs of a fact about a run are what the fact implies in the state
// it leaves, not what it changed: a fact already applied changes nothing and
// returns the same outputs under the same Msg-Ids. The shell publishes them
// every time and the stream drops the duplicates, so a judge that stopped
// between storing and publishing loses nothing. testdata/lifecycle holds the
// rules as cases, and lifecycle_test.go checks this on each of them.
func Step(cur *experiment.Experiment, in Input, now time.Time, lim Limits) Result {
	switch in := in.(type) {
	case Create:
		return stepCreate(cur, in, now)
	case Delete:
		return stepDelete(cur, in, now)
	}
	run, ok := in.(interface{ runUID() string })
	if !ok {
		return Result{}
	}
	if cur == nil || cur.Metadata.UID != run.runUID() {
		// An older run of the same name, or one since deleted.
		return noted(slog.LevelDebug, "event of another or a deleted run ignored")
	}
	switch in := in.(type) {
	case RoutingEvent:
		return stepRouting(cur, in, now)
	case LoadEvent:
		return stepLoad(cur, in)
	case LiveSnapshot:
		return stepLive(cur, in)
	case DarkSnapshot:
		return stepDark(cur, in, now)
	case Tick:
		return stepTick(cur, in, now, lim)
	}
	return Result{}
}

// EventInput is the fact an event off the bus states, or nil with why it is
// ignored: a section missing, an unknown role or type.
func EventInput(ev *bus.Event) (Input, *Note) {
	ignored := func(msg string, args ...any) (Input, *Note) {
		return nil, &Note{Level: slog.LevelWarn, Msg: msg, Args: args}
	}
	switch ev.Type {
	case bus.EventRouting:
		if ev.Routing == nil {
			return ignored("routing event without its routing section ignored")
		}
		return RoutingEvent{Run: Run{ev.UID}, Time: ev.Time, Routing: *ev.Routing}, nil
	case bus.EventLoad:
		if ev.Load == nil {
			return ignored("load event without its load section ignored")
		}
		return LoadEvent{Run: Run{ev.UID}, LoadProgress: *ev.Load}, nil
	case bus.EventMetrics:
		snap := ev.Snapshot
		switch {
		case snap == nil:
			return ignored("metrics event without its snapshot ignored")
		case snap.Role == bus.RoleLive:
			return LiveSnapshot{Run: Run{ev.UID}, Snapshot: snap}, nil
		case snap.Role == bus.RoleDark:
			return DarkSnapshot{Run: Run{ev.UID}, Snapshot: snap}, nil
		}
		return ignored("snapshot of an unknown role ignored", "role", snap.Role, "iteration", snap.Iteration)
	}
	return ignored("event of an unexpected type ignored", "type", ev.Type)
}

// state is the experiment a result leaves: the new one, or cur unchanged.
func (r Result) state(cur *experiment.Experiment) *experiment.Experiment {
	if r.Next != nil {
		return r.Next
	}
	return cur
}

func (r *Result) note(level slog.Level, msg string, args ...any) {
	r.Notes = append(r.Notes, Note{Level: level, Msg: msg, Args: args})
}

func noted(level slog.Level, msg string, args ...any) Result {
	var r Result
	r.note(level, msg, args...)
	return r
}

// clone copies e deeply where a rule changes it (the status; metadata and
// spec are never changed in place), so that Step leaves its input as it
// was: a compare-and-swap retry steps again on a fresh read, and a test
// compares.
func clone(e *experiment.Experiment) *experiment.Experiment {
	c := *e
	st := &c.Status
	st.Conditions = slices.Clone(st.Conditions)
	st.LiveCounts = slices.Clone(st.LiveCounts)
	if l := st.Loss; l != nil {
		cl := *l
		cl.Stopped = slices.Clone(l.Stopped)
		st.Loss = &cl
	}
	if a := st.Analysis; a != nil {
		ca := *a
		if a.AggregatedMetrics != nil {
			ca.AggregatedMetrics = make(map[string]map[string]*float64, len(a.AggregatedMetrics))
			for metric, byVersion := range a.AggregatedMetrics {
				ca.AggregatedMetrics[metric] = maps.Clone(byVersion)
			}
		}
		ca.VersionAssessments = maps.Clone(a.VersionAssessments)
		ca.Versions = maps.Clone(a.Versions)
		ca.Objectives = slices.Clone(a.Objectives)
		st.Analysis = &ca
	}
	return &c
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
func failedEvent(e *experiment.Experiment, now time.Time) Output {
	ev := bus.NewEvent(bus.EventFailed, source, e, now)
	ev.Message = e.Status.Message
	ev.Experiment = e
	return Output{ev, bus.MsgID(e.Metadata.UID, bus.EventFailed)}
}
