package reconcile_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/internal/testenv"
	"github.com/darklaunch/darklaunch/shared/experiment"
	"github.com/darklaunch/darklaunch/shared/reconcile"
	"github.com/darklaunch/darklaunch/shared/retry"
)

// recorder is a reconciler that runs a task for every Running experiment
// and writes down, in order, what the loop did.
type recorder struct {
	mu  sync.Mutex
	log []string
	// fail is how many times each run's task fails before it succeeds.
	fail     int
	attempts map[string]int
	// hold keeps a task running until its context ends, as a clock does.
	hold bool
}

func (r *recorder) note(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.log = append(r.log, fmt.Sprintf(format, args...))
}

func (r *recorder) lines() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.log)
}

func (r *recorder) Task(e *experiment.Experiment) reconcile.Task {
	if e.Status.Stage != experiment.StageRunning {
		return nil
	}
	name := e.Metadata.Name + "@" + e.Metadata.UID[:4]
	return func(ctx context.Context) error {
		r.mu.Lock()
		r.attempts[name]++
		n := r.attempts[name]
		r.mu.Unlock()
		if n <= r.fail {
			return fmt.Errorf("attempt %d of %s failed", n, name)
		}
		r.note("start %s", name)
		if r.hold {
			<-ctx.Done()
			r.note("stop %s", name)
		}
		return nil
	}
}

func (r *recorder) Release(_ context.Context, key string, last, cur *experiment.Experiment) {
	uid := func(e *experiment.Experiment) string {
		if e == nil {
			return "-"
		}
		return e.Metadata.UID[:4]
	}
	r.note("release %s %s→%s", key, uid(last), uid(cur))
}

func start(t *testing.T, b *testenv.Bus, r *recorder) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		reconcile.Run(ctx, reconcile.Config{Store: b.Store, Retry: retry.Policy{First: time.Millisecond, Max: 5 * time.Millisecond}}, r)
	}()
	stop = func() {
		cancel()
		select {
		case <-done:
		case <-time.After(testenv.StopWithin):
			t.Error("Run did not return after its context ended")
		}
	}
	t.Cleanup(stop)
	return stop
}

func waitLines(t *testing.T, r *recorder, want ...string) {
	t.Helper()
	testenv.Eventually(t, strings.Join(want, ", "), func() (bool, string) {
		got := r.lines()
		return slices.Equal(got, want), strings.Join(got, ", ")
	})
}

func TestTaskLifecycle(t *testing.T) {
	b := testenv.NewBus(t)
	r := &recorder{attempts: map[string]int{}, hold: true}
	start(t, b, r)
	ctx := t.Context()

	e := testenv.Experiment(testenv.Named("a"), testenv.Running(time.Now()))
	rev, err := b.Store.Create(ctx, e)
	if err != nil {
		t.Fatal(err)
	}
	a1 := "a@" + e.Metadata.UID[:4]
	waitLines(t, r, "release default.a -→"+e.Metadata.UID[:4], "start "+a1)

	// A new state of the same run keeps its task.
	e.Status.CompletedIterations = 1
	if rev, err = b.Store.Replace(ctx, e, rev); err != nil {
		t.Fatal(err)
	}
	u := e.Metadata.UID[:4]
	waitLines(t, r, "release default.a -→"+u, "start "+a1, "release default.a "+u+"→"+u)

	// Completed: the task is stopped before the release.
	e.Status.Stage = experiment.StageCompleted
	if rev, err = b.Store.Replace(ctx, e, rev); err != nil {
		t.Fatal(err)
	}
	waitLines(t, r, "release default.a -→"+u, "start "+a1, "release default.a "+u+"→"+u, "stop "+a1, "release default.a "+u+"→"+u)

	// A new run of the same name; then deleted.
	e2 := testenv.Experiment(testenv.Named("a"), testenv.Running(time.Now()))
	if rev, err = b.Store.Replace(ctx, e2, rev); err != nil {
		t.Fatal(err)
	}
	u2 := e2.Metadata.UID[:4]
	a2 := "a@" + u2
	base := []string{"release default.a -→" + u, "start " + a1, "release default.a " + u + "→" + u, "stop " + a1, "release default.a " + u + "→" + u}
	waitLines(t, r, append(base, "release default.a "+u+"→"+u2, "start "+a2)...)
	if err := b.Store.Delete(ctx, "default", "a", rev); err != nil {
		t.Fatal(err)
	}
	waitLines(t, r, append(base, "release default.a "+u+"→"+u2, "start "+a2, "stop "+a2, "release default.a "+u2+"→-")...)
}

func TestFailingTaskIsRetriedUntilItSucceeds(t *testing.T) {
	b := testenv.NewBus(t)
	r := &recorder{attempts: map[string]int{}, fail: 3}
	start(t, b, r)
	e := testenv.Experiment(testenv.Named("a"), testenv.Running(time.Now()))
	if _, err := b.Store.Create(t.Context(), e); err != nil {
		t.Fatal(err)
	}
	name := "a@" + e.Metadata.UID[:4]
	waitLines(t, r, "release default.a -→"+e.Metadata.UID[:4], "start "+name)
	r.mu.Lock()
	n := r.attempts[name]
	r.mu.Unlock()
	if n != 4 {
		t.Errorf("%d attempts, want 3 failures and 1 success", n)
	}
}

func TestRestartedLoopConvergesFromTheStoredState(t *testing.T) {
	b := testenv.NewBus(t)
	running := testenv.Experiment(testenv.Named("run"), testenv.Running(time.Now()))
	done := testenv.Experiment(testenv.Named("done"), testenv.Running(time.Now()))
	done.Status.Stage = experiment.StageCompleted
	for _, e := range []*experiment.Experiment{running, done} {
		if _, err := b.Store.Create(t.Context(), e); err != nil {
			t.Fatal(err)
		}
	}
	r := &recorder{attempts: map[string]int{}, hold: true}
	stop := start(t, b, r)
	testenv.Eventually(t, "the running experiment's task", func() (bool, string) {
		got := r.lines()
		return slices.Contains(got, "start run@"+running.Metadata.UID[:4]), strings.Join(got, ", ")
	})
	stop()
	got := r.lines()
	if n := len(got); n == 0 || got[n-1] != "stop run@"+running.Metadata.UID[:4] {
		t.Errorf("after Run returned: %v; want the running task stopped last (Run waits for its tasks)", got)
	}
	for _, l := range got {
		if strings.HasPrefix(l, "start done@") {
			t.Errorf("a completed experiment got a task: %v", got)
		}
	}
	if !slices.Contains(got, "release default.done -→"+done.Metadata.UID[:4]) {
		t.Errorf("the completed experiment was not delivered to Release: %v", got)
	}
}

func TestRunReturnsWhenItsContextEnds(t *testing.T) {
	b := testenv.NewBus(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		reconcile.Run(ctx, reconcile.Config{Store: b.Store}, &recorder{attempts: map[string]int{}})
	}()
	select {
	case <-done:
	case <-time.After(testenv.StopWithin):
		t.Fatal(errors.New("Run with an ended context did not return"))
	}
}

// TestWatchesAgainAfterANATSRestart: a NATS restart takes the watch's
// consumer away; the loop watches again as soon as the connection is back,
// so an experiment created after the restart gets its task within 2s (the
// KV watcher alone noticed only after 10-20s, issue 7), and the tasks of
// the runs it had are kept.
func TestWatchesAgainAfterANATSRestart(t *testing.T) {
	b := testenv.NewBus(t)
	r := &recorder{attempts: map[string]int{}, hold: true}
	start(t, b, r)
	before := testenv.Experiment(testenv.Named("before"), testenv.Running(time.Now()))
	if _, err := b.Store.Create(t.Context(), before); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, "the first task", func() (bool, string) {
		return slices.Contains(r.lines(), "start before@"+before.Metadata.UID[:4]), strings.Join(r.lines(), ", ")
	})
	b.NATS.Restart()
	after := testenv.Experiment(testenv.Named("after"), testenv.Running(time.Now()))
	testenv.EventuallyWithin(t, 20*time.Second, "a create after the restart", func() (bool, string) {
		_, err := b.Store.Create(t.Context(), after)
		return err == nil, fmt.Sprint(err)
	})
	created := time.Now()
	testenv.EventuallyWithin(t, 2*time.Second, "the task of an experiment created after the restart", func() (bool, string) {
		return slices.Contains(r.lines(), "start after@"+after.Metadata.UID[:4]), strings.Join(r.lines(), ", ")
	})
	t.Logf("the task started %v after the create", time.Since(created).Round(time.Millisecond))
	if n := strings.Count(strings.Join(r.lines(), "\n"), "start before@"); n != 1 {
		t.Errorf("the first run's task started %d times; the re-watch must keep a running task", n)
	}
}

func TestWhileRunning(t *testing.T) {
	ran := 0
	work := func(context.Context, *experiment.Experiment) { ran++ }
	for stage, want := range map[experiment.Stage]bool{
		experiment.StageInitializing: false, experiment.StageRunning: true, experiment.StageCompleted: false,
	} {
		e := testenv.Experiment(testenv.Running(time.Now()))
		e.Status.Stage = stage
		task := reconcile.WhileRunning(e, work)
		if (task != nil) != want {
			t.Errorf("%s: task %v, want one: %v", stage, task != nil, want)
		}
		if task != nil {
			if err := task(t.Context()); err != nil || ran != 1 {
				t.Errorf("the task returned %v after %d runs of work, want nil after 1", err, ran)
			}
		}
	}
	unstarted := testenv.Experiment(testenv.Running(time.Now()))
	unstarted.Status.StartTime = nil
	if reconcile.WhileRunning(unstarted, work) != nil {
		t.Error("a Running experiment without startTime got a task")
	}
}
