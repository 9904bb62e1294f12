package bus_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/internal/testenv"
	"github.com/darklaunch/darklaunch/shared/bus"
)

// TestWatchEndsAtAReconnect: a watch says when it has delivered the current
// state, and returns ErrReconnected as soon as the connection is back after
// a NATS restart (which lost its consumer), not at nats.go's heartbeat
// check 10-20s later; ending its context still returns nil.
func TestWatchEndsAtAReconnect(t *testing.T) {
	b := testenv.NewBus(t)
	live := make(chan struct{}, 1)
	done := make(chan error, 1)
	go func() {
		done <- b.Store.Watch(t.Context(), func(bus.Change) {}, func() { live <- struct{}{} })
	}()
	select {
	case <-live:
	case <-time.After(testenv.Within):
		t.Fatal("the watch never said it was live")
	}
	b.NATS.Restart()
	select {
	case err := <-done:
		if !errors.Is(err, bus.ErrReconnected) {
			t.Errorf("Watch returned %v, want ErrReconnected", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the watch did not end within 2s of the restart")
	}

	ctx, cancel := context.WithCancel(t.Context())
	go func() { done <- b.Store.Watch(ctx, func(bus.Change) {}, nil) }()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Watch returned %v after its context ended, want nil", err)
		}
	case <-time.After(testenv.Within):
		t.Fatal("the watch did not end with its context")
	}
}
