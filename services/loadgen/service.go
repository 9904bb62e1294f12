// Package loadgen is darklaunch's traffic generator: for every running
// experiment it sends open-loop HTTP traffic at a fixed rate (the seed's curl
// loop: 2 requests a second after a 10 s delay) to the mirrored host, and
// reports progress as load events.
package loadgen

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
	"github.com/darklaunch/darklaunch/shared/members"
	"github.com/darklaunch/darklaunch/shared/reconcile"
	"github.com/darklaunch/darklaunch/shared/service"
)

// Name is loadgen's name: `darklaunch serve loadgen`, and the source of its events.
const Name = "loadgen"

// leaveTimeout bounds the deletion of this instance's lease at a stop.
const leaveTimeout = 2 * time.Second

// watchFirst bounds the join's wait for the watch of the experiments.
const watchFirst = 2 * time.Second

// Service is the loadgen.
type Service struct {
	cfg   Config
	nc    *nats.Conn
	log   *slog.Logger
	prom  *promMetrics
	ready *service.Readiness
	// group is Run's members.Group, once joined (for tests).
	group atomic.Pointer[members.Group]
}

var _ service.Readier = (*Service)(nil)

// New checks the configuration and applies its defaults.
func New(cfg Config, nc *nats.Conn, log *slog.Logger) (*Service, error) {
	log, prom, err := service.PrepareWith(Name, &cfg, nc, log, func() (*promMetrics, error) { return newPromMetrics(cfg.Registry) })
	if err != nil {
		return nil, err
	}
	return &Service{cfg: cfg, nc: nc, log: log.With("service", Name, "instance", cfg.Instance), prom: prom,
		ready: service.NewReadiness(nc, reconcile.Watching)}, nil
}

// Ready says whether loadgen watches the experiments on its connection.
func (s *Service) Ready() error { return s.ready.Ready() }

// Config returns the configuration with its defaults applied.
func (s *Service) Config() Config { return s.cfg }

// runner is the state of one Run.
type runner struct {
	cfg  Config
	log  *slog.Logger
	js   jetstream.JetStream
	prom *promMetrics
	// service is Run's context: when it has ended the process is stopping,
	// not the experiment.
	service context.Context
	// sent counts the requests of every traffic, for the CPU per request.
	sent atomic.Int64
	// group is the loadgen instances that share the rate (share.go), set
	// before joined is closed; nil: this one sends all of it.
	group  *members.Group
	joined chan struct{}
}

// Run sends traffic for every running experiment until ctx ends. It
// reconciles from the state bucket: after a restart the current values
// rebuild the traffic it had, from the remaining time on.
func (s *Service) Run(ctx context.Context) error {
	infra, err := bus.OpenInfra(ctx, s.nc, s.log)
	if err != nil {
		return service.Exit(ctx, Name, err)
	}
	r := &runner{cfg: s.cfg, log: s.log, js: infra.JS, prom: s.prom, service: ctx, joined: make(chan struct{})}
	// Joining waits for the watch of the experiments, which it would hold
	// back (before it, or beside it: by up to 100 ms under the suite's
	// -race load); a traffic waits for the join before it sends.
	go func() {
		defer close(r.joined)
		s.waitWatching(ctx, watchFirst)
		r.group = s.join(ctx, infra.Members)
		s.group.Store(r.group)
	}()
	s.log.Info("loadgen running", "url", s.cfg.URL, "host", s.cfg.Host, "rate", s.cfg.Rate, "delay", s.cfg.Delay)
	reconcile.Run(ctx, reconcile.Config{Store: infra.Store, Log: s.log, Ready: s.ready}, r)
	<-r.joined
	if r.group != nil {
		// Every traffic has stopped: the others take this one's share at
		// once instead of after a TTL.
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), leaveTimeout)
		r.group.Leave(lctx)
		cancel()
	}
	return nil
}

// Task is the traffic of a running experiment; a completed or deleted one
// gets none.
func (r *runner) Task(exp *experiment.Experiment) reconcile.Task {
	return reconcile.WhileRunning(exp, r.traffic)
}
