package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/darklaunch/darklaunch/internal/sampleapp"
	"github.com/darklaunch/darklaunch/internal/stack"
	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

// TestForgedVerdictRefused is issue 7's reproduction, with every service
// signed in as its own role: a dark version failing 20 % of requests, and,
// after the first iteration, a metrics event for the last iteration with
// perfect values published by an operator (who may create experiments).
// The server refuses it, and the verdict is the true one: FAIL on
// error-rate.
func TestForgedVerdictRefused(t *testing.T) {
	t.Parallel()
	e := startStack(t, stack.Config{StoreDir: t.TempDir(), Auth: true, Dark: sampleapp.Config{ErrorRate: 0.2}})
	var operator []byte
	for _, k := range e.st.Keys {
		if k.Role == bus.RoleOperator {
			operator = k.Seed
		}
	}
	nc, err := bus.Connect(bus.ConnConfig{URL: e.st.URL, NKeySeed: operator}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	forged := false
	x := e.run("forged", func(cur *experiment.Experiment) {
		if forged || cur.Status.CompletedIterations < 1 {
			return
		}
		forged = true
		zero, n := 0.0, 100.0
		ev := bus.NewEvent(bus.EventMetrics, "collector", cur, time.Now())
		ev.Snapshot = &bus.Snapshot{Iteration: cur.TotalIterations(), Role: bus.RoleDark, Version: cur.BaselineName(),
			Values: map[string]*float64{experiment.MetricRequestCount: &n, experiment.MetricErrorRate: &zero, experiment.MetricMeanLatency: &zero, experiment.MetricP95Latency: &zero}}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := bus.Publish(ctx, js, ev, ""); err == nil {
			t.Error("an operator published a metrics event")
		}
	})
	e.checkCompleted(x)
	if !forged {
		t.Fatal("the experiment ended before the forgery")
	}
	if x.Passed() {
		t.Fatal("the forged metrics event turned a dark version failing 20 % of requests into a pass")
	}
	if got := assessments(x); len(got) != 3 || got[2] {
		t.Errorf("assessments = %v, want error-rate false", got)
	}
}

// TestAuthEndToEnd: with every service signed in as its own role, each
// allowed only what it owns, the seed's experiment passes end to end.
func TestAuthEndToEnd(t *testing.T) {
	t.Parallel()
	e := startStack(t, stack.Config{StoreDir: t.TempDir(), Auth: true})
	x := e.run("auth", nil)
	e.checkCompleted(x)
	if !x.Passed() {
		t.Errorf("with per-service permissions the healthy dark version did not pass: %+v", x.Status.Analysis.Objectives)
	}
}
