package stack

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/darklaunch/darklaunch/services"
	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/retry"
	"github.com/darklaunch/darklaunch/shared/service"
)

// waitForAPI waits until the judge answers micro's PING, so that the first
// request of the caller finds it.
func (s *Stack) waitForAPI(ctx context.Context) error {
	nc, err := s.connect("darklaunch-stack", bus.RoleViewer)
	if err != nil {
		return err
	}
	defer nc.Close()
	s.mu.Lock()
	judge := s.running[services.Judge]
	s.mu.Unlock()
	errStopped := errors.New("the judge stopped")
	err = retry.Do(ctx, retry.Policy{First: 20 * time.Millisecond, Max: 20 * time.Millisecond, Within: 15 * time.Second}, func(context.Context) error {
		select {
		case <-judge.exited:
			return retry.Permanent(errStopped)
		default:
		}
		_, err := nc.Request("$SRV.PING."+bus.ServiceName, nil, 500*time.Millisecond)
		return err
	}, nil)
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil: // stopped because we are
		return fmt.Errorf("interrupted while starting: %w", context.Cause(ctx))
	case errors.Is(err, errStopped):
		// Its own error says why (no JetStream, say), not the PING's.
		return fmt.Errorf("the judge stopped while starting: %w", cmp.Or(judge.err, errors.New("it returned")))
	}
	return fmt.Errorf("the judge did not start answering within 15s: %w", err)
}

// StartService starts a service that is not running (after StopService).
// A router serves where the stopped one did, so loadgen's URL stays right;
// its port may take a moment to be free again.
func (s *Stack) StartService(name string) error {
	// One start at a time: two starts of one service must not both run it.
	s.starting.Lock()
	defer s.starting.Unlock()
	s.mu.Lock()
	_, dup := s.running[name]
	s.mu.Unlock()
	if dup {
		return fmt.Errorf("%s is already running", name)
	}
	r, err := retry.Value(s.ctx, retry.Policy{First: 50 * time.Millisecond, Max: 50 * time.Millisecond, Within: 5 * time.Second}, func(context.Context) (*running, error) {
		r, err := s.build(name)
		var op *net.OpError
		if err != nil && (!errors.As(err, &op) || op.Op != "listen") {
			return nil, retry.Permanent(err)
		}
		return r, err
	}, nil)
	if err != nil {
		return err
	}
	s.run(name, r)
	return nil
}

// build makes one service on a NATS connection of its own, as if it were
// its own process.
func (s *Stack) build(name string) (*running, error) {
	cfg, ok := s.configs[name]
	if !ok {
		spec, ok := services.Lookup(name)
		if !ok {
			return nil, fmt.Errorf("unknown service %q (want one of %s)", name, strings.Join(services.Names(), ", "))
		}
		cfg = spec.NewConfig()
		s.configs[name] = cfg
	}
	nc, err := s.connect("darklaunch-"+name, name)
	if err != nil {
		return nil, err
	}
	svc, err := cfg.Build(service.Deps{NC: nc, Log: s.log, Local: s.local, Dial: s.dial(name)}) // each service names itself in its logs
	if err != nil {
		nc.Close()
		return nil, err
	}
	if ep, ok := svc.(service.Endpoint); ok && ep.URL() != "" && s.ProxyURL == "" {
		// From now on a router built again serves here (Local.ProxyURL).
		s.ProxyURL = ep.URL()
		s.local.ProxyURL = s.ProxyURL
	}
	return &running{nc: nc, svc: svc}, nil
}

// release frees a service that was built but will not run: Run with an
// ended context returns at once, having let go of what Build took (the
// router's listener).
func (r *running) release() {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = r.svc.Run(ctx)
	r.nc.Close()
}

// run runs a built service until StopService or Close.
func (s *Stack) run(name string, r *running) {
	ctx, cancel := context.WithCancel(s.ctx)
	r.cancel, r.done, r.exited = cancel, make(chan error, 1), make(chan struct{})
	log := s.log.With("service", name)
	go func() {
		// Under a pprof label: a CPU profile of the process tells the
		// services apart (the scale benchmark's CPU by service).
		var err error
		pprof.Do(ctx, pprof.Labels("service", name), func(ctx context.Context) { err = r.svc.Run(ctx) })
		if err != nil && ctx.Err() == nil {
			log.Error("service stopped", "err", err)
		}
		r.err = err
		close(r.exited)
		r.done <- err
	}()
	s.mu.Lock()
	s.running[name] = r
	s.mu.Unlock()
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
