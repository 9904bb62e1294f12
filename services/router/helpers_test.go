package router

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/darklaunch/darklaunch/shared/experiment"
)

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
}

func testExperiment(name, host, live, dark string, percent float64, stage experiment.Stage) *experiment.Experiment {
	return &experiment.Experiment{
		APIVersion: experiment.APIVersionV2Alpha1,
		Kind:       experiment.Kind,
		Metadata:   experiment.Metadata{Name: name, Namespace: "default", UID: nuid.Next()},
		Spec: experiment.Spec{
			Target:    "default/sample-app",
			Strategy:  experiment.Strategy{TestingPattern: "Conformance"},
			Mirroring: &experiment.Mirroring{Host: host, Percent: &percent, LiveURL: live, DarkURL: dark},
		},
		Status: experiment.Status{Stage: stage},
	}
}

// seen is one request a test server received.
type seen struct {
	Method, Host, URI string
	Header            http.Header
	Body              []byte
}

// version is a live or dark test server that remembers what it received.
type version struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []seen
	got  chan struct{} // one value per request, buffered
}

func newVersion(t testing.TB, h http.HandlerFunc) *version {
	v := &version{got: make(chan struct{}, 100000)}
	v.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		v.mu.Lock()
		v.reqs = append(v.reqs, seen{Method: r.Method, Host: r.Host, URI: r.URL.RequestURI(), Header: r.Header.Clone(), Body: body})
		v.mu.Unlock()
		select {
		case v.got <- struct{}{}:
		default:
		}
		if h != nil {
			h(w, r)
		}
	}))
	t.Cleanup(v.Close)
	return v
}

func (v *version) requests() []seen {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]seen(nil), v.reqs...)
}

// waitCount waits until v received n requests.
func (v *version) waitCount(t testing.TB, n int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for len(v.requests()) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%s received %d requests, want %d", v.URL, len(v.requests()), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// newTestProxy serves a Proxy on a loopback httptest server; both are shut
// down at cleanup.
func newTestProxy(t testing.TB, cfg Config, js jetstream.JetStream) (*Proxy, string) {
	t.Helper()
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	p, err := NewProxy(cfg, js, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p)
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = p.Close(ctx)
	})
	return p, srv.URL
}

func setup(t testing.TB, p *Proxy, e *experiment.Experiment) experiment.RoutingStatus {
	t.Helper()
	st, err := p.Setup(context.Background(), e)
	if err != nil {
		t.Fatalf("setup %s: %v", e.Key(), err)
	}
	return st
}

var testClient = &http.Client{
	Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 64},
	Timeout:   10 * time.Second,
}

type response struct {
	Status int
	Header http.Header
	Body   string
}

// send sends one request with the given Host through base.
func send(t testing.TB, base, host, method, path string, body io.Reader) response {
	t.Helper()
	req, err := http.NewRequest(method, base+path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	resp, err := testClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s (Host %s): %v", method, path, host, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{Status: resp.StatusCode, Header: resp.Header, Body: string(b)}
}

func counter(t testing.TB, p *Proxy, exp, role, class string) float64 {
	t.Helper()
	return testutil.ToFloat64(p.prom.requests.WithLabelValues(exp, role, class))
}

func dropped(t testing.TB, p *Proxy, exp, reason string) float64 {
	t.Helper()
	return testutil.ToFloat64(p.prom.dropped.WithLabelValues(exp, reason))
}

// eventually polls cond every few milliseconds until it holds or within ends.
func eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// refusedURL is a loopback URL nothing listens on: connections are refused.
func refusedURL(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr + "/"
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
