package router

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

// Source is the router's name in the events it publishes.
const Source = "router"

// shutdownTimeout bounds the HTTP server's graceful shutdown and the last
// flush of observations.
const shutdownTimeout = 5 * time.Second

// Service is the router: it reconciles the experiments in the KV bucket
// with its backend's routes.
type Service struct {
	cfg     Config
	nc      *nats.Conn
	js      jetstream.JetStream
	log     *slog.Logger
	backend Backend
	// proxy is the backend when it is the local proxy, which needs an HTTP
	// server and a flusher; nil for other backends.
	proxy    *Proxy
	proxyURL atomic.Pointer[string]

	// seen is the last state of each experiment the watch delivered, so a
	// deleted key can still be torn down by UID. Only the watch goroutine
	// touches it.
	seen      map[string]*experiment.Experiment
	teardowns sync.WaitGroup
}

// New checks cfg (applying its defaults) and builds the backend.
func New(cfg Config, nc *nats.Conn, log *slog.Logger) (*Service, error) {
	return newService(cfg, nc, log, nil)
}

// newService is New with the backend given (tests: an Istio on fake
// clients), or built from cfg when nil.
func newService(cfg Config, nc *nats.Conn, log *slog.Logger, backend Backend) (*Service, error) {
	if nc == nil {
		return nil, errors.New("router: no NATS connection")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("service", Source)
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("router: %w", err)
	}
	if backend == nil {
		if backend, err = NewBackend(cfg, js, log); err != nil {
			return nil, fmt.Errorf("router: %w", err)
		}
	}
	s := &Service{cfg: cfg, nc: nc, js: js, log: log, backend: backend, seen: map[string]*experiment.Experiment{}}
	s.proxy, _ = backend.(*Proxy)
	return s, nil
}

// ProxyURL is the proxy's base URL ("http://127.0.0.1:8080") once Run
// listens, "" before and for backends without a proxy.
func (s *Service) ProxyURL() string {
	if u := s.proxyURL.Load(); u != nil {
		return *u
	}
	return ""
}

// Run serves the proxy and reconciles until ctx ends; nil on a clean
// shutdown.
func (s *Service) Run(ctx context.Context) error {
	infra, err := bus.EnsureInfra(ctx, s.nc, s.cfg.Streams)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("router: %w", err)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	var srv *http.Server
	var served chan struct{}
	if s.proxy != nil {
		ln := s.cfg.Listener
		if ln == nil {
			if ln, err = net.Listen("tcp", s.cfg.ProxyAddr); err != nil {
				return fmt.Errorf("router: proxy: %w", err)
			}
		}
		u := "http://" + ln.Addr().String()
		s.proxyURL.Store(&u)
		srv = &http.Server{
			Handler:           s.proxy,
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       2 * time.Minute,
			ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		}
		served = make(chan struct{})
		go func() {
			defer close(served)
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				cancel(fmt.Errorf("router: proxy: %w", err))
			}
		}()
		go s.proxy.runFlusher(ctx)
		s.log.Info("proxy listening", "url", u, "instance", s.cfg.Instance)
	}

	workers := bus.NewWorkers(ctx)
	infra.Store.Reconcile(ctx, s.log, func(c bus.Change) { s.reconcile(ctx, workers, c) })

	// Shutdown: reconcilers first (they publish), then the proxy.
	workers.Wait()
	s.teardowns.Wait()
	if srv != nil {
		sctx, scancel := context.WithTimeout(context.Background(), shutdownTimeout)
		if err := srv.Shutdown(sctx); err != nil {
			s.log.Warn("proxy shutdown cut short", "err", err)
			srv.Close()
		}
		scancel()
		<-served
		// The last flush gets a deadline of its own: a request that kept
		// Shutdown waiting must not cost the observations of all the others.
		cctx, ccancel := context.WithTimeout(context.Background(), shutdownTimeout)
		if err := s.proxy.Close(cctx); err != nil {
			s.log.Error("last observations not published", "err", err)
		}
		ccancel()
	}
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// reconcile brings one experiment's routing to what its state asks:
// Initializing without routing → set up and report; later stages → make
// sure the route exists (a restarted router); Completed (unless
// KeepRouting) or deleted → tear down.
func (s *Service) reconcile(ctx context.Context, workers *bus.Workers, c bus.Change) {
	key := c.Key
	e := c.Experiment
	old := s.seen[key]
	if e == nil {
		delete(s.seen, key)
		workers.Stop(key)
		if old != nil {
			s.teardown(ctx, old)
		}
		return
	}
	if old != nil && old.Metadata.UID != e.Metadata.UID {
		// An older experiment of the same name, gone without our seeing
		// its deletion.
		workers.Stop(key)
		s.teardown(ctx, old)
	}
	s.seen[key] = e
	switch e.Status.Stage {
	case experiment.StageInitializing:
		if e.Status.Routing == nil {
			workers.Ensure(key, e.Metadata.UID, func(ctx context.Context) { s.initialize(ctx, e) })
		} else {
			workers.Ensure(key, e.Metadata.UID, func(ctx context.Context) { s.restore(ctx, e) })
		}
	case experiment.StageRunning, experiment.StageFinishing:
		workers.Ensure(key, e.Metadata.UID, func(ctx context.Context) { s.restore(ctx, e) })
	case experiment.StageCompleted:
		workers.Stop(key)
		if s.cfg.KeepRouting {
			// Kept until the experiment is deleted; it stays in seen so
			// that the deletion tears it down.
			return
		}
		// Forgotten once torn down: a later deletion has nothing left to do.
		delete(s.seen, key)
		s.teardown(ctx, e)
	}
}

// initialize runs the backend's Setup for a new experiment and publishes the
// outcome as the routing event. It is repeated after a restart; the
// Msg-Id makes the second event a duplicate the stream drops.
func (s *Service) initialize(ctx context.Context, e *experiment.Experiment) {
	log := s.log.With("experiment", e.Key())
	status, err := s.backend.Setup(ctx, e)
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
	for wait := time.Second; ; wait = min(2*wait, 30*time.Second) {
		err := bus.Publish(ctx, s.js, ev, msgID)
		if err == nil {
			return
		}
		if ctx.Err() != nil {
			return
		}
		log.Error("routing event not published; retrying", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// restore makes sure a running experiment is routed, without a new event.
// Setup skips the init check past Initializing; it still fails on a
// configuration problem, which is retried until fixed or the experiment ends.
func (s *Service) restore(ctx context.Context, e *experiment.Experiment) {
	log := s.log.With("experiment", e.Key())
	for wait := s.cfg.InitInterval; ; wait = min(2*wait, 30*time.Second) {
		_, err := s.backend.Setup(ctx, e)
		if err == nil || ctx.Err() != nil {
			return
		}
		log.Error("mirroring of a running experiment not restored; retrying", "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// teardown removes the experiment's routing in the background: it waits for
// copies in flight, which must not hold up the watch.
func (s *Service) teardown(ctx context.Context, e *experiment.Experiment) {
	s.teardowns.Add(1)
	go func() {
		defer s.teardowns.Done()
		if err := s.backend.Teardown(ctx, e); err != nil && ctx.Err() == nil {
			s.log.Warn("teardown incomplete", "experiment", e.Key(), "err", err)
		}
	}()
}
