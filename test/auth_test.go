package e2e

import (
	"context"
	"fmt"
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

// TestRequestsCannotAimTheJudge: a request's reply subject is the
// requester's to choose. Aimed at an experiment's state key or at its
// verdict event, neither the API's answers nor micro's own ($SRV.PING) land
// there: with darklaunch's roles the server refuses them (the API answers
// as bus.RoleAPI, in people's inboxes only), and on an open server the
// judge does not answer on a reply subject that is not an inbox.
func TestRequestsCannotAimTheJudge(t *testing.T) {
	for _, auth := range []bool{true, false} {
		t.Run(fmt.Sprintf("auth=%v", auth), func(t *testing.T) {
			t.Parallel()
			e := startStack(t, stack.Config{StoreDir: t.TempDir(), Auth: auth})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if _, err := e.client.Create(ctx, doc("aimed")); err != nil {
				t.Fatal(err)
			}
			key := bus.Key("default", "aimed")
			targets := []string{"$KV." + bus.BucketExperiments + "." + key, bus.EventSubject("default", "aimed", bus.EventVerdict)}
			requests := map[string][]byte{bus.SubjectGet: []byte("default/aimed"), bus.SubjectList: []byte("{}")}
			if auth {
				// micro answers these itself, past the judge's checks.
				requests["$SRV.PING"], requests["$SRV.INFO"] = nil, nil
			}
			for _, target := range targets {
				for subj, data := range requests {
					if err := e.nc.PublishRequest(subj, target, data); err != nil {
						t.Fatal(err)
					}
				}
			}
			// A request after them is answered once they have been handled.
			if err := e.nc.Flush(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(500 * time.Millisecond)
			if _, err := e.client.Get(ctx, bus.Ref{Namespace: "default", Name: "aimed"}); err != nil {
				t.Fatal(err)
			}

			kv, err := e.js.KeyValue(ctx, bus.BucketExperiments)
			if err != nil {
				t.Fatal(err)
			}
			history, err := kv.History(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			for _, h := range history {
				var x experiment.Experiment
				if err := bus.UnmarshalMsgpackStrict(h.Value(), &x); err != nil || x.Metadata.Name != "aimed" {
					t.Errorf("revision %d of the state is not the judge's: %.120q", h.Revision(), h.Value())
				}
			}
			if got := e.events("aimed", bus.EventVerdict); len(got) != 0 {
				t.Errorf("%d verdict events while the experiment runs, want none: %+v", len(got), got[0])
			}
		})
	}
}
