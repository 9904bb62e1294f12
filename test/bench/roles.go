package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/darklaunch/darklaunch/services/router/mirroring"
	"github.com/darklaunch/darklaunch/services/router/proxy"
	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

// The benchmark runs in three processes so that each one's CPU and memory
// can be told apart: this one (the load generators' driver), "backends"
// (live and dark, their request counters, and the embedded nats-server the
// proxy publishes to) and "proxy" (darklaunch's proxy alone, whose RSS is
// measured). A child prints one JSON line of addresses on stdout once it
// serves, then runs until its stdin closes (the parent ending, however).

// Dark modes, set through the backends' control listener.
const (
	modeOK   = "ok"
	modeSlow = "slow" // +darkDelay before answering
	modeHung = "hung" // never answers; the caller gives up
)

// backendAddrs is what the backends child prints.
type backendAddrs struct {
	Live, Dark, Control, NATS string
}

// counts is what the control listener's /count answers.
type counts struct{ Live, Dark int64 }

const body = "hello from live\n"

// runBackends serves live and dark (Go net/http, as in the issue's
// measurement), a control listener and an embedded nats-server.
func runBackends(ctx context.Context, stdout io.Writer) error {
	nats, err := bus.StartEmbedded(bus.EmbeddedConfig{})
	if err != nil {
		return err
	}
	defer nats.Shutdown()

	var live, dark atomic.Int64
	var mu sync.Mutex
	mode, delay := modeOK, 200*time.Millisecond
	release := make(chan struct{}) // closed when leaving "hung"
	liveH := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		live.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, body)
	})
	darkH := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		dark.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		m, d, rel := mode, delay, release
		mu.Unlock()
		switch m {
		case modeSlow:
			t := time.NewTimer(d)
			defer t.Stop()
			select {
			case <-t.C:
			case <-r.Context().Done():
				return
			}
		case modeHung:
			select {
			case <-rel:
			case <-r.Context().Done():
				return
			}
		}
		_, _ = io.WriteString(w, "hello from dark\n")
	})
	control := http.NewServeMux()
	control.HandleFunc("GET /count", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(counts{Live: live.Load(), Dark: dark.Load()})
	})
	control.HandleFunc("POST /reset", func(w http.ResponseWriter, r *http.Request) {
		live.Store(0)
		dark.Store(0)
	})
	control.HandleFunc("POST /mode", func(w http.ResponseWriter, r *http.Request) {
		m := r.URL.Query().Get("dark")
		if m != modeOK && m != modeSlow && m != modeHung {
			http.Error(w, fmt.Sprintf("dark: %q is not ok, slow or hung", m), http.StatusBadRequest)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if mode == modeHung { // hung requests end, also when hung again: each run starts afresh
			close(release)
			release = make(chan struct{})
		}
		mode = m
		if s := r.URL.Query().Get("delay"); s != "" {
			d, err := time.ParseDuration(s)
			if err != nil {
				http.Error(w, "delay: "+err.Error(), http.StatusBadRequest)
				return
			}
			delay = d
		}
	})
	var addrs backendAddrs
	addrs.NATS = nats.URL()
	for _, s := range []struct {
		h    http.Handler
		addr *string
	}{{liveH, &addrs.Live}, {darkH, &addrs.Dark}, {control, &addrs.Control}} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		*s.addr = ln.Addr().String()
		srv := &http.Server{Handler: s.h, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		defer srv.Close()
	}
	if err := json.NewEncoder(stdout).Encode(addrs); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}

// proxyAddrs is what the proxy child prints.
type proxyAddrs struct{ URL string }

// runProxy starts darklaunch's proxy in this process, as the router's proxy
// backend does (proxy.New and Run, its defaults, observations published to
// JetStream; inflight 0 is MirrorInflight's default), and routes one
// running experiment: every request for host to
// live, percent of them copied to dark.
func runProxy(ctx context.Context, stdout, stderr io.Writer, natsURL, live, dark, host string, percent float64, inflight int) error {
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if path := os.Getenv("DARKLAUNCH_BENCH_CPUPROFILE"); path != "" {
		// The proxy process's own CPU profile, over every scenario it
		// serves: the first proxy's (the table's); the memory runs' fresh
		// proxies find the file there and leave it.
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err == nil {
			defer f.Close()
			if err := pprof.StartCPUProfile(f); err != nil {
				return err
			}
			defer pprof.StopCPUProfile()
		}
	}
	nc, err := bus.Connect(bus.ConnConfig{URL: natsURL, Name: "bench-proxy"}, log)
	if err != nil {
		return err
	}
	defer nc.Close()
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	infra, err := bus.EnsureInfra(sctx, nc, bus.StreamLimits{})
	if err != nil {
		return err
	}
	var js jetstream.JetStream = infra.JS
	p, err := proxy.New(proxy.Config{Addr: "127.0.0.1:0", MirrorInflight: inflight}, mirroring.Settings{}, js, nil, log)
	if err != nil {
		return err
	}
	served := make(chan error, 1)
	rctx, stop := context.WithCancel(context.Background())
	defer stop()
	go func() { served <- p.Run(rctx) }()
	exp := &experiment.Experiment{
		APIVersion: experiment.APIVersionV2Alpha1,
		Kind:       experiment.Kind,
		Metadata:   experiment.Metadata{Name: "bench", Namespace: "default", UID: nuid.Next()},
		Spec: experiment.Spec{
			Target:    "default/bench",
			Strategy:  experiment.Strategy{TestingPattern: "Conformance"},
			Mirroring: &experiment.Mirroring{Host: host, Percent: &percent, LiveURL: live, DarkURL: dark},
		},
		Status: experiment.Status{Stage: experiment.StageRunning},
	}
	if _, err := p.Setup(sctx, exp); err != nil {
		return fmt.Errorf("route %s: %w", host, err)
	}
	if err := json.NewEncoder(stdout).Encode(proxyAddrs{URL: p.URL()}); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case err := <-served:
		return err
	}
	stop()
	<-served
	cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer ccancel()
	return p.Close(cctx)
}

// untilStdinCloses is ctx ending when the parent closes our stdin (or
// exits, whatever the way).
func untilStdinCloses(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	return ctx, cancel
}
