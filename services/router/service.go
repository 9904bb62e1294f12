package router

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
	"github.com/darklaunch/darklaunch/shared/members"
	"github.com/darklaunch/darklaunch/shared/reconcile"
	"github.com/darklaunch/darklaunch/shared/retry"
	"github.com/darklaunch/darklaunch/shared/service"
)

// Name is the router's name: `darklaunch serve router`; Source names it in
// the events it publishes.
const (
	Name   = "router"
	Source = Name
)

// closeTimeout bounds a backend's Close at shutdown (the proxy's last
// flush of observations).
const closeTimeout = 5 * time.Second

// Service is the router: it reconciles the experiments in the KV bucket
// with its backend's routes.
type Service struct {
	cfg     Config
	nc      *nats.Conn
	js      jetstream.JetStream
	log     *slog.Logger
	backend Backend
	// runner is the backend when it runs work of its own, else nil.
	runner Runner

	// seen is the last state of each run whose routing may exist, so a
	// deleted key can still be torn down by UID. Only the reconcile loop's
	// goroutine touches it.
	seen map[string]*experiment.Experiment

	// ctx is Run's, for the teardowns, which outlive the task that may
	// start one; store is the state the tasks read (handover.go). Both are
	// set before the reconcile loop starts.
	ctx   context.Context
	store *bus.Store
	// group is this router among the others (instances.go); nil: it
	// works alone.
	group *members.Group
	// ending are the teardowns under way, by experiment key (handover.go).
	mu        sync.Mutex
	ending    map[string][]*ending
	teardowns sync.WaitGroup
	ready     *service.Readiness
}

var _ service.Readier = (*Service)(nil)

// New checks cfg (applying its defaults) and builds the backend. The proxy
// backend listens from here on, so a busy port fails New; Run releases it.
func New(cfg Config, nc *nats.Conn, log *slog.Logger) (*Service, error) {
	return newService(cfg, nc, log, nil)
}

// newService is New with the backend given (tests: an Istio on fake
// clients), or built from cfg when nil.
func newService(cfg Config, nc *nats.Conn, log *slog.Logger, backend Backend) (*Service, error) {
	log, err := service.Prepare(Name, &cfg, nc, log)
	if err != nil {
		return nil, err
	}
	log = log.With("service", Source)
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("router: %w", err)
	}
	if backend == nil {
		if backend, err = NewBackend(cfg, js, log); err != nil {
			return nil, fmt.Errorf("router: %w", err)
		}
	}
	s := &Service{cfg: cfg, nc: nc, js: js, log: log, backend: backend,
		seen: map[string]*experiment.Experiment{}, ending: map[string][]*ending{},
		ready: service.NewReadiness(nc, reconcile.Watching)}
	s.runner, _ = backend.(Runner)
	return s, nil
}

// URL is where the backend serves the experiments' traffic, for one that
// serves it itself (Endpoint: the proxy, "http://127.0.0.1:8080"); "" for
// one that does not (istio: the mesh serves it).
func (s *Service) URL() string {
	if e, ok := s.backend.(Endpoint); ok {
		return e.URL()
	}
	return ""
}

// Ready says whether the router watches the experiments on its connection.
func (s *Service) Ready() error { return s.ready.Ready() }

// Run reconciles, and runs the backend's own work (Runner), until ctx
// ends; nil on a clean shutdown.
func (s *Service) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// The backend first: the proxy serves (404 for a host no experiment
	// mirrors) while the router waits for the judge's streams.
	stopBackend := s.runBackend(ctx, cancel)
	infra, err := bus.OpenInfra(ctx, s.nc, s.log)
	if err != nil {
		stopBackend()
		if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
			return cause // the backend's own failure
		}
		return service.Exit(ctx, Source, err)
	}
	s.ctx, s.store = ctx, infra.Store
	// The lease outlives ctx: it goes once the backend has stopped (the
	// proxy's last flush published), so that a collector never sees this
	// router gone before its last observations are stored.
	if s.group = members.JoinOrAlone(context.WithoutCancel(ctx), infra.Members, bus.RoleRouter, s.cfg.Instance, s.log); s.group != nil {
		defer func() {
			lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			s.group.Leave(lctx)
		}()
	}

	// A route that cannot be restored (a configuration problem) is tried
	// again from InitInterval on, doubling up to 30s, until fixed or the
	// experiment ends.
	reconcile.Run(ctx, reconcile.Config{Store: infra.Store, Log: s.log, Ready: s.ready, Retry: retry.Policy{First: s.cfg.InitInterval, Max: 30 * time.Second}}, s)

	// Shutdown: reconcilers first (they publish, and tear down through the
	// backend), then the backend's own work.
	s.teardowns.Wait()
	stopBackend()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// runBackend starts a Runner backend's Run, whose failure stops the
// Service, and returns what stops it: end Run (the proxy shuts its HTTP
// server down), then Close with a deadline of its own (the proxy's last
// flush: a request that kept the HTTP shutdown waiting must not cost the
// observations of all the others).
func (s *Service) runBackend(ctx context.Context, fail context.CancelCauseFunc) (stop func()) {
	if s.runner == nil {
		return func() {}
	}
	// Not ctx: the backend outlives the reconcilers, which may still use it.
	rctx, rcancel := context.WithCancel(context.WithoutCancel(ctx))
	ran := make(chan struct{})
	go func() {
		defer close(ran)
		if err := s.runner.Run(rctx); err != nil {
			fail(fmt.Errorf("router: %w", err))
		}
	}()
	return func() {
		rcancel()
		<-ran
		s.closeBackend()
	}
}

// closeBackend closes a Runner backend, within closeTimeout.
func (s *Service) closeBackend() {
	if s.runner == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	if err := s.runner.Close(ctx); err != nil {
		s.log.Error("backend not closed cleanly", "err", err)
	}
}

// Task brings a run's routing to what its state asks: Initializing without
// routing, set it up and report (initialize); Initializing with routing,
// Running or Finishing, make sure the route exists (a restarted router).
// A completed run needs no task; Release tears it down.
func (s *Service) Task(e *experiment.Experiment) reconcile.Task {
	switch e.Status.Stage {
	case experiment.StageInitializing:
		if e.Status.Routing == nil {
			return s.initTask(e)
		}
		return s.restore(e)
	case experiment.StageRunning, experiment.StageFinishing:
		return s.restore(e)
	}
	return nil
}

// Release tears down the routing of a run that is gone: deleted, replaced
// by a new run of the same name, or completed (unless KeepRouting, which
// keeps it until the deletion or a new experiment on its host).
func (s *Service) Release(_ context.Context, key string, _, cur *experiment.Experiment) {
	if old := s.seen[key]; old != nil && (cur == nil || old.Metadata.UID != cur.Metadata.UID) {
		delete(s.seen, key)
		s.teardown(old)
	}
	switch {
	case cur == nil:
	case cur.Status.Stage == experiment.StageCompleted && !s.cfg.KeepRouting:
		// Forgotten once torn down: a later deletion has nothing left to do.
		delete(s.seen, key)
		s.teardown(cur)
	default:
		s.seen[key] = cur
	}
}

// initialize runs the backend's Setup for a new experiment (taking its host
// over from an experiment that has ended: handover.go) and publishes the
// outcome as the routing event. It is repeated after a restart; the
// Msg-Id makes the second event a duplicate the stream drops.
func (s *Service) initialize(ctx context.Context, e *experiment.Experiment) {
	log := s.log.With("experiment", e.Key())
	status, err := s.setup(ctx, e)
	if ctx.Err() != nil {
		return // ended or shutting down: no verdict on the target
	}
	ev := bus.NewEvent(bus.EventRouting, Source, e, time.Now())
	if err != nil {
		ev.Routing = &bus.Routing{Ready: false, Reason: err.Error(), Status: status}
		ev.Message = "mirroring not set up: " + err.Error()
		log.Warn("mirroring not set up", "err", err)
	} else {
		ev.Routing = &bus.Routing{Ready: true, Status: status}
		ev.Message = fmt.Sprintf("mirroring %g%% of %s to the dark version %s", status.Percent, status.Host, status.Dark)
	}
	msgID := bus.MsgID(e.Metadata.UID, bus.EventRouting)
	_ = retry.Do(ctx, retry.Policy{First: time.Second, Max: 30 * time.Second}, func(ctx context.Context) error {
		return bus.Publish(ctx, s.js, ev, msgID)
	}, func(err error, wait time.Duration) {
		log.Error("routing event not published; retrying", "err", err, "retryIn", wait)
	})
}

// restore makes sure a running experiment is routed, without a new event.
// Setup skips the init check past Initializing; it still fails on a
// configuration problem, which the loop tries again.
func (s *Service) restore(e *experiment.Experiment) reconcile.Task {
	return func(ctx context.Context) error {
		if _, err := s.setup(ctx, e); err != nil {
			return fmt.Errorf("mirroring of running experiment %s not restored: %w", e.Key(), err)
		}
		return nil
	}
}
