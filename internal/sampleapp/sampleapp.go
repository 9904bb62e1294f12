// Package sampleapp is the built-in stand-in for the seed's Knative sample
// app (knative-route-demo blue and green): an HTTP server that answers with
// its version name after a configurable latency, with jitter, and fails a
// configurable share of requests. It lets a new user run a dark launch with
// nothing but Go installed, and lets the tests build a dark version that is
// slow or failing on purpose.
package sampleapp

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// Config describes one version of the app.
type Config struct {
	// Name is the version ("blue", "green"); it is in every answer.
	Name string
	// Addr to listen on; default 127.0.0.1:0 (a free port).
	Addr string
	// Latency added to every answer, plus or minus up to Jitter.
	Latency time.Duration
	Jitter  time.Duration
	// ErrorRate is the share of requests answered with ErrorCode, in [0, 1].
	// Errors are spread evenly (request n fails iff floor(n·rate) grows), so
	// a run is reproducible.
	ErrorRate float64
	// ErrorCode of failed answers; default 500.
	ErrorCode int
	// Hang makes the app accept requests and never answer them (until the
	// client gives up or the app stops): a dark version that hangs.
	Hang bool
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	var errs []error
	if c.Name == "" {
		errs = append(errs, errors.New("name: required"))
	}
	if c.Latency < 0 || c.Jitter < 0 {
		errs = append(errs, errors.New("latency and jitter must not be negative"))
	}
	if c.Jitter > c.Latency {
		errs = append(errs, fmt.Errorf("jitter %s must not exceed latency %s", c.Jitter, c.Latency))
	}
	if !(c.ErrorRate >= 0 && c.ErrorRate <= 1) { // NaN too
		errs = append(errs, fmt.Errorf("error-rate %v must be between 0 and 1", c.ErrorRate))
	}
	if c.ErrorCode != 0 && (c.ErrorCode < 400 || c.ErrorCode > 599) {
		errs = append(errs, fmt.Errorf("error-code %d must be a 4xx or 5xx status", c.ErrorCode))
	}
	return errors.Join(errs...)
}

// App is a running sample app.
type App struct {
	cfg      Config
	n        atomic.Uint64
	served   atomic.Int64
	srv      *http.Server
	ln       net.Listener
	stopHang chan struct{}
}

// New validates cfg and returns an app that is not yet listening.
func New(cfg Config) (*App, error) {
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.ErrorCode == 0 {
		cfg.ErrorCode = http.StatusInternalServerError
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("sample app %q: %w", cfg.Name, err)
	}
	a := &App{cfg: cfg, stopHang: make(chan struct{})}
	a.srv = &http.Server{Handler: a, ReadHeaderTimeout: 10 * time.Second}
	return a, nil
}

// Start listens and serves in the background.
func (a *App) Start() error {
	ln, err := net.Listen("tcp", a.cfg.Addr)
	if err != nil {
		return fmt.Errorf("sample app %q: %w", a.cfg.Name, err)
	}
	a.ln = ln
	go func() { _ = a.srv.Serve(ln) }()
	return nil
}

// URL is the app's base URL once started.
func (a *App) URL() string { return "http://" + a.ln.Addr().String() }

// Served is the number of requests answered so far.
func (a *App) Served() int64 { return a.served.Load() }

// Stop stops serving; hanging requests are released.
func (a *App) Stop(ctx context.Context) error {
	select {
	case <-a.stopHang:
	default:
		close(a.stopHang)
	}
	return a.srv.Shutdown(ctx)
}

// ServeHTTP answers like knative-route-demo: the version's name, after the
// configured latency, or an error.
func (a *App) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/healthz" {
		w.WriteHeader(http.StatusOK)
		return
	}
	if a.cfg.Hang {
		select {
		case <-r.Context().Done():
		case <-a.stopHang:
		}
		// Never an answer, not even when stopping: abort the connection
		// rather than let net/http send an empty 200.
		panic(http.ErrAbortHandler)
	}
	n := a.n.Add(1)
	if d := a.delay(); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	a.served.Add(1)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Version", a.cfg.Name)
	if failNth(n, a.cfg.ErrorRate) {
		w.WriteHeader(a.cfg.ErrorCode)
		fmt.Fprintf(w, "version %s failed this request on purpose (error rate %g)\n", a.cfg.Name, a.cfg.ErrorRate)
		return
	}
	fmt.Fprintf(w, "Hello World! This is version %s (host %s)\n", a.cfg.Name, r.Host)
}

func (a *App) delay() time.Duration {
	d := a.cfg.Latency
	if j := a.cfg.Jitter; j > 0 {
		d += time.Duration(rand.Int64N(int64(2*j)+1)) - j
	}
	return d
}

// failNth reports whether request n (from 1) fails at the given rate: the
// failures are spread evenly instead of drawn at random.
func failNth(n uint64, rate float64) bool {
	if rate <= 0 {
		return false
	}
	return uint64(float64(n)*rate) > uint64(float64(n-1)*rate)
}
