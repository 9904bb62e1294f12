// Package reconcile is the loop the router, loadgen and collector share:
// watch the experiments' state in the KV bucket, keep one task per
// experiment run that needs work, try a failing task again with backoff,
// and let the service release what a run no longer needs.
//
// A service keeps its per-experiment work in memory and rebuilds it from the
// state after a restart, as a Kubernetes controller does from its informer:
// the watch delivers every current value first, so Task and Release must be
// idempotent.
package reconcile

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
	"github.com/darklaunch/darklaunch/shared/retry"
	"github.com/darklaunch/darklaunch/shared/service"
)

// Task converges one experiment run. An error is tried again with the
// loop's backoff; nil ends the task, and the run gets no new one until its
// UID changes or the service restarts. A long-running task (a clock, a
// traffic) returns when its context ends: the run completed, was deleted or
// replaced, or the service is stopping.
type Task func(ctx context.Context) error

// Reconciler is what a service tells the loop about experiments.
type Reconciler interface {
	// Task returns the work a stored run needs now, or nil for none (the
	// run's task, if any, is stopped). It is called on the watch goroutine
	// for every new state; a task already started for the same run (UID) is
	// kept, so Task only says what the run needs, not whether it has it.
	Task(e *experiment.Experiment) Task
}

// WhileRunning is the task of a service that works on an experiment only
// while it runs, as loadgen's traffic and the collector's clock do: work,
// for a Running experiment that has started, until its context ends; no
// task at any other stage.
func WhileRunning(e *experiment.Experiment, work func(ctx context.Context, e *experiment.Experiment)) Task {
	if e.Status.Stage != experiment.StageRunning || e.Status.StartTime == nil {
		return nil
	}
	return func(ctx context.Context) error {
		work(ctx, e)
		return nil
	}
}

// Releaser is implemented by a Reconciler that holds something per run
// beyond its task: the router's routes, the collector's stored
// observations.
type Releaser interface {
	// Release is called for every change of key once the tasks that must
	// stop have stopped and before a new one starts: last is the state seen
	// before (nil for none), cur the new one (nil: the key was deleted). A
	// deletion is delivered even for a key never seen (last nil).
	Release(ctx context.Context, key string, last, cur *experiment.Experiment)
}

// Config configures Run.
type Config struct {
	// Store is the state bucket to watch.
	Store *bus.Store
	// Log receives the loop's warnings. Default: discarded.
	Log *slog.Logger
	// Retry is how a failing task is tried again. Default: retry's zero
	// Policy (100ms doubling to 30s, until the run ends).
	Retry retry.Policy
	// Ready, when set, is told when the watch is up (it has delivered
	// every current value) and when it is down: part Watching.
	Ready *service.Readiness
}

// Watching is the part of a service's readiness that is the loop's watch.
const Watching = "experiments watch"

// rewatch is how a broken watch is started again: 100ms after it broke,
// doubling to a second.
var rewatch = retry.Policy{First: 100 * time.Millisecond, Max: time.Second}

// Run reconciles until ctx ends, then waits for every task to return.
func Run(ctx context.Context, cfg Config, r Reconciler) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	l := &loop{cfg: cfg, r: r, workers: newWorkers(ctx), seen: map[string]*experiment.Experiment{}}
	defer l.workers.wait()
	// A new watch delivers every current value again: the reconciler
	// converges from scratch, which it must be able to (see the package
	// comment). After a reconnect the watch starts again at once (a NATS
	// restart lost it); after a failure, with backoff.
	for {
		err := retry.Do(ctx, rewatch, func(ctx context.Context) error {
			err := cfg.Store.Watch(ctx, func(c bus.Change) { l.change(ctx, c) }, func() { cfg.Ready.Up(Watching) })
			switch {
			case errors.Is(err, bus.ErrReconnected):
				return retry.Permanent(err)
			case err == nil && ctx.Err() == nil:
				err = errors.New("kv watch ended")
			}
			return err
		}, func(err error, _ time.Duration) {
			cfg.Ready.Down(Watching, err)
			cfg.Log.Warn("watching experiments failed; watching again", "err", err)
		})
		if !errors.Is(err, bus.ErrReconnected) {
			return // ctx ended
		}
		cfg.Ready.Down(Watching, err)
		cfg.Log.Info("NATS reconnected; watching experiments again")
	}
}

// loop is the state of one Run; only the watch goroutine touches seen.
type loop struct {
	cfg     Config
	r       Reconciler
	workers *workers
	seen    map[string]*experiment.Experiment
}

func (l *loop) change(ctx context.Context, c bus.Change) {
	last, cur := l.seen[c.Key], c.Experiment
	var task Task
	if cur != nil {
		task = l.r.Task(cur)
	}
	// Stop before Release: a release (a teardown) must not race the task
	// of the run it releases.
	if task == nil || (last != nil && last.Metadata.UID != cur.Metadata.UID) {
		l.workers.stop(c.Key)
	}
	if rel, ok := l.r.(Releaser); ok {
		rel.Release(ctx, c.Key, last, cur)
	}
	if cur == nil {
		delete(l.seen, c.Key)
		return
	}
	l.seen[c.Key] = cur
	if task != nil {
		l.workers.ensure(c.Key, cur.Metadata.UID, l.retrying(cur, task))
	}
}

// retrying runs task until it succeeds or its run ends, with backoff.
func (l *loop) retrying(e *experiment.Experiment, task Task) func(context.Context) {
	log := l.cfg.Log.With("experiment", e.Key(), "uid", e.Metadata.UID)
	return func(ctx context.Context) {
		_ = retry.Do(ctx, l.cfg.Retry, func(ctx context.Context) error { return task(ctx) }, func(err error, wait time.Duration) {
			log.Error("task failed; retrying", "err", err, "retryIn", wait)
		})
	}
}
