package service

import (
	"context"
	"errors"
	"testing"
)

func TestExit(t *testing.T) {
	live, stopped := context.Background(), canceled()
	boom := errors.New("no JetStream")
	if err := Exit(live, "collector", boom); !errors.Is(err, boom) || err.Error() != "collector: no JetStream" {
		t.Errorf("Exit on a live context = %v, want the error under the service's name", err)
	}
	if err := Exit(stopped, "collector", boom); err != nil {
		t.Errorf("Exit after the context ended = %v, want nil: a stop while starting is a clean shutdown", err)
	}
	if err := Exit(live, "collector", nil); err != nil {
		t.Errorf("Exit(nil) = %v", err)
	}
}

func canceled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}
