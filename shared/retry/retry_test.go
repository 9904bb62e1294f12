package retry

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

var errFlaky = errors.New("flaky")

func TestDoBacksOffDoublingUpToMax(t *testing.T) {
	var waits []time.Duration
	calls := 0
	err := Do(context.Background(), Policy{First: time.Millisecond, Max: 4 * time.Millisecond}, func(context.Context) error {
		calls++
		if calls < 6 {
			return errFlaky
		}
		return nil
	}, func(err error, wait time.Duration) {
		if !errors.Is(err, errFlaky) {
			t.Errorf("notified of %v, want the attempt's error", err)
		}
		waits = append(waits, wait)
	})
	if err != nil {
		t.Fatalf("Do = %v, want nil after the 6th attempt", err)
	}
	want := []time.Duration{1, 2, 4, 4, 4}
	for i := range want {
		want[i] *= time.Millisecond
	}
	if !slices.Equal(waits, want) {
		t.Errorf("waits = %v, want %v", waits, want)
	}
}

func TestWaitMatchesDo(t *testing.T) {
	p := Policy{First: 500 * time.Millisecond, Max: 30 * time.Second}
	for n, want := range map[int]time.Duration{1: 500 * time.Millisecond, 2: time.Second, 3: 2 * time.Second, 7: 30 * time.Second, 100: 30 * time.Second} {
		if got := p.Wait(n); got != want {
			t.Errorf("Wait(%d) = %v, want %v", n, got, want)
		}
	}
	if got := (Policy{}).Wait(1); got != DefaultFirst {
		t.Errorf("zero Policy Wait(1) = %v, want %v", got, DefaultFirst)
	}
}

func TestDoWithinReturnsTheLastError(t *testing.T) {
	calls := 0
	start := time.Now()
	err := Do(context.Background(), Policy{First: 5 * time.Millisecond, Max: 5 * time.Millisecond, Within: 30 * time.Millisecond}, func(context.Context) error {
		calls++
		return errFlaky
	}, nil)
	if !errors.Is(err, errFlaky) {
		t.Fatalf("Do = %v, want the last error", err)
	}
	if calls < 2 || calls > 7 {
		t.Errorf("%d attempts in a 30ms budget with 5ms waits, want 2 to 7", calls)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("Do took %v with Within 30ms", time.Since(start))
	}
}

func TestDoStopsAtAPermanentError(t *testing.T) {
	calls := 0
	fatal := errors.New("bad configuration")
	err := Do(context.Background(), Policy{}, func(context.Context) error {
		calls++
		return Permanent(fatal)
	}, func(error, time.Duration) { t.Error("a permanent error was retried") })
	if err != fatal || calls != 1 {
		t.Errorf("Do = %v after %d calls, want the permanent error itself after 1", err, calls)
	}
	if Permanent(nil) != nil {
		t.Error("Permanent(nil) is not nil")
	}
}

func TestDoEndsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithCancelCause(context.Background())
	stop := errors.New("shutting down")
	calls := 0
	err := Do(ctx, Policy{First: time.Hour}, func(context.Context) error {
		calls++
		cancel(stop)
		return errFlaky
	}, nil)
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("Do = %v after %d calls, want the context's cause after 1", err, calls)
	}
	// An ended context is not even tried.
	err = Do(ctx, Policy{}, func(context.Context) error { calls++; return nil }, nil)
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("Do on an ended context = %v (calls %d), want its cause and no call", err, calls)
	}
}

func TestAttemptGetsItsOwnDeadline(t *testing.T) {
	var deadlines []time.Duration
	v, err := Value(context.Background(), Policy{First: time.Millisecond, Attempt: 50 * time.Millisecond}, func(ctx context.Context) (int, error) {
		d, ok := ctx.Deadline()
		if !ok {
			return 0, Permanent(errors.New("no deadline"))
		}
		deadlines = append(deadlines, time.Until(d))
		if len(deadlines) < 2 {
			<-ctx.Done() // this attempt hangs until its own deadline
			return 0, ctx.Err()
		}
		return 42, nil
	}, nil)
	if err != nil || v != 42 {
		t.Fatalf("Value = %d, %v; want 42, nil", v, err)
	}
	for i, d := range deadlines {
		if d <= 0 || d > 50*time.Millisecond {
			t.Errorf("attempt %d had %v left, want a fresh deadline of at most 50ms", i+1, d)
		}
	}
}

// TestWithinTriesUntilTheDeadline: attempts that take time still get a
// last try at the deadline, the wait before it cut short, instead of Do
// giving up a whole wait early (what backoff's MaxElapsedTime does).
func TestWithinTriesUntilTheDeadline(t *testing.T) {
	const within = 100 * time.Millisecond
	start := time.Now()
	var lastStart, lastEnd time.Duration
	err := Do(context.Background(), Policy{First: 50 * time.Millisecond, Max: 50 * time.Millisecond, Within: within}, func(context.Context) error {
		lastStart = time.Since(start)
		time.Sleep(20 * time.Millisecond)
		lastEnd = time.Since(start)
		return errFlaky
	}, nil)
	if !errors.Is(err, errFlaky) {
		t.Fatalf("Do = %v, want the last error", err)
	}
	if lastStart < within-25*time.Millisecond && lastEnd < within {
		t.Errorf("the last attempt ran %v–%v into a %v budget: Do gave up with time left", lastStart, lastEnd, within)
	}
	if d := time.Since(start); d > 5*within {
		t.Errorf("Do took %v for a %v budget", d, within)
	}
}
