package judge

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/darklaunch/darklaunch/shared/bus"
)

// resumeWithin is how soon after a NATS restart the judge handles an event
// again (issue 7: a new experiment is set up within 2s).
const resumeWithin = 2 * time.Second

// TestConsumerSetUpAgainAtAReconnect: NATS comes back without the judge's
// consumer (its state lost); the judge sets it up again as soon as the
// connection is back, so an event published after the restart is handled
// within 2s. nats.go's pull iterator only pulled again on the reconnect,
// from a consumer that no longer existed, and the judge never handled an
// event again. Readiness says not ready while NATS is down, ready once
// the consumer is back.
func TestConsumerSetUpAgainAtAReconnect(t *testing.T) {
	e := newEnv(t)
	s, _ := e.runJudge(Config{})
	x := e.create(e.doc("restart", 2))
	e.routing(x, true, "")
	e.waitStatus("restart", "Running", running)
	e.waitForWithin("the judge ready", resumeWithin, readyIs(s, true))

	e.srv.Stop()
	e.waitFor("the judge not ready while NATS is down", readyIs(s, false))
	dir := filepath.Join(e.srv.StoreDir, "jetstream", "$G", "streams", bus.StreamJudge, "obs")
	if _, err := os.Stat(filepath.Join(dir, bus.JudgeConsumer(0))); err != nil {
		t.Fatalf("the consumer's state: %v", err)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	e.srv.Start()
	restarted := time.Now()
	e.snapshot(x, bus.RoleLive, 1, good(1))
	e.snapshot(x, bus.RoleDark, 1, good(1))
	e.waitStatusWithin("restart", "iteration 1 after the restart", time.Until(restarted.Add(resumeWithin)), completed(1))
	t.Logf("handled %v after the restart", time.Since(restarted).Round(time.Millisecond))
	e.waitForWithin("the judge ready again", resumeWithin, readyIs(s, true))
}

// TestEventLeftPendingAtARestartIsDeliveredAgainAtOnce: NATS comes back
// counting an event as delivered to a holder that is gone (a judge killed
// with it, or an ack that a crash of nats-server lost: a killed server can
// come back with its consumer's last acks undone). One event is in flight
// at a time, so it held back every other for the ack wait, 30s: once 20s
// late after a NATS restart. Now it is handled within 2s of the restart.
func TestEventLeftPendingAtARestartIsDeliveredAgainAtOnce(t *testing.T) {
	e := newEnv(t)
	_, stop := e.runJudge(Config{})
	x := e.create(e.doc("held", 1))
	stop()
	// The holder takes the routing event while no judge runs, and never
	// acks it.
	e.routing(x, true, "")
	cons, err := e.js.Consumer(context.Background(), bus.StreamJudge, bus.JudgeConsumer(e.partitionOf("held")))
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var held []string
	for m := range batch.Messages() {
		held = append(held, m.Subject())
	}
	if len(held) != 1 || bus.EventSubjectOf(held[0]) != bus.EventSubject("default", "held", bus.EventRouting) {
		t.Fatalf("the holder got %v (%v), want the routing event", held, batch.Error())
	}

	s, _ := e.runJudge(Config{})
	e.srv.Restart()
	restarted := time.Now()
	e.waitStatusWithin("held", "Running after the restart", time.Until(restarted.Add(resumeWithin)), running)
	t.Logf("handled %v after the restart", time.Since(restarted).Round(time.Millisecond))
	e.waitForWithin("the judge ready", resumeWithin, readyIs(s, true))
}

// readyIs is a condition on the judge's readiness.
func readyIs(s *Service, want bool) func() (bool, string) {
	return func() (bool, string) {
		err := s.Ready()
		return (err == nil) == want, fmt.Sprint(err)
	}
}
