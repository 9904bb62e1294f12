// Package retry is darklaunch's one way of trying again: a doubling delay
// with a cap, optionally bounded in time, over github.com/cenkalti/backoff.
// Every loop that waits for NATS, a Kubernetes API or a version to answer
// goes through Do, so that they all back off alike and stop with their
// context.
package retry

import (
	"context"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// Policy says how to try again. The zero value retries until the context
// ends, waiting 100ms after the first failure, twice as long after each
// next one, at most 30s.
type Policy struct {
	// First is the wait after the first failure. Default 100ms.
	First time.Duration
	// Max caps the wait. Default 30s.
	Max time.Duration
	// Within bounds the whole: attempts go on until Within after the
	// first, the last wait cut short to end there, and then the last error
	// is returned. Zero: until the context ends.
	Within time.Duration
	// Attempt bounds each attempt by a context of its own. Zero: each
	// attempt gets the caller's context.
	Attempt time.Duration
}

// Defaults of Policy.
const (
	DefaultFirst = 100 * time.Millisecond
	DefaultMax   = 30 * time.Second
)

func (p Policy) withDefaults() Policy {
	if p.First <= 0 {
		p.First = DefaultFirst
	}
	if p.Max <= 0 {
		p.Max = DefaultMax
	}
	p.Max = max(p.Max, p.First)
	return p
}

// Wait is the wait after the n-th failure in a row (n from 1): First,
// doubled n-1 times, capped at Max. A consumer that hands a message back
// with a delay (NakWithDelay) uses it where it cannot use Do.
func (p Policy) Wait(n int) time.Duration {
	p = p.withDefaults()
	w := p.First
	for i := 1; i < n && w < p.Max; i++ {
		w *= 2
	}
	return min(w, p.Max)
}

// Notify is told each failure that will be retried, and the wait before
// the next attempt: where a service logs "...; retrying".
type Notify func(err error, wait time.Duration)

// Do calls fn until it returns nil, returns an error made with Permanent,
// the context ends or p.Within has passed. It returns nil on success, the
// permanent error unwrapped, the last error when Within has passed, and
// the context's error (its cause) when the context ended first. notify may
// be nil.
func Do(ctx context.Context, p Policy, fn func(ctx context.Context) error, notify Notify) error {
	_, err := Value(ctx, p, func(ctx context.Context) (struct{}, error) { return struct{}{}, fn(ctx) }, notify)
	return err
}

// Value is Do for a function that returns a value with its error.
func Value[T any](ctx context.Context, p Policy, fn func(ctx context.Context) (T, error), notify Notify) (T, error) {
	p = p.withDefaults()
	var b backoff.BackOff = &backoff.ExponentialBackOff{
		InitialInterval: p.First,
		Multiplier:      2,
		MaxInterval:     p.Max,
		// No jitter: one process's loops do not thunder together, and a
		// fixed schedule keeps the services' logs and tests predictable.
		RandomizationFactor: 0,
	}
	if p.Within > 0 {
		// backoff's own MaxElapsedTime gives up when the next wait would
		// pass it, a whole wait early when attempts take time; a last
		// attempt at the deadline is worth more.
		b = &until{BackOff: b, deadline: time.Now().Add(p.Within)}
	}
	op := func() (T, error) {
		if err := ctx.Err(); err != nil {
			var zero T
			return zero, backoff.Permanent(context.Cause(ctx))
		}
		actx, cancel := ctx, context.CancelFunc(func() {})
		if p.Attempt > 0 {
			actx, cancel = context.WithTimeout(ctx, p.Attempt)
		}
		defer cancel()
		return fn(actx)
	}
	opts := []backoff.RetryOption{backoff.WithBackOff(b), backoff.WithMaxElapsedTime(0)}
	if notify != nil {
		opts = append(opts, backoff.WithNotify(backoff.Notify(notify)))
	}
	return backoff.Retry(ctx, op, opts...)
}

// until cuts a backoff's waits short at a deadline, and stops there.
type until struct {
	backoff.BackOff
	deadline time.Time
}

func (u *until) NextBackOff() time.Duration {
	left := time.Until(u.deadline)
	if left <= 0 {
		return backoff.Stop
	}
	return min(u.BackOff.NextBackOff(), left)
}

// Permanent marks err as not worth retrying: Do returns it at once.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return backoff.Permanent(err)
}
