// Package collector is darklaunch's metrics clock: for every running
// experiment it measures the live and the dark version at the end of each
// iteration, over the window from the experiment's start (Iter8 semantics),
// and publishes one metrics event per version for the judge.
package collector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/darklaunch/darklaunch/shared"
	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
	"github.com/darklaunch/darklaunch/shared/members"
	"github.com/darklaunch/darklaunch/shared/reconcile"
	"github.com/darklaunch/darklaunch/shared/service"
)

// Name is the collector's name: `darklaunch serve collector`, and the source of its events.
const Name = "collector"

// Service is the collector.
type Service struct {
	cfg  Config
	nc   *nats.Conn
	log  *slog.Logger
	prom *promMetrics
	// newSource builds the source once the infrastructure exists; tests
	// replace it with a fake.
	newSource func(cfg Config, infra *bus.Infra, log *slog.Logger) (Source, error)
	// swept, when set (tests), is called once the start-up sweep is done.
	swept func()
	ready *service.Readiness
}

var _ service.Readier = (*Service)(nil)

// New checks the configuration, applies its defaults and loads the
// prometheus source's metric definitions, so that a bad URL or metrics file
// stops the collector at start-up rather than at its first measurement.
func New(cfg Config, nc *nats.Conn, log *slog.Logger) (*Service, error) {
	log, prom, err := service.PrepareWith(Name, &cfg, nc, log, func() (*promMetrics, error) { return newPromMetrics(cfg.Registry, cfg.Source) })
	if err != nil {
		return nil, err
	}
	if err := cfg.loadMetrics(); err != nil {
		return nil, fmt.Errorf("collector: %s source: %w", cfg.Source, err)
	}
	return &Service{
		cfg:       cfg,
		nc:        nc,
		log:       log.With("service", Name, "instance", cfg.Instance),
		prom:      prom,
		newSource: newSource,
		ready:     service.NewReadiness(nc, reconcile.Watching),
	}, nil
}

// Ready says whether the collector watches the experiments on its
// connection.
func (s *Service) Ready() error { return s.ready.Ready() }

// Config returns the configuration with its defaults applied.
func (s *Service) Config() Config { return s.cfg }

// runner is the state of one Run.
type runner struct {
	cfg    Config
	log    *slog.Logger
	js     jetstream.JetStream
	obs    jetstream.Stream
	store  *bus.Store
	source Source
	prom   *promMetrics
	// events is the events stream, where a clock taken over finds the
	// last snapshot stored (owner.go).
	events jetstream.Stream
	// group is this collector among the others (owner.go); nil: it works
	// alone.
	group *members.Group
}

// Run keeps one clock per running experiment until ctx ends, among all the
// collectors that run (owner.go). It reconciles from the state bucket:
// after a restart, or on taking a clock over from another collector, each
// clock resumes after the last snapshot stored and catches up at once on
// the iterations whose time has passed (same Msg-Ids, so the stream drops
// what another collector published meanwhile).
func (s *Service) Run(ctx context.Context) error {
	infra, err := bus.OpenInfra(ctx, s.nc, s.log)
	if err != nil {
		return service.Exit(ctx, Name, err)
	}
	src, err := s.newSource(s.cfg, infra, s.log)
	if err != nil {
		return service.Exit(ctx, Name, err)
	}
	if bs, ok := src.(*BusSource); ok && bs.Routers == nil && infra.Members != nil {
		bs.Routers = watchRouterLeases(ctx, infra.Members, s.log)
	}
	r := &runner{cfg: s.cfg, log: s.log, js: infra.JS, obs: infra.Obs, store: infra.Store, source: src, prom: s.prom, events: infra.Events}
	if r.group = members.JoinOrAlone(ctx, infra.Members, bus.RoleCollector, s.cfg.Instance, s.log); r.group != nil {
		defer func() {
			// After the clocks have stopped: the lease's deletion hands
			// them to the others at once.
			lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			r.group.Leave(lctx)
		}()
	}
	// Experiments deleted while no collector ran: their observations would
	// otherwise stay until the stream's MaxAge.
	var sweep sync.WaitGroup
	defer sweep.Wait()
	sweep.Go(func() {
		r.purge(ctx, bus.ObsFilter("", ""))
		if s.swept != nil {
			s.swept()
		}
	})
	if s.cfg.Source == SourcePrometheus {
		s.log.Info("collector running", "source", s.cfg.Source, "grace", s.cfg.Grace, "prometheus", s.cfg.PrometheusURL, "metricsFile", s.cfg.MetricsFile, "metricsProvider", s.cfg.MetricsProvider, "metrics", len(s.cfg.Metrics), "queryTimeout", s.cfg.QueryTimeout)
	} else {
		s.log.Info("collector running", "source", s.cfg.Source, "grace", s.cfg.Grace)
	}
	reconcile.Run(ctx, reconcile.Config{Store: infra.Store, Log: s.log, Ready: s.ready}, r)
	return nil
}

// Task is the clock of a running experiment; a completed or deleted one
// needs none.
func (r *runner) Task(exp *experiment.Experiment) reconcile.Task {
	return reconcile.WhileRunning(exp, r.ownedClock)
}

// Release purges the observations of a run that is gone, deleted or
// replaced by a new run of the same name (create takes a completed run's
// key over): nothing will measure them again.
func (r *runner) Release(ctx context.Context, key string, last, cur *experiment.Experiment) {
	if cur == nil || (last != nil && last.Metadata.UID != cur.Metadata.UID) {
		r.purge(ctx, bus.ObsFilter(bus.SplitKey(key)))
	}
}

// purge deletes the stored observations of every experiment matched by
// filter that no longer exists: deleted, or replaced by a new experiment of
// the same name (another UID). The subjects are listed before the state is
// read, so the observations of an experiment created meanwhile are never
// taken: its state exists by the time it publishes, and it is read after.
func (r *runner) purge(ctx context.Context, filter string) {
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	info, err := r.obs.Info(pctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		r.log.Warn("list stored observations", "filter", filter, "err", err)
		return
	}
	current := map[string]string{} // key → UID of the experiment that exists, "" for none
	for subject := range info.State.Subjects {
		ns, name, uid, ok := bus.SplitObsSubject(subject)
		if !ok {
			// darklaunch.obs.<ns>.<name>, from before subjects named the
			// UID: nothing reads it any more.
			if err := r.obs.Purge(pctx, jetstream.WithPurgeSubject(subject)); err != nil {
				r.log.Warn("purge observations in an old subject", "subject", subject, "err", err)
			}
			continue
		}
		key := bus.Key(ns, name)
		cur, seen := current[key]
		if !seen {
			exp, _, err := r.store.Get(pctx, ns, name)
			switch {
			case errors.Is(err, shared.ErrNotFound):
			case err != nil:
				r.log.Warn("purge observations: read experiment", "experiment", ns+"/"+name, "err", err)
				continue // keep them: it may exist
			default:
				cur = exp.Metadata.UID
			}
			current[key] = cur
		}
		if uid == cur {
			continue
		}
		if err := r.obs.Purge(pctx, jetstream.WithPurgeSubject(subject)); err != nil {
			r.log.Warn("purge observations of a deleted experiment", "experiment", ns+"/"+name, "uid", uid, "err", err)
			continue
		}
		r.log.Debug("observations purged", "experiment", ns+"/"+name, "uid", uid)
	}
}
