//go:build unix

package chaos

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/darklaunch/darklaunch/internal/sampleapp"
	"github.com/darklaunch/darklaunch/internal/testenv"
	"github.com/darklaunch/darklaunch/shared/bus"
)

// The services, and nats-server, by the names the table uses.
const (
	natsName  = "nats-server"
	judge     = "judge"
	router    = "router"
	loadgen   = "loadgen"
	collector = "collector"
)

// services in the order they start: the judge creates the streams and the
// bucket the others wait for.
var services = []string{judge, router, loadgen, collector}

// grace is the collector's wait past each iteration's end (its default,
// given explicitly so that the table's lateness has a known reference).
const grace = 1500 * time.Millisecond

// stack is one trial's world: a standalone nats-server with JetStream, the
// four `darklaunch serve` processes on it, and the live and dark versions
// (the sample app, in the test process, so that the test knows how many of
// loadgen's requests reached the live version).
type stack struct {
	t       *testing.T
	dir     string
	bin     binaries
	natsURL string
	monURL  string
	procs   map[string]*proc
	health  map[string]string // service → /readyz URL
	live    *counter
	nc      *nats.Conn
	js      jetstream.JetStream
}

// counter is a version of the sample app that counts the requests from
// loadgen (by User-Agent) that reach it, when they reach it: the router's
// init check and anything else is not traffic.
type counter struct {
	app  *sampleapp.App
	n    atomic.Int64
	srv  *http.Server
	addr string
}

func (c *counter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.UserAgent() == "darklaunch-loadgen" {
		c.n.Add(1)
	}
	c.app.ServeHTTP(w, r)
}

// startVersion serves a sample app version on a free loopback port until
// the test ends.
func startVersion(t *testing.T, cfg sampleapp.Config) *counter {
	t.Helper()
	app, err := sampleapp.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &counter{app: app, addr: ln.Addr().String()}
	c.srv = &http.Server{Handler: c, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = c.srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = app.Stop(ctx)
		_ = c.srv.Shutdown(ctx)
	})
	return c
}

// startStack starts nats-server and the four services, each a process of
// its own with its log in the test's temporary directory, and waits until
// every one is ready. Everything is killed when the test ends; the logs'
// tails are printed if it failed.
func startStack(t *testing.T, bin binaries) *stack {
	t.Helper()
	dir := t.TempDir()
	live := startVersion(t, sampleapp.Config{Name: "blue", Latency: 5 * time.Millisecond})
	dark := startVersion(t, sampleapp.Config{Name: "green", Latency: 5 * time.Millisecond, Jitter: 2 * time.Millisecond})
	natsAddr, monAddr, proxyAddr := testenv.FreeAddr(t), testenv.FreeAddr(t), testenv.FreeAddr(t)
	s := &stack{
		t: t, dir: dir, bin: bin, live: live,
		natsURL: "nats://" + natsAddr,
		monURL:  "http://" + monAddr,
		procs:   map[string]*proc{},
		health:  map[string]string{},
	}
	host, port, _ := net.SplitHostPort(natsAddr)
	_, monPort, _ := net.SplitHostPort(monAddr)
	s.procs[natsName] = &proc{name: natsName, path: bin.natsServer, log: filepath.Join(dir, natsName+".log"), args: []string{
		"-n", "chaos", "-a", host, "-p", port, "-m", monPort, // the monitor listens on -a too
		"-js", "-sd", filepath.Join(dir, "jetstream"),
	}}
	extra := map[string][]string{
		router:    {"--backend", "proxy", "--proxy-addr", proxyAddr, "--live", "http://" + live.addr, "--dark", "http://" + dark.addr, "--init-timeout", "10s"},
		loadgen:   {"--url", "http://" + proxyAddr},
		collector: {"--grace", grace.String()},
		judge:     {},
	}
	for _, name := range services {
		healthAddr := testenv.FreeAddr(t)
		s.health[name] = "http://" + healthAddr + "/readyz"
		args := append([]string{"serve", name, "--server", s.natsURL, "--health-addr", healthAddr}, extra[name]...)
		s.procs[name] = &proc{name: name, path: bin.darklaunch, log: filepath.Join(dir, name+".log"), args: args}
	}
	t.Cleanup(func() {
		for _, p := range s.procs {
			if err := p.kill(); err != nil {
				t.Error(err)
			}
		}
		if keep := os.Getenv("DARKLAUNCH_CHAOS_LOGS"); keep != "" {
			if err := s.keepLogs(filepath.Join(keep, strings.ReplaceAll(t.Name(), "/", "_"))); err != nil {
				t.Errorf("DARKLAUNCH_CHAOS_LOGS: %v", err)
			}
		}
		if t.Failed() {
			for _, name := range append([]string{natsName}, services...) {
				if s.procs[name].starts == 0 {
					continue
				}
				t.Logf("--- last lines of %s's log (%s):\n%s", name, s.procs[name].log, s.procs[name].tail(40))
			}
		}
	})

	ctx := context.Background()
	if err := s.procs[natsName].start(); err != nil {
		t.Fatal(err)
	}
	if err := s.natsReady(ctx); err != nil {
		t.Fatal(err)
	}
	for _, name := range services {
		if err := s.procs[name].start(); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.ready(ctx, services...); err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(s.natsURL, nats.Name("chaos-test"), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	s.nc = nc
	if s.js, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}
	return s
}

// keepLogs copies the processes' logs into dir.
func (s *stack) keepLogs(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, p := range s.procs {
		b, err := os.ReadFile(p.log)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(p.log)), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// natsReady waits until nats-server answers its health check with
// JetStream up.
func (s *stack) natsReady(ctx context.Context) error {
	return waitHTTP(ctx, s.monURL+"/healthz", 20*time.Second)
}

// ready waits until each named service's /readyz answers ok, and, for the
// judge, its API answers micro's PING.
func (s *stack) ready(ctx context.Context, names ...string) error {
	var errs []error
	for _, name := range names {
		if !s.procs[name].running() {
			errs = append(errs, fmt.Errorf("%s exited", name))
			continue
		}
		if err := waitHTTP(ctx, s.health[name], 30*time.Second); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// submit creates the experiment with the CLI, as an operator would.
func (s *stack) submit(ctx context.Context, file string) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.bin.darklaunch, "submit", file, "--server", s.natsURL)
	cmd.Env = childEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("darklaunch submit: %w\n%s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// store is the state bucket, opened once the judge created it.
func (s *stack) store(ctx context.Context) (*bus.Store, error) {
	kv, err := s.js.KeyValue(ctx, bus.BucketExperiments)
	if err != nil {
		return nil, err
	}
	return &bus.Store{KV: kv, Conn: s.nc}, nil
}

// events returns the experiment's events of one type, in stream order.
func (s *stack) events(ctx context.Context, name, typ string) ([]*bus.Event, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cons, err := s.js.OrderedConsumer(ctx, bus.StreamEvents, jetstream.OrderedConsumerConfig{FilterSubjects: []string{bus.EventSubject("default", name, typ)}})
	if err != nil {
		return nil, err
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return nil, err
	}
	var out []*bus.Event
	for range info.NumPending {
		m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			return nil, err
		}
		var ev bus.Event
		if err := bus.DecodeMsg(&nats.Msg{Data: m.Data(), Header: m.Headers()}, &ev); err != nil {
			return nil, err
		}
		out = append(out, &ev)
	}
	return out, nil
}
