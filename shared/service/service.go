// Package service is what a program that hosts darklaunch's services —
// `darklaunch serve <name>` and the embedded stack — knows of each: its
// name, its flags, how to build it, and the one convention its
// configuration follows. The list of the services is services.All; adding a
// fifth service is writing its package and adding it there.
package service

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"

	"github.com/darklaunch/darklaunch/shared/bus"
)

// Runner is a built service: it runs until ctx ends and returns nil on a
// clean shutdown. Run with a context that has already ended returns at
// once, having released what Build took (the router's listener): that is
// how a host lets go of a service it built but will not run.
type Runner interface {
	Run(ctx context.Context) error
}

// Config is a service's configuration. Every service's Config follows one
// convention, which this interface makes the compiler check:
//   - the zero value of every field means the default written beside it, and
//     Default fills those in;
//   - Validate, after Default, reports every setting that cannot work, each
//     error naming its field or flag;
//   - AddFlags binds the fields to the flags of `darklaunch serve <name>`
//     (defaults shown, DARKLAUNCH_<FLAG> read by the CLI), as Kubernetes
//     components' Options do;
//   - Build makes the service with what its host gives it. The service's
//     New applies Default and Validate itself, so a Config written in code
//     (tests, the stack) needs neither called first.
type Config interface {
	Default()
	Validate() error
	AddFlags(fs *pflag.FlagSet)
	Build(d Deps) (Runner, error)
	// Service names the service the configuration is for (Spec.Name).
	Service() string
}

// Deps are what a host gives every service it builds.
type Deps struct {
	// NC is the service's own NATS connection.
	NC *nats.Conn
	// Log is the host's logger; the service adds its own attributes.
	Log *slog.Logger
	// Registry receives the service's Prometheus metrics, served on
	// /metrics by `darklaunch serve`.
	Registry *prometheus.Registry
	// Streams are the limits of darklaunch's streams and bucket, which the
	// judge creates; the other services only use them.
	Streams bus.StreamLimits
	// Version is darklaunch's version, shown by `nats micro ls`.
	Version string
	// Local wires the services of one process together (the embedded
	// stack); nil under `darklaunch serve`.
	Local *Local
	// Dial connects as another role, for a service that serves a part of
	// its work under an identity of its own (the judge's API, as
	// bus.RoleAPI). nkeyFile is that role's key file, where the host signs
	// in with files; the embedded stack signs in with the role's own key.
	// A nil connection and no error: the host has no such identity (an
	// open server), and the service uses NC. Dial nil: the same.
	Dial func(role, nkeyFile string) (*nats.Conn, error)
}

// FillRegistry gives a configuration the host's registry, where the host
// has one: under `darklaunch serve` the registry it serves on /metrics; in
// the embedded stack none, so what the caller configured stays.
func (d Deps) FillRegistry(reg **prometheus.Registry) {
	if d.Registry != nil {
		*reg = d.Registry
	}
}

// FillStreams gives the judge, which creates darklaunch's streams and
// bucket, the host's limits (--stream-replicas), where the host has them.
func (d Deps) FillStreams(streams *bus.StreamLimits) {
	if d.Streams != (bus.StreamLimits{}) {
		*streams = d.Streams
	}
}

// Local is how the embedded stack wires its services together: where the
// versions are and where the mirroring proxy listens. A service takes from
// it what its own configuration leaves empty.
type Local struct {
	// LiveURL and DarkURL are the two versions: the sample app, or the
	// user's own.
	LiveURL, DarkURL string
	// ProxyAddr is where a local mirroring proxy is to listen
	// ("127.0.0.1:0": a free port).
	ProxyAddr string
	// ProxyURL is where it does listen, once the router is built: loadgen
	// sends its traffic there, and a router built again (restarted) listens
	// there too, whatever its own configuration says.
	ProxyURL string
}

// Endpoint is implemented by a built service that serves traffic of its
// own: the router with its mirroring proxy. URL is "" when it serves none
// (the router with the istio backend).
type Endpoint interface {
	URL() string
}

// Spec describes one service to its hosts.
type Spec struct {
	// Name is the service's name: `darklaunch serve <name>`.
	Name string
	// Short is the one line `darklaunch serve --help` shows.
	Short string
	// NewConfig returns a configuration with every field zero.
	NewConfig func() Config
}

// Exit is what a service's Run returns for an error that stops it: nil
// when ctx has ended meanwhile — a service stopped while it was still
// starting (creating the streams, say) shuts down cleanly — and err under
// the service's name otherwise.
func Exit(ctx context.Context, name string, err error) error {
	if err == nil || ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("%s: %w", name, err)
}

// Prepare is how every service's New begins: a connection is required, a
// nil logger discards, and cfg gets its defaults and is validated. It
// returns the logger to use; its errors name the service.
func Prepare(name string, cfg Config, nc *nats.Conn, log *slog.Logger) (*slog.Logger, error) {
	if nc == nil {
		return nil, fmt.Errorf("%s: no NATS connection", name)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg.Default()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return log, nil
}

// PrepareWith is Prepare, then the service's own Prometheus metrics, made
// by newMetrics once cfg has its defaults (its registry among them).
func PrepareWith[M any](name string, cfg Config, nc *nats.Conn, log *slog.Logger, newMetrics func() (M, error)) (*slog.Logger, M, error) {
	var m M
	log, err := Prepare(name, cfg, nc, log)
	if err != nil {
		return nil, m, err
	}
	if m, err = newMetrics(); err != nil {
		return nil, m, fmt.Errorf("%s: metrics: %w", name, err)
	}
	return log, m, nil
}

// SpecOf describes the service whose configuration type is C (its Config
// with pointer methods), under the line `darklaunch serve --help` shows.
func SpecOf[C any, P interface {
	*C
	Config
}](short string) Spec {
	return Spec{
		Name:      P(new(C)).Service(),
		Short:     short,
		NewConfig: func() Config { return P(new(C)) },
	}
}
