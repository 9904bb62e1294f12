package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/darklaunch/darklaunch/shared/members"
	"github.com/darklaunch/darklaunch/shared/retry"
)

// OpenInfra finds the streams and the bucket the judge creates
// (EnsureInfra), waiting for them as long as ctx lasts: the router, loadgen
// and the collector only use them, so that their NATS users need no right
// to create or change a stream. It says in the log what it waits for.
func OpenInfra(ctx context.Context, nc *nats.Conn, log *slog.Logger) (*Infra, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	infra := &Infra{JS: js}
	err = retry.Do(ctx, retry.Policy{First: 100 * time.Millisecond, Max: 5 * time.Second, Attempt: 5 * time.Second}, func(ctx context.Context) error {
		var err error
		if infra.Events, err = js.Stream(ctx, StreamEvents); err != nil {
			if errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
				return retry.Permanent(fmt.Errorf("%w (darklaunch needs JetStream: start nats-server with -js)", err))
			}
			return fmt.Errorf("stream %s: %w", StreamEvents, err)
		}
		if infra.Obs, err = js.Stream(ctx, StreamObs); err != nil {
			return fmt.Errorf("stream %s: %w", StreamObs, err)
		}
		kv, err := js.KeyValue(ctx, BucketExperiments)
		if err != nil {
			return fmt.Errorf("kv bucket %s: %w", BucketExperiments, err)
		}
		infra.Store = &Store{KV: kv, Conn: nc}
		if infra.Members, err = js.KeyValue(ctx, members.BucketMembers); err != nil {
			return fmt.Errorf("kv bucket %s: %w", members.BucketMembers, err)
		}
		return nil
	}, func(err error, wait time.Duration) {
		if errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrBucketNotFound) {
			log.Info("waiting for the judge to create darklaunch's streams and bucket", "missing", err.Error(), "retryIn", wait)
			return
		}
		log.Warn("darklaunch's streams not reachable yet", "err", err, "retryIn", wait)
	})
	if err != nil {
		return nil, err
	}
	return infra, nil
}
