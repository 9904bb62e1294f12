package router

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/internal/testenv"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

// runnerBackend is a Runner that notes what the Service calls, in order.
type runnerBackend struct {
	mu    sync.Mutex
	calls []string
	fail  error // Run's error, returned at once
}

func (b *runnerBackend) note(s string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls = append(b.calls, s)
}

func (b *runnerBackend) noted() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.calls)
}

func (b *runnerBackend) Setup(context.Context, *experiment.Experiment) (experiment.RoutingStatus, error) {
	return experiment.RoutingStatus{}, nil
}

func (b *runnerBackend) Teardown(context.Context, *experiment.Experiment) error { return nil }

func (b *runnerBackend) Run(ctx context.Context) error {
	b.note("run")
	if b.fail != nil {
		return b.fail
	}
	<-ctx.Done()
	b.note("run ended")
	return nil
}

func (b *runnerBackend) Close(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		b.note("close without a deadline")
	}
	b.note("close")
	return nil
}

// TestServiceRunsARunner: a Runner backend runs while the Service does, is
// stopped when it stops and closed after; a Run that fails stops the
// Service with its error, and the backend is closed all the same.
func TestServiceRunsARunner(t *testing.T) {
	ns := testenv.StartNATS(t)
	for _, fail := range []error{nil, errors.New("listener gone")} {
		b := &runnerBackend{fail: fail}
		svc, err := newService(Config{}, ns.Conn(t), nil, b)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- svc.Run(ctx) }()
		if fail == nil {
			testenv.Until(t, 5*time.Second, "the backend to run", func() bool { return len(b.noted()) > 0 })
			cancel()
		}
		select {
		case err = <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return")
		}
		cancel()
		want := []string{"run", "run ended", "close"}
		if fail != nil {
			want = []string{"run", "close"}
			if !errors.Is(err, fail) {
				t.Errorf("Run returned %v, want the backend's %v", err, fail)
			}
		} else if err != nil {
			t.Errorf("Run returned %v, want nil", err)
		}
		if got := b.noted(); !slices.Equal(got, want) {
			t.Errorf("backend calls %v, want %v", got, want)
		}
	}
}
