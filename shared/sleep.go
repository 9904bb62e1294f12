package shared

import (
	"context"
	"time"
)

// SleepUntil waits until t, or until ctx ends; it reports whether t was
// reached with ctx still live. The services' clocks (collector iterations,
// loadgen's start delay) wait for wall-clock instants derived from the
// experiment's startTime, so a restarted service resumes on the same grid.
func SleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

// Sleep waits d, or until ctx ends; it reports whether d passed with ctx
// still live.
func Sleep(ctx context.Context, d time.Duration) bool {
	return SleepUntil(ctx, time.Now().Add(d))
}

// Every calls fn every d until ctx ends, the first time d from now: the
// judge's watchdog and the proxy's flusher.
func Every(ctx context.Context, d time.Duration, fn func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn()
		}
	}
}
