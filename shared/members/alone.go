package members

import (
	"context"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// joinTimeout bounds the reading of the bucket's TTL in JoinOrAlone.
const joinTimeout = 10 * time.Second

// JoinOrAlone joins role's group in kv with a lease of the bucket's TTL,
// as Join does, or returns nil when it cannot (no bucket: a judge older
// than it; an instance name the bucket cannot hold), having logged that
// this instance then does all the work, as a single instance always did.
// A nil *Group is a valid "alone" for the caller to test.
func JoinOrAlone(ctx context.Context, kv jetstream.KeyValue, role, instance string, log *slog.Logger) *Group {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if kv == nil {
		log.Warn("no members bucket: this instance works alone, as if it were the only one")
		return nil
	}
	var ttl time.Duration
	sctx, cancel := context.WithTimeout(ctx, joinTimeout)
	if st, err := kv.Status(sctx); err == nil {
		ttl = st.TTL()
	}
	cancel()
	g, err := Join(ctx, Config{KV: kv, Role: role, Instance: instance, TTL: ttl, Log: log})
	if err != nil {
		log.Warn("members bucket not joined: this instance works alone, as if it were the only one", "err", err)
		return nil
	}
	log.Info("joined the instances of the service", "role", role, "instance", instance, "ttl", g.cfg.TTL)
	return g
}
