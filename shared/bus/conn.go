package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/darklaunch/darklaunch/shared/retry"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ConnConfig says how to reach NATS.
type ConnConfig struct {
	// URL of the server(s), comma-separated. Default nats.DefaultURL.
	URL string
	// Name identifies the client in the server's monitoring.
	Name string
	// CredsFile is a NATS credentials file (JWT + NKey), optional.
	CredsFile string
	// Token, User and Password are the simpler auth methods, optional.
	Token, User, Password string
}

// Connect dials NATS and keeps reconnecting for as long as the process lives:
// a NATS restart must not end a service.
func Connect(cfg ConnConfig, log *slog.Logger) (*nats.Conn, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	url := cfg.URL
	if url == "" {
		url = nats.DefaultURL
	}
	opts := []nats.Option{
		nats.Name(cfg.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.RetryOnFailedConnect(false),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("nats reconnected", "url", nc.ConnectedUrlRedacted()) }),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			log.Warn("nats async error", "subject", subj, "err", err)
		}),
	}
	if cfg.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(cfg.CredsFile))
	}
	if cfg.Token != "" {
		opts = append(opts, nats.Token(cfg.Token))
	}
	if cfg.User != "" {
		opts = append(opts, nats.UserInfo(cfg.User, cfg.Password))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w", url, err)
	}
	return nc, nil
}

// Limits of the streams; zero values take the defaults below.
type StreamLimits struct {
	// EventsMaxAge is how long events are kept. Default 7 days.
	EventsMaxAge time.Duration
	// ObsMaxAge is how long observations are kept; it must outlive the
	// longest experiment, since a restarted collector replays them. Default 8 days.
	ObsMaxAge time.Duration
	// ObsMaxBytes bounds the observation stream. Default 1 GiB.
	ObsMaxBytes int64
	// Replicas for clustered NATS. Default 1.
	Replicas int
}

// Infra is the JetStream side of the bus: the two streams and the state bucket.
type Infra struct {
	JS     jetstream.JetStream
	Events jetstream.Stream
	Obs    jetstream.Stream
	Store  *Store
}

// EnsureInfra creates or updates the streams and the KV bucket. Every service
// calls it at start-up (it is idempotent), so they can start in any order.
func EnsureInfra(ctx context.Context, nc *nats.Conn, lim StreamLimits) (*Infra, error) {
	if lim.EventsMaxAge == 0 {
		lim.EventsMaxAge = 7 * 24 * time.Hour
	}
	if lim.ObsMaxAge == 0 {
		lim.ObsMaxAge = 8 * 24 * time.Hour
	}
	if lim.ObsMaxBytes == 0 {
		lim.ObsMaxBytes = 1 << 30
	}
	if lim.Replicas == 0 {
		lim.Replicas = 1
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	var infra Infra
	infra.JS = js
	// A JetStream API call can race a server that is still starting (or
	// restarting): retry for a little while before giving up.
	err = retryJS(ctx, 10*time.Second, func(ctx context.Context) error {
		var err error
		infra.Events, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
			Name:        StreamEvents,
			Description: "darklaunch experiment lifecycle events",
			Subjects:    []string{EventsPrefix + ".>"},
			Storage:     jetstream.FileStorage,
			MaxAge:      lim.EventsMaxAge,
			Duplicates:  10 * time.Minute,
			Replicas:    lim.Replicas,
		})
		if err != nil {
			return fmt.Errorf("stream %s: %w", StreamEvents, err)
		}
		infra.Obs, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
			Name:        StreamObs,
			Description: "darklaunch proxy observations (aggregated per flush period)",
			Subjects:    []string{ObsPrefix + ".>"},
			Storage:     jetstream.FileStorage,
			MaxAge:      lim.ObsMaxAge,
			MaxBytes:    lim.ObsMaxBytes,
			Duplicates:  2 * time.Minute,
			Replicas:    lim.Replicas,
		})
		if err != nil {
			return fmt.Errorf("stream %s: %w", StreamObs, err)
		}
		kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      BucketExperiments,
			Description: "darklaunch experiment state",
			History:     8,
			Storage:     jetstream.FileStorage,
			Replicas:    lim.Replicas,
		})
		if err != nil {
			return fmt.Errorf("kv bucket %s: %w", BucketExperiments, err)
		}
		infra.Store = &Store{KV: kv, Conn: nc}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &infra, nil
}

// retryJS retries a JetStream API call for up to total, each attempt
// within 5s, and says so when JetStream is missing. It returns the last
// attempt's error, even when ctx ended meanwhile: that says more than the
// context's.
func retryJS(ctx context.Context, total time.Duration, fn func(context.Context) error) error {
	var last error
	err := retry.Do(ctx, retry.Policy{First: 100 * time.Millisecond, Max: time.Second, Within: total, Attempt: 5 * time.Second}, func(ctx context.Context) error {
		last = fn(ctx)
		if errors.Is(last, jetstream.ErrJetStreamNotEnabled) || errors.Is(last, jetstream.ErrJetStreamNotEnabledForAccount) {
			return retry.Permanent(fmt.Errorf("%w (darklaunch needs JetStream: start nats-server with -js)", last))
		}
		return last
	}, nil)
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil && last != nil:
		return last
	case errors.Is(err, nats.ErrNoResponders):
		// Nothing serves the JetStream API: most likely a server started
		// without it, not one still starting.
		return fmt.Errorf("%w (no JetStream API answered for %s: darklaunch needs JetStream, start nats-server with -js)", err, total)
	}
	return err
}

// Publish publishes ev on the events stream with the given Nats-Msg-Id, so a
// service that republishes after a restart does not duplicate the event.
func Publish(ctx context.Context, js jetstream.JetStream, ev *Event, msgID string) error {
	m, err := NewMsg(ev.Subject(), ev)
	if err != nil {
		return err
	}
	m.Header.Set(HeaderEventType, ev.Type)
	opts := []jetstream.PublishOpt{}
	if msgID != "" {
		opts = append(opts, jetstream.WithMsgID(msgID))
	}
	return retryJS(ctx, 30*time.Second, func(ctx context.Context) error {
		_, err := js.PublishMsg(ctx, m, opts...)
		return err
	})
}
