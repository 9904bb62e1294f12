// Package stack starts darklaunch as one process: an embedded nats-server
// with JetStream (or an existing NATS), the blue/green sample app as live
// and dark versions (or URLs of your own), and the four services, each on
// its own NATS connection as if it were its own process. `darklaunch run`,
// `darklaunch dev` and the end-to-end tests use it.
package stack

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/darklaunch/darklaunch/internal/sampleapp"
	"github.com/darklaunch/darklaunch/services/collector"
	"github.com/darklaunch/darklaunch/services/judge"
	"github.com/darklaunch/darklaunch/services/loadgen"
	"github.com/darklaunch/darklaunch/services/router"
	"github.com/darklaunch/darklaunch/shared/bus"
)

// Service names.
const (
	Router    = "router"
	Loadgen   = "loadgen"
	Collector = "collector"
	Judge     = "judge"
)

// Services lists the four services in start order.
var Services = []string{Judge, Collector, Router, Loadgen}

// Config of a stack. The zero value runs everything embedded on free
// loopback ports.
type Config struct {
	// NATS is how to reach an existing NATS server; with an empty URL the
	// stack embeds one.
	NATS bus.ConnConfig
	// NATSAddr is where the embedded server listens; default 127.0.0.1:-1
	// (a free port).
	NATSAddr string
	// StoreDir keeps the embedded server's JetStream files; default a
	// temporary directory removed on Close.
	StoreDir string
	// ProxyAddr is where the router's mirroring proxy listens unless
	// Router.Proxy.Addr says; default 127.0.0.1:0 (a free port).
	ProxyAddr string
	// LiveURL and DarkURL are your own versions; each one left empty is
	// served by the sample app configured in Live or Dark.
	LiveURL, DarkURL string
	Live, Dark       sampleapp.Config
	// The services' own configurations; the stack fills in what wires them
	// together (the proxy's address, live and dark URLs, loadgen target).
	Router    router.Config
	Loadgen   loadgen.Config
	Collector collector.Config
	Judge     judge.Config
	// Run lists the services to run; default all four.
	Run []string
	// Log receives every component's logs.
	Log *slog.Logger
}

// Stack is a running darklaunch.
type Stack struct {
	cfg      Config
	log      *slog.Logger
	NATS     *bus.Embedded
	URL      string
	LiveURL  string
	DarkURL  string
	ProxyURL string
	Live     *sampleapp.App
	Dark     *sampleapp.App

	ctx     context.Context
	cancel  context.CancelFunc
	mu      sync.Mutex
	running map[string]*service
}

type service struct {
	nc     *nats.Conn
	cancel context.CancelFunc
	done   chan error
	// exited is closed when the service's Run returned, with err set.
	exited chan struct{}
	err    error
}

// Start starts the stack. Close it when done.
func Start(ctx context.Context, cfg Config) (_ *Stack, err error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if len(cfg.Run) == 0 {
		cfg.Run = Services
	}
	s := &Stack{cfg: cfg, log: cfg.Log, running: map[string]*service{}}
	s.ctx, s.cancel = context.WithCancel(ctx)
	defer func() {
		if err != nil {
			s.Close()
		}
	}()

	if cfg.NATS.URL == "" {
		s.NATS, err = bus.StartEmbedded(bus.EmbeddedConfig{Addr: cfg.NATSAddr, StoreDir: cfg.StoreDir})
		if err != nil {
			return nil, err
		}
		s.URL = s.NATS.URL()
	} else {
		s.URL = cfg.NATS.URL
	}

	s.LiveURL, s.Live, err = s.version(cfg.LiveURL, cfg.Live, "blue")
	if err != nil {
		return nil, err
	}
	s.DarkURL, s.Dark, err = s.version(cfg.DarkURL, cfg.Dark, "green")
	if err != nil {
		return nil, err
	}

	// The router first: building it binds the proxy's port (for a backend
	// that serves traffic itself), so a busy port is reported before
	// anything else starts, and its URL is known before loadgen starts.
	if s.cfg.Router.Proxy.Addr == "" {
		s.cfg.Router.Proxy.Addr = cmp.Or(cfg.ProxyAddr, "127.0.0.1:0")
	}
	if slices.Contains(cfg.Run, Router) {
		if err := s.start(Router); err != nil {
			return nil, err
		}
	}
	for _, name := range cfg.Run {
		if name == Router {
			continue // started above
		}
		if err := s.start(name); err != nil {
			return nil, err
		}
	}
	if slices.Contains(cfg.Run, Judge) {
		if err := s.waitForAPI(ctx); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// waitForAPI waits until the judge answers micro's PING, so that the first
// request of the caller finds it.
func (s *Stack) waitForAPI(ctx context.Context) error {
	nc, err := s.connect("darklaunch-stack")
	if err != nil {
		return err
	}
	defer nc.Close()
	s.mu.Lock()
	judge := s.running[Judge]
	s.mu.Unlock()
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, err := nc.Request("$SRV.PING."+bus.ServiceName, nil, 500*time.Millisecond)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("interrupted while starting: %w", context.Cause(ctx))
		case <-judge.exited:
			if ctx.Err() != nil { // stopped because we are
				return fmt.Errorf("interrupted while starting: %w", context.Cause(ctx))
			}
			// Its own error says why (no JetStream, say), not the PING's.
			return fmt.Errorf("the judge stopped while starting: %w", cmp.Or(judge.err, errors.New("it returned")))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the judge did not start answering within 15s: %w", err)
		}
	}
}

func (s *Stack) version(url string, cfg sampleapp.Config, name string) (string, *sampleapp.App, error) {
	if url != "" {
		return url, nil, nil
	}
	if cfg.Name == "" {
		cfg.Name = name
	}
	if cfg.Latency == 0 && cfg.Jitter == 0 {
		cfg.Latency, cfg.Jitter = 5*time.Millisecond, 2*time.Millisecond
	}
	app, err := sampleapp.New(cfg)
	if err != nil {
		return "", nil, err
	}
	if err := app.Start(); err != nil {
		return "", nil, err
	}
	return app.URL(), app, nil
}

// RestartNATS stops the embedded NATS server and starts it again on the
// same address and store, as a NATS restart in production would; the
// services reconnect by themselves. It needs Config.StoreDir (a temporary
// store does not outlive its server).
func (s *Stack) RestartNATS(down time.Duration) error {
	if s.NATS == nil {
		return errors.New("the stack uses an external NATS server")
	}
	if s.cfg.StoreDir == "" {
		return errors.New("RestartNATS needs Config.StoreDir")
	}
	addr := s.NATS.Server.Addr().String()
	s.NATS.Shutdown()
	time.Sleep(down)
	e, err := bus.StartEmbedded(bus.EmbeddedConfig{Addr: addr, StoreDir: s.cfg.StoreDir})
	if err != nil {
		return err
	}
	s.NATS = e
	return nil
}

// Client returns a new API client on its own connection.
func (s *Stack) Client() (*bus.Client, *nats.Conn, error) {
	nc, err := s.connect("darklaunch-client")
	if err != nil {
		return nil, nil, err
	}
	return &bus.Client{NC: nc}, nc, nil
}

func (s *Stack) connect(name string) (*nats.Conn, error) {
	c := s.cfg.NATS
	c.URL = s.URL
	c.Name = name
	return bus.Connect(c, s.log.With("component", name))
}

// StartService starts a service that is not running (after StopService).
// A router serves where the stopped one did, so loadgen's URL stays right;
// its port may take a moment to be free again.
func (s *Stack) StartService(name string) error {
	if name != Router {
		return s.start(name)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := s.start(Router)
		var op *net.OpError
		if err == nil || !errors.As(err, &op) || op.Op != "listen" || time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *Stack) start(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.running[name]; ok {
		return fmt.Errorf("%s is already running", name)
	}
	nc, err := s.connect("darklaunch-" + name)
	if err != nil {
		return err
	}
	log := s.log.With("service", name)
	var run func(context.Context) error
	switch name {
	case Router:
		cfg := s.cfg.Router
		if cfg.DefaultLiveURL == "" {
			cfg.DefaultLiveURL = s.LiveURL
		}
		if cfg.DefaultDarkURL == "" {
			cfg.DefaultDarkURL = s.DarkURL
		}
		svc, err := router.New(cfg, nc, log)
		if err != nil {
			nc.Close()
			return err
		}
		run = svc.Run
		if u := svc.URL(); u != "" && s.ProxyURL == "" {
			s.ProxyURL = u
			// A restarted router binds the same address, not a new free port.
			if pu, err := url.Parse(u); err == nil {
				s.cfg.Router.Proxy.Addr = pu.Host
			}
		}
	case Loadgen:
		cfg := s.cfg.Loadgen
		if cfg.URL == "" {
			cfg.URL = s.ProxyURL
		}
		svc, err := loadgen.New(cfg, nc, log)
		if err != nil {
			nc.Close()
			return err
		}
		run = svc.Run
	case Collector:
		svc, err := collector.New(s.cfg.Collector, nc, log)
		if err != nil {
			nc.Close()
			return err
		}
		run = svc.Run
	case Judge:
		svc, err := judge.New(s.cfg.Judge, nc, log)
		if err != nil {
			nc.Close()
			return err
		}
		run = svc.Run
	default:
		nc.Close()
		return fmt.Errorf("unknown service %q (want router, loadgen, collector or judge)", name)
	}
	ctx, cancel := context.WithCancel(s.ctx)
	svc := &service{nc: nc, cancel: cancel, done: make(chan error, 1), exited: make(chan struct{})}
	go func() {
		err := run(ctx)
		if err != nil && ctx.Err() == nil {
			log.Error("service stopped", "err", err)
		}
		svc.err = err
		close(svc.exited)
		svc.done <- err
	}()
	s.running[name] = svc
	return nil
}

// StopService stops one service, as a crash or a rolling restart would.
func (s *Stack) StopService(name string) error {
	s.mu.Lock()
	svc, ok := s.running[name]
	delete(s.running, name)
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("%s is not running", name)
	}
	svc.cancel()
	var err error
	select {
	case err = <-svc.done:
	case <-time.After(15 * time.Second):
		err = fmt.Errorf("%s did not stop within 15s", name)
	}
	svc.nc.Close()
	return err
}

// Close stops everything.
func (s *Stack) Close() error {
	var errs []error
	s.mu.Lock()
	names := make([]string, 0, len(s.running))
	for name := range s.running {
		names = append(names, name)
	}
	s.mu.Unlock()
	for _, name := range names {
		if err := s.StopService(name); err != nil {
			errs = append(errs, err)
		}
	}
	s.cancel()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, app := range []*sampleapp.App{s.Live, s.Dark} {
		if app != nil {
			app.Stop(ctx)
		}
	}
	if s.NATS != nil {
		s.NATS.Shutdown()
	}
	return errors.Join(errs...)
}
