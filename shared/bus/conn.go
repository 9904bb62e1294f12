package bus

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/darklaunch/darklaunch/shared/members"
	"github.com/darklaunch/darklaunch/shared/retry"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
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
	// NKeyFile is a file holding a user's nkey seed (SU...), as
	// `darklaunch nats-config` writes one per role; NKeySeed is the seed
	// itself (the embedded stack's users). Optional.
	NKeyFile string
	NKeySeed []byte
	// InboxPrefix is where replies come back (nats.go's default "_INBOX"):
	// each service has its own (InboxPrefix), which only its user may read.
	InboxPrefix string
	// TLS, optional. TLSCA is a PEM file of the CAs the server's
	// certificate must chain to (default: the system's); TLSCert and
	// TLSKey are this client's certificate and key, for a server that
	// verifies clients. Setting any of them makes the connection TLS.
	TLSCA, TLSCert, TLSKey string
}

// tlsOptions are the nats.go options for cfg's TLS settings.
func (cfg ConnConfig) tlsOptions() ([]nats.Option, error) {
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		return nil, errors.New("a client certificate needs both its certificate and its key file (--tls-cert and --tls-key)")
	}
	var opts []nats.Option
	if cfg.TLSCA != "" {
		opts = append(opts, nats.RootCAs(cfg.TLSCA))
	}
	if cfg.TLSCert != "" {
		// Both make the connection TLS 1.2 or later (nats.go's default).
		opts = append(opts, nats.ClientCert(cfg.TLSCert, cfg.TLSKey))
	}
	return opts, nil
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
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("nats reconnected", "url", ConnectedURL(nc)) }),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			log.Warn("nats async error", "subject", subj, "err", err)
		}),
	}
	tlsOpts, err := cfg.tlsOptions()
	if err != nil {
		return nil, err
	}
	opts = append(opts, tlsOpts...)
	if cfg.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(cfg.CredsFile))
	}
	nkeyOpt, err := cfg.nkeyOption()
	if err != nil {
		return nil, err
	}
	if nkeyOpt != nil {
		opts = append(opts, nkeyOpt)
	}
	if cfg.InboxPrefix != "" {
		opts = append(opts, nats.CustomInboxPrefix(cfg.InboxPrefix))
	}
	if cfg.Token != "" {
		opts = append(opts, nats.Token(cfg.Token))
	}
	if cfg.User != "" {
		opts = append(opts, nats.UserInfo(cfg.User, cfg.Password))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		// No secret of cfg in the message: it ends up on a terminal, in a
		// log. nats.go quotes the URL as given when it does not parse.
		err = fmt.Errorf("connect to NATS at %s: %w%s", RedactURL(url), err, cfg.tlsHint(err))
		return nil, &redactedError{msg: cfg.redactMessage(err.Error()), err: err}
	}
	return nc, nil
}

// nkeyOption signs in with the nkey of NKeyFile or NKeySeed, if any.
func (cfg ConnConfig) nkeyOption() (nats.Option, error) {
	switch {
	case cfg.NKeyFile != "" && cfg.NKeySeed != nil:
		return nil, errors.New("give an nkey seed or an nkey file, not both")
	case cfg.NKeyFile != "":
		opt, err := nats.NkeyOptionFromSeed(cfg.NKeyFile)
		if err != nil {
			return nil, fmt.Errorf("--nkey %s: %w", cfg.NKeyFile, err)
		}
		return opt, nil
	case cfg.NKeySeed != nil:
		kp, err := nkeys.FromSeed(cfg.NKeySeed)
		if err != nil {
			return nil, fmt.Errorf("nkey seed: %w", err)
		}
		pub, err := kp.PublicKey()
		if err != nil {
			return nil, fmt.Errorf("nkey seed: %w", err)
		}
		return nats.Nkey(pub, kp.Sign), nil
	}
	return nil, nil
}

// tlsHint says what a TLS failure most likely needs.
func (cfg ConnConfig) tlsHint(err error) string {
	var unknown x509.UnknownAuthorityError
	switch {
	case errors.As(err, &unknown) && cfg.TLSCA == "":
		return " (pass the CA that signed the server's certificate with --tls-ca)"
	case errors.As(err, &unknown):
		return " (the server's certificate is not signed by the CA of --tls-ca)"
	case strings.Contains(err.Error(), "tls") && cfg.TLSCert == "":
		// The server closes the handshake without saying why; a missing
		// client certificate is the common reason.
		return " (does the server require a client certificate? pass --tls-cert and --tls-key)"
	case errors.Is(err, nats.ErrSecureConnWanted):
		return " (the server does not offer TLS: drop --tls-ca, --tls-cert and --tls-key, or use a server configured for TLS)"
	}
	return ""
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
	// MemberTTL is how long a service instance that stopped heartbeating
	// keeps its share of the work (members.DefaultTTL if zero).
	MemberTTL time.Duration
}

// Infra is the JetStream side of the bus: the two streams and the state bucket.
type Infra struct {
	JS     jetstream.JetStream
	Events jetstream.Stream
	Obs    jetstream.Stream
	Store  *Store
	// Members is the bucket of the service instances' leases
	// (shared/members).
	Members jetstream.KeyValue
	// Judge is the judge's work queue (partitions.go); EnsureInfra only:
	// nobody else reads it.
	Judge jetstream.Stream
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
		infra.Members, err = js.CreateOrUpdateKeyValue(ctx, members.BucketConfig(lim.MemberTTL, lim.Replicas))
		if err != nil {
			return fmt.Errorf("kv bucket %s: %w", members.BucketMembers, err)
		}
		if infra.Judge, err = ensureJudgeStream(ctx, js, lim); err != nil {
			return fmt.Errorf("stream %s: %w", StreamJudge, err)
		}
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
		if errors.Is(last, nats.ErrConnectionClosed) {
			return retry.Permanent(last) // closed for good: no retry can succeed
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
