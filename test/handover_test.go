package e2e

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/internal/sampleapp"
	"github.com/darklaunch/darklaunch/internal/testenv"
	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

// TestDeleteAndCreateOnOneHost is issue 7's trial: an experiment that runs
// deleted and a new one on its host created at the same moment, 20 times;
// every new one runs (none fails with "host ... is already mirrored for
// experiment" the deleted one), whichever request the judge stores first.
func TestDeleteAndCreateOnOneHost(t *testing.T) {
	t.Parallel()
	const pairs = 20
	e := start(t, sampleapp.Config{}, sampleapp.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// running waits until the judge has name Running, or has failed it:
	// the stage it ended at, and the status message.
	running := func(name string) (experiment.Stage, string) {
		var cur *experiment.Experiment
		testenv.Until(t, 20*time.Second, name+" to leave Initializing", func() bool {
			var err error
			cur, err = e.client.Get(ctx, bus.Ref{Namespace: "default", Name: name})
			if err != nil {
				t.Fatalf("get %s: %v", name, err)
			}
			return cur.Status.Stage != experiment.StageInitializing
		})
		return cur.Status.Stage, cur.Status.Message
	}
	prev := "pair-0"
	if _, err := e.client.Create(ctx, doc(prev)); err != nil {
		t.Fatal(err)
	}
	if stage, msg := running(prev); stage != experiment.StageRunning {
		t.Fatalf("%s: %s (%s), want Running", prev, stage, msg)
	}
	ran := 0
	for i := 1; i <= pairs; i++ {
		next := fmt.Sprintf("pair-%d", i)
		var deleted, created error
		var wg sync.WaitGroup
		wg.Go(func() { _, deleted = e.client.Delete(ctx, bus.Ref{Namespace: "default", Name: prev}) })
		wg.Go(func() { _, created = e.client.Create(ctx, doc(next)) })
		wg.Wait()
		if err := errors.Join(deleted, created); err != nil {
			t.Fatalf("delete %s and create %s: %v", prev, next, err)
		}
		if stage, msg := running(next); stage == experiment.StageRunning {
			ran++
		} else {
			t.Errorf("%s, created as %s was deleted: %s (%s), want Running", next, prev, stage, msg)
		}
		prev = next
	}
	t.Logf("%d/%d experiments created as the previous one on their host was deleted ran", ran, pairs)
}
