// Package routertest is what the router's tests share: experiments, live
// and dark versions that remember what they received, a client that sends
// requests through a proxy, and TestBackend, the contract every router
// backend passes (in the style of watermill's pubsub/tests).
package routertest

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"

	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

// Logger logs to the test's output, at info.
func Logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// Experiment is a Conformance experiment named name in "default" with a new
// UID, mirroring percent of host from live to dark, at stage.
func Experiment(name, host, live, dark string, percent float64, stage experiment.Stage) *experiment.Experiment {
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

// StatusEqual compares what both backends report of a routing: the
// backend, host, percent and versions.
func StatusEqual(a, b experiment.RoutingStatus) bool {
	return a.Backend == b.Backend && a.Host == b.Host && a.Percent == b.Percent && a.Live == b.Live && a.Dark == b.Dark
}

// Request is one request a Version received.
type Request struct {
	Method, Host, URI string
	Header            http.Header
	Body              []byte
}

// Version is a live or dark test server that remembers what it received.
type Version struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []Request
}

// NewVersion serves h (nil: an empty 200) on loopback until the test ends,
// recording each request before h answers it.
func NewVersion(t testing.TB, h http.HandlerFunc) *Version {
	v := &Version{}
	v.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		v.mu.Lock()
		v.reqs = append(v.reqs, Request{Method: r.Method, Host: r.Host, URI: r.URL.RequestURI(), Header: r.Header.Clone(), Body: body})
		v.mu.Unlock()
		if h != nil {
			h(w, r)
		}
	}))
	t.Cleanup(v.Close)
	return v
}

// Requests are the requests v received so far, in order.
func (v *Version) Requests() []Request {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]Request(nil), v.reqs...)
}

// WaitCount waits until v received n requests.
func (v *Version) WaitCount(t testing.TB, n int, within time.Duration) {
	t.Helper()
	if !poll(within, func() bool { return len(v.Requests()) >= n }) {
		t.Fatalf("%s received %d requests, want %d", v.URL, len(v.Requests()), n)
	}
}

// Client sends the tests' requests: never through an environment proxy,
// with idle connections enough for a few workers.
var Client = &http.Client{
	Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 64},
	Timeout:   10 * time.Second,
}

// Response is what Send got back.
type Response struct {
	Status int
	Header http.Header
	Body   string
}

// Send sends one request with the given Host through base.
func Send(t testing.TB, base, host, method, path string, body io.Reader) Response {
	t.Helper()
	req, err := http.NewRequest(method, base+path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	resp, err := Client.Do(req)
	if err != nil {
		t.Fatalf("%s %s (Host %s): %v", method, path, host, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return Response{Status: resp.StatusCode, Header: resp.Header, Body: string(b)}
}

// Eventually polls cond every few milliseconds until it holds or within
// ends.
func Eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	if !poll(within, cond) {
		t.Fatalf("timed out after %s waiting for %s", within, what)
	}
}

// poll calls cond every few milliseconds until it holds (true) or within
// ends (false).
func poll(within time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// RefusedURL is a loopback URL nothing listens on: connections are refused.
func RefusedURL(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr + "/"
}

// Infra makes sure of darklaunch's streams and bucket on nc, as every
// service does at start-up, and returns them.
func Infra(t testing.TB, nc *nats.Conn) *bus.Infra {
	t.Helper()
	infra, err := bus.EnsureInfra(context.Background(), nc, bus.StreamLimits{})
	if err != nil {
		t.Fatal(err)
	}
	return infra
}
