package bus

import (
	"context"
	"errors"

	"github.com/nats-io/nats.go"
)

// ErrReconnected is the cause of a context made by UntilReconnect: the
// connection to NATS was re-established, and what the work had set up on the
// server may be gone with a server restart.
var ErrReconnected = errors.New("NATS connection re-established")

// UntilReconnect returns a copy of ctx that also ends, with cause
// ErrReconnected, as soon as nc reconnects: the work run under it (a KV
// watch, a consumer) stops and is set up again at once, instead of whenever
// nats.go would notice that the server lost it. A server keeps an ordered
// consumer (what a KV watch is) in memory only, so a NATS restart drops it,
// and nats.go's KV watcher finds out only when two of its 5-second heartbeat
// checks in a row have seen nothing: 10 to 20 s later.
//
// Only reconnects after the call count; nats.go can have any number of
// listeners of a connection's status, so every watch has its own. The
// CancelFunc releases the listener.
func UntilReconnect(ctx context.Context, nc *nats.Conn) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	ch := nc.StatusChanged(nats.CONNECTED)
	go func() {
		defer nc.RemoveStatusListener(ch)
		select {
		case <-ch:
			cancel(ErrReconnected)
		case <-ctx.Done():
		}
	}()
	return ctx, func() { cancel(context.Canceled) }
}

// Reconnected says whether ctx, made by UntilReconnect, ended because the
// connection was re-established (and not because its parent ended).
func Reconnected(ctx context.Context) bool {
	return errors.Is(context.Cause(ctx), ErrReconnected)
}
