// Package routertest is what the router's tests share: experiments, live
// and dark versions that remember what they received, a client that sends
// requests through a proxy, and TestBackend, the contract every router
// backend passes (in the style of watermill's pubsub/tests).
package routertest

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nuid"

	"github.com/darklaunch/darklaunch/internal/testenv"
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
	testenv.EventuallyWithin(t, within, fmt.Sprintf("%d requests at %s", n, v.URL), func() (bool, string) {
		got := len(v.Requests())
		return got >= n, fmt.Sprintf("%d requests", got)
	})
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

// RefusedURL is a loopback URL nothing listens on: connections are refused.
func RefusedURL(t testing.TB) string {
	t.Helper()
	return "http://" + testenv.FreeAddr(t) + "/"
}
