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
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/darklaunch/darklaunch/internal/sampleapp"
	"github.com/darklaunch/darklaunch/services"
	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/service"
)

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
	// ProxyAddr is where the router's mirroring proxy listens unless the
	// router's own configuration says; default 127.0.0.1:0 (a free port).
	ProxyAddr string
	// LiveURL and DarkURL are your own versions; each one left empty is
	// served by the sample app configured in Live or Dark.
	LiveURL, DarkURL string
	Live, Dark       sampleapp.Config
	// Services are the services' own configurations (&router.Config{...},
	// ...); a service without one runs with its defaults. The stack gives
	// each what wires them together (service.Local: the versions, the
	// proxy's address and URL).
	Services []service.Config
	// Run lists the services to run, by name; default all of services.All.
	Run []string
	// Auth makes the embedded NATS server let in only darklaunch's users:
	// each service signs in as its own role, which may publish only what it
	// owns (bus.Permissions); Stack.Keys holds the people's keys. Only
	// with an embedded server.
	Auth bool
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

	// Keys are the roles' keys when Config.Auth is set: the services sign in
	// with theirs; give the people's (bus.RoleOperator, bus.RoleViewer) to
	// the nats and darklaunch CLIs.
	Keys  []bus.RoleKey
	users []*server.NkeyUser

	ctx   context.Context
	local *service.Local
	// starting serializes StartService.
	starting sync.Mutex
	// configs are the services' configurations, by name.
	configs map[string]service.Config
	cancel  context.CancelFunc
	mu      sync.Mutex
	running map[string]*running
}

type running struct {
	nc     *nats.Conn
	svc    service.Runner
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
		cfg.Run = services.Names()
	}
	s := &Stack{cfg: cfg, log: cfg.Log, running: map[string]*running{}, configs: map[string]service.Config{}}
	for _, c := range cfg.Services {
		if _, ok := services.Lookup(c.Service()); !ok {
			return nil, fmt.Errorf("a configuration for unknown service %q", c.Service())
		}
		s.configs[c.Service()] = c
	}
	for _, name := range cfg.Run {
		if _, ok := services.Lookup(name); !ok {
			return nil, fmt.Errorf("unknown service %q (want one of %s)", name, strings.Join(services.Names(), ", "))
		}
	}
	// In the registry's order, whatever Run's: the router is built before
	// loadgen, which sends its traffic to the router's proxy.
	var specs []service.Spec
	for _, spec := range services.All() {
		if slices.Contains(cfg.Run, spec.Name) {
			specs = append(specs, spec)
		}
	}
	s.ctx, s.cancel = context.WithCancel(ctx)
	defer func() {
		if err != nil {
			s.Close()
		}
	}()

	if cfg.Auth && cfg.NATS.URL != "" {
		return nil, errors.New("authorization (Auth) configures the embedded NATS server; an existing one has its own")
	}
	if cfg.NATS.URL == "" {
		if cfg.Auth {
			if s.Keys, err = bus.NewKeys(); err != nil {
				return nil, err
			}
			if s.users, err = bus.Users(s.Keys); err != nil {
				return nil, err
			}
		}
		s.NATS, err = bus.StartEmbedded(bus.EmbeddedConfig{Addr: cfg.NATSAddr, StoreDir: cfg.StoreDir, Users: s.users})
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
	s.local = &service.Local{LiveURL: s.LiveURL, DarkURL: s.DarkURL, ProxyAddr: cmp.Or(cfg.ProxyAddr, "127.0.0.1:0")}

	// Build every service before running any: building the router binds
	// its proxy's port, so a busy port is reported before anything runs,
	// and the proxy's URL is known before loadgen is built.
	built := make([]*running, 0, len(specs))
	defer func() {
		if err != nil {
			for _, r := range built {
				r.release()
			}
		}
	}()
	for _, spec := range specs {
		r, err := s.build(spec.Name)
		if err != nil {
			return nil, err
		}
		built = append(built, r)
	}
	for i, spec := range specs {
		s.run(spec.Name, built[i])
	}
	built = nil
	if slices.Contains(cfg.Run, services.Judge) {
		if err := s.waitForAPI(ctx); err != nil {
			return nil, err
		}
	}
	return s, nil
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
	e, err := bus.StartEmbedded(bus.EmbeddedConfig{Addr: addr, StoreDir: s.cfg.StoreDir, Users: s.users})
	if err != nil {
		return err
	}
	s.NATS = e
	return nil
}

// Client returns a new API client on its own connection.
func (s *Stack) Client() (*bus.Client, *nats.Conn, error) {
	nc, err := s.connect("darklaunch-client", bus.RoleOperator)
	if err != nil {
		return nil, nil, err
	}
	return &bus.Client{NC: nc}, nc, nil
}

// connect connects as role: with Auth, with the role's key; the services'
// replies come to inboxes of their own.
func (s *Stack) connect(name, role string) (*nats.Conn, error) {
	c := s.cfg.NATS
	c.URL = s.URL
	c.Name = name
	c.InboxPrefix = bus.InboxPrefix(role)
	for _, k := range s.Keys {
		if k.Role == role {
			c.NKeySeed = k.Seed
		}
	}
	return bus.Connect(c, s.log.With("component", name))
}

// dial is service's Deps.Dial: with Auth, a connection as role signed in
// with the role's key; without, none (the service uses its own).
func (s *Stack) dial(service string) func(role, _ string) (*nats.Conn, error) {
	return func(role, _ string) (*nats.Conn, error) {
		if !s.cfg.Auth {
			return nil, nil
		}
		return s.connect("darklaunch-"+service+"-"+role, role)
	}
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
