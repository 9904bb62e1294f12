// Package judge is darklaunch's judge: it serves the experiments API
// (create, get, list, delete), owns the experiment state in the KV bucket,
// evaluates the dark version's objectives after every iteration and
// publishes the verdict, as Iter8's controller and analytics service do for a
// conformance experiment with mirrored traffic.
package judge

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/service"
)

// Service is one judge instance. Several may run on one NATS: API requests
// are spread by the queue group and events by the partitions' shared
// durable consumers (consume.go).
type Service struct {
	cfg   Config
	nc    *nats.Conn
	log   *slog.Logger
	prom  *promMetrics
	ready *service.Readiness
	cache *stateCache

	// Set by Run, before any handler runs.
	js     jetstream.JetStream
	events jetstream.Stream
	queue  jetstream.Stream
	store  *bus.Store
}

// New checks cfg, applies its defaults and returns a judge ready to Run.
func New(cfg Config, nc *nats.Conn, log *slog.Logger) (*Service, error) {
	log, prom, err := service.PrepareWith(Name, &cfg, nc, log, func() (*promMetrics, error) { return newPromMetrics(cfg.Registry) })
	if err != nil {
		return nil, err
	}
	return &Service{
		cfg:   cfg,
		nc:    nc,
		log:   log.With("service", Name, "instance", cfg.Instance),
		prom:  prom,
		ready: service.NewReadiness(nc, consumingParts()...),
		cache: newStateCache(),
	}, nil
}

var _ service.Readier = (*Service)(nil)

// Ready says whether the judge consumes its events on its connection (the
// API is served before the consumer starts, and nats.go subscribes it
// again itself after a reconnect).
func (s *Service) Ready() error { return s.ready.Ready() }

// Run serves the API, consumes the events and runs the watchdog until ctx
// ends; it returns nil on a clean shutdown.
func (s *Service) Run(ctx context.Context) error {
	if s.cfg.API != nil && s.cfg.API != s.nc {
		defer s.cfg.API.Close()
	}
	infra, err := bus.EnsureInfra(ctx, s.nc, s.cfg.Streams)
	if err != nil {
		return service.Exit(ctx, Name, err)
	}
	s.js, s.events, s.queue, s.store = infra.JS, infra.Events, infra.Judge, infra.Store

	// Handlers get a context that outlives ctx by the time micro needs to
	// drain: a request that arrived before the shutdown still gets its reply.
	hctx, cancelHandlers := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelHandlers()

	svc, err := s.addService(hctx)
	if err != nil {
		return fmt.Errorf("judge: micro service: %w", err)
	}
	defer func() {
		if err := svc.Stop(); err != nil {
			s.log.Warn("stop micro service", "err", err)
		}
	}()

	var wg sync.WaitGroup
	wg.Go(func() { s.consume(ctx) })
	wg.Go(func() { s.watchdog(ctx) })
	s.log.Info("judge running", "version", s.cfg.Version)
	<-ctx.Done()
	wg.Wait()
	s.log.Info("judge stopped")
	return nil
}

func (s *Service) now() time.Time { return s.cfg.Now().UTC() }

// expLog is the logger for one experiment.
func (s *Service) expLog(namespace, name string) *slog.Logger {
	return s.log.With("experiment", namespace+"/"+name)
}

// addService registers the experiments API as a micro service, so that
// `nats micro ls|info|stats` show it.
func (s *Service) addService(ctx context.Context) (micro.Service, error) {
	nc := s.nc
	if s.cfg.API != nil {
		nc = s.cfg.API
	}
	svc, err := micro.AddService(nc, micro.Config{
		Name:        bus.ServiceName,
		Version:     s.cfg.Version,
		Description: "darklaunch experiments API: create, get, list and delete dark-launch experiments",
		QueueGroup:  s.cfg.QueueGroup,
		Metadata:    map[string]string{"instance": s.cfg.Instance},
	})
	if err != nil {
		return nil, err
	}
	g := svc.AddGroup(bus.APIGroup)
	for _, ep := range []struct {
		name string
		fn   func(context.Context, micro.Request)
	}{
		{bus.EndpointCreate, serve(s, s.createRequest, s.create)},
		{bus.EndpointGet, serve(s, refRequest, s.get)},
		{bus.EndpointList, serve(s, listRequest, s.list)},
		{bus.EndpointDelete, serve(s, refRequest, s.delete)},
	} {
		if err := g.AddEndpoint(ep.name, micro.ContextHandler(ctx, ep.fn)); err != nil {
			_ = svc.Stop()
			return nil, fmt.Errorf("endpoint %s: %w", ep.name, err)
		}
	}
	return svc, nil
}
