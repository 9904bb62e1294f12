package proxy

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/services/router/mirroring"
	"github.com/darklaunch/darklaunch/services/router/routertest"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

func TestInitCheck(t *testing.T) {
	ok := routertest.NewVersion(t, nil)
	failing := routertest.NewVersion(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) })
	p, _ := newTestProxyWith(t, Config{}, mirroring.Settings{InitTimeout: 500 * time.Millisecond, InitInterval: 50 * time.Millisecond}, nil)
	ctx := context.Background()

	// A version answering 500 still answers.
	if _, err := p.Setup(ctx, routertest.Experiment("errors", "a.example.com", ok.URL, failing.URL, 40, experiment.StageInitializing)); err != nil {
		t.Errorf("dark answering 500: %v, want it accepted", err)
	}
	if got := failing.Requests()[0].Host; got != "a.example.com" {
		t.Errorf("init check sent Host %q, want a.example.com", got)
	}

	refused := routertest.RefusedURL(t)
	start := time.Now()
	_, err := p.Setup(ctx, routertest.Experiment("refused", "b.example.com", ok.URL, refused, 40, experiment.StageInitializing))
	if err == nil {
		t.Fatal("dark refusing connections passed the init check")
	}
	want := "dark version " + refused + " did not answer within 500ms: "
	if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "connection refused") || strings.Contains(err.Error(), "live") {
		t.Errorf("reason %q, want it to start with %q and name the connection error", err, want)
	}
	if d := time.Since(start); d < 500*time.Millisecond || d > 3*time.Second {
		t.Errorf("init check gave up after %v, want about InitTimeout (500ms)", d)
	}
	if r := p.table.Load().byHost["b.example.com"]; r != nil {
		t.Error("a failed init check left a route")
	}

	// Both down: both named, live first.
	_, err = p.Setup(ctx, routertest.Experiment("both", "c.example.com", routertest.RefusedURL(t), refused, 40, experiment.StageInitializing))
	if err == nil || !strings.Contains(err.Error(), "live version") || !strings.Contains(err.Error(), "; dark version") {
		t.Errorf("both down: %v, want both versions named, live first", err)
	}

	// Past Initializing (a router restart) there is no check: the route
	// comes back even with the dark version down.
	if _, err := p.Setup(ctx, routertest.Experiment("running", "d.example.com", ok.URL, refused, 40, experiment.StageRunning)); err != nil {
		t.Errorf("restoring a running experiment: %v, want no init check", err)
	}
}

// TestInitCheckWaitsForAVersionToStart: a version that starts listening
// during the check passes it.
func TestInitCheckWaitsForAVersionToStart(t *testing.T) {
	ok := routertest.NewVersion(t, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // refused until the server below starts

	p, _ := newTestProxyWith(t, Config{}, mirroring.Settings{InitTimeout: 5 * time.Second, InitInterval: 20 * time.Millisecond}, nil)
	started := make(chan *http.Server, 1)
	go func() {
		time.Sleep(200 * time.Millisecond) // the version is slow to start: that is the point
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			started <- nil
			return
		}
		srv := &http.Server{Handler: http.NotFoundHandler()}
		started <- srv
		_ = srv.Serve(ln)
	}()
	_, err = p.Setup(context.Background(), routertest.Experiment("late", "customdomain.com", ok.URL, "http://"+addr+"/", 40, experiment.StageInitializing))
	srv := <-started
	if srv == nil {
		t.Skip("could not listen again on the same port")
	}
	defer srv.Close()
	if err != nil {
		t.Fatalf("dark that started during the check: %v", err)
	}
}
