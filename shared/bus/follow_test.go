package bus_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/micro"

	"github.com/darklaunch/darklaunch/internal/testenv"
	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

// fakeJudge plays the judge's part in what Client.Follow reads, by hand: the
// state in the KV bucket, an experiments.get endpoint that reads it, and the
// events on the stream.
type fakeJudge struct {
	t      *testing.T
	ctx    context.Context
	infra  *bus.Infra
	client *bus.Client
}

func newFakeJudge(t *testing.T) *fakeJudge {
	t.Helper()
	nc := testenv.StartNATS(t).Conn(t)
	j := &fakeJudge{t: t, ctx: t.Context(), client: &bus.Client{NC: nc}}
	var err error
	if j.infra, err = bus.EnsureInfra(j.ctx, nc, bus.StreamLimits{}); err != nil {
		t.Fatal(err)
	}
	svc, err := micro.AddService(nc, micro.Config{Name: "fake-judge", Version: "0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Stop() })
	if err := svc.AddEndpoint("get", micro.HandlerFunc(j.get), micro.WithEndpointSubject(bus.SubjectGet)); err != nil {
		t.Fatal(err)
	}
	return j
}

func (j *fakeJudge) get(req micro.Request) {
	ref, err := bus.ParseRef(req.Headers().Get(bus.HeaderContentType), req.Data())
	if err != nil {
		req.Error("400", err.Error(), nil)
		return
	}
	e, _, err := j.infra.Store.Get(j.ctx, ref.Namespace, ref.Name)
	if err != nil {
		req.Error("404", err.Error(), nil)
		return
	}
	data, err := bus.Marshal(bus.ContentTypeMsgpack, e)
	if err != nil {
		req.Error("500", err.Error(), nil)
		return
	}
	req.Respond(data, micro.WithHeaders(micro.Headers{bus.HeaderContentType: {bus.ContentTypeMsgpack}}))
}

// create stores a new run of the seed experiment, named name, and
// announces it.
func (j *fakeJudge) create(name string) *experiment.Experiment {
	j.t.Helper()
	e := j.createQuietly(name)
	j.publish(e, bus.EventCreated)
	return e
}

// createQuietly stores a new run without its created event.
func (j *fakeJudge) createQuietly(name string) *experiment.Experiment {
	j.t.Helper()
	e := seed(j.t)
	now := time.Now()
	md := &e.Metadata
	md.Namespace, md.Name, md.UID, md.CreationTimestamp = experiment.DefaultNamespace, name, "uid-"+name, &now
	e.Status = experiment.Status{Stage: experiment.StageInitializing}
	if _, err := j.infra.Store.Create(j.ctx, e); err != nil {
		j.t.Fatal(err)
	}
	return e
}

// store changes the stored state, as the judge does before it publishes
// the event that tells of the change.
func (j *fakeJudge) store(e *experiment.Experiment, change func(*experiment.Experiment)) *experiment.Experiment {
	j.t.Helper()
	cur, err := j.infra.Store.Update(j.ctx, e.Metadata.Namespace, e.Metadata.Name, func(cur *experiment.Experiment) error {
		change(cur)
		return nil
	})
	if err != nil {
		j.t.Fatal(err)
	}
	return cur
}

func (j *fakeJudge) publish(e *experiment.Experiment, typ string) {
	j.t.Helper()
	ev := bus.NewEvent(typ, "test", e, time.Now())
	if typ == bus.EventLoad {
		ev.Load = &bus.LoadProgress{Sent: 10, Succeeded: 10, Done: true}
	}
	if err := bus.Publish(j.ctx, j.infra.JS, ev, ""); err != nil {
		j.t.Fatal(err)
	}
}

// iterate stores one more completed iteration and publishes its event.
func (j *fakeJudge) iterate(e *experiment.Experiment) *experiment.Experiment {
	j.t.Helper()
	e = j.store(e, func(cur *experiment.Experiment) {
		cur.Status.Stage = experiment.StageRunning
		cur.Status.CompletedIterations++
		cur.Status.Message = fmt.Sprintf("IterationUpdate: Completed Iteration %d", cur.Status.CompletedIterations)
	})
	j.publish(e, bus.EventIteration)
	return e
}

func complete(cur *experiment.Experiment) {
	cur.Status.Stage = experiment.StageCompleted
	cur.Status.Message = "ExperimentCompleted: Experiment Completed"
}

// following is a Follow running on its own goroutine, reporting as it goes.
type following struct {
	updates chan *experiment.Experiment
	events  chan *bus.Event
	done    chan struct{}
	final   *experiment.Experiment
	err     error
}

func (j *fakeJudge) follow(ctx context.Context, e *experiment.Experiment, opts bus.FollowOptions, withEvents bool) *following {
	f := &following{updates: make(chan *experiment.Experiment, 64), events: make(chan *bus.Event, 64), done: make(chan struct{})}
	opts.OnUpdate = func(e *experiment.Experiment) { f.updates <- e }
	if withEvents {
		opts.OnEvent = func(ev *bus.Event) { f.events <- ev }
	}
	go func() {
		defer close(f.done)
		f.final, f.err = j.client.Follow(ctx, e, opts)
	}()
	return f
}

// next waits for the next update and checks its stage and iterations.
func (f *following) next(t *testing.T, stage experiment.Stage, iterations int32) {
	t.Helper()
	select {
	case e := <-f.updates:
		if e.Status.Stage != stage || e.Status.CompletedIterations != iterations {
			t.Fatalf("update %s after %d iterations, want %s after %d", e.Status.Stage, e.Status.CompletedIterations, stage, iterations)
		}
	case <-f.done:
		// Follow may have passed on its last update and returned since:
		// with both ready, select picks either.
		select {
		case e := <-f.updates:
			if e.Status.Stage != stage || e.Status.CompletedIterations != iterations {
				t.Fatalf("update %s after %d iterations, want %s after %d", e.Status.Stage, e.Status.CompletedIterations, stage, iterations)
			}
			return
		default:
		}
		t.Fatalf("Follow returned (%v) before the update to %s after %d iterations", f.err, stage, iterations)
	case <-time.After(10 * time.Second):
		t.Fatalf("no update to %s after %d iterations", stage, iterations)
	}
}

// event waits for the next event and checks its type.
func (f *following) event(t *testing.T, typ string) {
	t.Helper()
	select {
	case ev := <-f.events:
		if ev.Type != typ {
			t.Fatalf("event %s, want %s", ev.Type, typ)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s event", typ)
	}
}

// wait waits for Follow to return.
func (f *following) wait(t *testing.T) (*experiment.Experiment, error) {
	t.Helper()
	select {
	case <-f.done:
		return f.final, f.err
	case <-time.After(20 * time.Second):
		t.Fatal("Follow did not return")
		return nil, nil
	}
}

// eventTypes drains the events Follow passed on.
func (f *following) eventTypes() []string {
	var types []string
	for {
		select {
		case ev := <-f.events:
			types = append(types, ev.Type)
		default:
			return types
		}
	}
}

// TestFollowReportsEachChangeUntilCompleted: the events drive the updates
// (the poll is an hour away), one per change of the state, from the state
// Follow was given to the final one it returns.
func TestFollowReportsEachChangeUntilCompleted(t *testing.T) {
	j := newFakeJudge(t)
	e := j.create("followed")
	f := j.follow(t.Context(), e, bus.FollowOptions{PollInterval: time.Hour}, false)
	f.next(t, experiment.StageInitializing, 0)

	e = j.store(e, func(cur *experiment.Experiment) { cur.Status.Stage = experiment.StageRunning })
	j.publish(e, bus.EventRouting)
	f.next(t, experiment.StageRunning, 0)
	for i := int32(1); i <= 3; i++ {
		e = j.iterate(e)
		j.publish(e, bus.EventMetrics) // no change to report
		f.next(t, experiment.StageRunning, i)
	}
	e = j.store(e, complete)
	j.publish(e, bus.EventVerdict)
	f.next(t, experiment.StageCompleted, 3)
	final, err := f.wait(t)
	if err != nil {
		t.Fatal(err)
	}
	if !final.Status.Terminal() || final.Status.CompletedIterations != 3 {
		t.Errorf("returned %s after %d iterations, want Completed after 3", final.Status.Stage, final.Status.CompletedIterations)
	}
	if len(f.updates) != 0 {
		t.Errorf("%d updates more than the changes", len(f.updates))
	}

	// An experiment that has already ended is returned as it is.
	final, err = j.client.Follow(t.Context(), final, bus.FollowOptions{})
	if err != nil || !final.Status.Terminal() {
		t.Errorf("following a completed experiment: %v, %v", final, err)
	}
}

// TestFollowPollsPastAMissedEvent: changes no event tells of are seen on
// the polls.
func TestFollowPollsPastAMissedEvent(t *testing.T) {
	j := newFakeJudge(t)
	e := j.createQuietly("followed")
	f := j.follow(t.Context(), e, bus.FollowOptions{PollInterval: 50 * time.Millisecond}, false)
	f.next(t, experiment.StageInitializing, 0)
	e = j.store(e, func(cur *experiment.Experiment) { cur.Status.Stage = experiment.StageRunning })
	f.next(t, experiment.StageRunning, 0)
	j.store(e, complete)
	f.next(t, experiment.StageCompleted, 0)
	if _, err := f.wait(t); err != nil {
		t.Fatal(err)
	}
}

// TestFollowEventsToTheEnd: with OnEvent, Follow does not stop at the final
// state: it passes on the verdict and completed events the judge publishes
// after storing it, and loadgen's final report after those; on an
// experiment that has ended it replays them all. FinalEventWait is an hour,
// so Follow can only return on the completed event.
func TestFollowEventsToTheEnd(t *testing.T) {
	j := newFakeJudge(t)
	e := j.create("followed")
	opts := bus.FollowOptions{PollInterval: time.Hour, FinalEventWait: time.Hour}
	f := j.follow(t.Context(), e, opts, true)
	f.next(t, experiment.StageInitializing, 0)
	f.event(t, bus.EventCreated)
	e = j.iterate(e)
	f.event(t, bus.EventIteration)
	f.next(t, experiment.StageRunning, 1)

	e = j.store(e, complete)
	j.publish(e, bus.EventVerdict)
	f.event(t, bus.EventVerdict)
	f.next(t, experiment.StageCompleted, 1) // the state is final: Follow goes on
	j.publish(e, bus.EventCompleted)
	f.event(t, bus.EventCompleted)
	j.publish(e, bus.EventLoad) // loadgen's final report, after the judge's last event
	f.event(t, bus.EventLoad)
	final, err := f.wait(t)
	if err != nil {
		t.Fatal(err)
	}
	if !final.Status.Terminal() {
		t.Errorf("returned stage %s, want Completed", final.Status.Stage)
	}

	start := time.Now()
	f = j.follow(t.Context(), final, opts, true)
	if _, err := f.wait(t); err != nil {
		t.Fatal(err)
	}
	want := []string{bus.EventCreated, bus.EventIteration, bus.EventVerdict, bus.EventCompleted, bus.EventLoad}
	if got := f.eventTypes(); !slices.Equal(got, want) {
		t.Errorf("replayed %v, want %v", got, want)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("replaying a finished experiment took %v", d)
	}
}

// TestFollowFinalEventWaitBounds: a completed event that never comes (the
// judge stopped between storing the final state and publishing it) delays
// Follow by FinalEventWait, not for ever.
func TestFollowFinalEventWaitBounds(t *testing.T) {
	j := newFakeJudge(t)
	e := j.store(j.create("followed"), complete)
	f := j.follow(t.Context(), e, bus.FollowOptions{FinalEventWait: time.Second}, true)
	final, err := f.wait(t)
	if err != nil || !final.Status.Terminal() {
		t.Fatalf("returned %v, %v; want the completed state", final, err)
	}
	if got := f.eventTypes(); !slices.Equal(got, []string{bus.EventCreated}) {
		t.Errorf("events %v, want the created event", got)
	}
}

// TestFollowSkipsOtherRuns: the events of an earlier run under the same name
// are not this run's, even within the second before its creation that
// Follow reads from.
func TestFollowSkipsOtherRuns(t *testing.T) {
	j := newFakeJudge(t)
	old := j.store(j.iterate(j.create("rerun")), complete)
	j.publish(old, bus.EventCompleted)
	now := time.Now()
	e := j.store(old, func(cur *experiment.Experiment) {
		cur.Metadata.UID, cur.Metadata.CreationTimestamp = "uid-new", &now
		cur.Status = experiment.Status{Stage: experiment.StageInitializing}
	})
	j.publish(e, bus.EventCreated)
	e = j.store(e, complete)
	j.publish(e, bus.EventCompleted)

	f := j.follow(t.Context(), e, bus.FollowOptions{FinalEventWait: time.Hour}, true)
	if _, err := f.wait(t); err != nil {
		t.Fatal(err)
	}
	if got, want := f.eventTypes(), []string{bus.EventCreated, bus.EventCompleted}; !slices.Equal(got, want) {
		t.Errorf("events %v, want only the new run's %v", got, want)
	}
}

// TestFollowStops: Follow ends with an error when the experiment is deleted
// or replaced by a new run, and with ctx's error when ctx ends.
func TestFollowStops(t *testing.T) {
	j := newFakeJudge(t)
	t.Run("deleted", func(t *testing.T) {
		e := j.create("deleted")
		f := j.follow(t.Context(), e, bus.FollowOptions{}, false)
		j.publish(e, bus.EventDeleted)
		if _, err := f.wait(t); err == nil || !strings.Contains(err.Error(), "was deleted") {
			t.Errorf("error %v, want: was deleted", err)
		}
	})
	t.Run("replaced", func(t *testing.T) {
		e := j.create("replaced")
		f := j.follow(t.Context(), e, bus.FollowOptions{PollInterval: 50 * time.Millisecond}, false)
		f.next(t, experiment.StageInitializing, 0)
		j.store(e, func(cur *experiment.Experiment) { cur.Metadata.UID = "uid-newer" })
		if _, err := f.wait(t); err == nil || !strings.Contains(err.Error(), "replaced by a new run (uid uid-newer)") {
			t.Errorf("error %v, want: replaced by a new run", err)
		}
	})
	t.Run("canceled", func(t *testing.T) {
		e := j.create("canceled")
		ctx, cancel := context.WithCancel(t.Context())
		f := j.follow(ctx, e, bus.FollowOptions{}, true)
		f.event(t, bus.EventCreated)
		cancel()
		if _, err := f.wait(t); !errors.Is(err, context.Canceled) {
			t.Errorf("error %v, want context.Canceled", err)
		}
	})
}

// TestFollowSlowReaderGetsTheWholeReplay: replaying a finished experiment
// to a reader slower than FinalEventWait in all (watch --events into a slow
// pipe) still reaches the completed event: the wait for the end counts from
// the latest event.
func TestFollowSlowReaderGetsTheWholeReplay(t *testing.T) {
	j := newFakeJudge(t)
	e := j.create("slow")
	for range 12 {
		e = j.iterate(e)
	}
	e = j.store(e, complete)
	j.publish(e, bus.EventCompleted)
	var types []string
	opts := bus.FollowOptions{FinalEventWait: 300 * time.Millisecond, QuietAfterEnd: 50 * time.Millisecond, OnEvent: func(ev *bus.Event) {
		time.Sleep(50 * time.Millisecond) // 14 events: 700 ms in all
		types = append(types, ev.Type)
	}}
	if _, err := j.client.Follow(t.Context(), e, opts); err != nil {
		t.Fatal(err)
	}
	if len(types) != 14 || types[len(types)-1] != bus.EventCompleted {
		t.Errorf("the slow reader got %d events %v, want created, 12 iterations and completed", len(types), types)
	}
}
