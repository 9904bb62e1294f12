package judge

import (
	"cmp"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"

	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
	"github.com/darklaunch/darklaunch/shared/service"
)

// Defaults of Config.
const (
	DefaultVersion          = "0.1.0"
	DefaultQueueGroup       = "darklaunch-judge"
	DefaultInitTimeout      = 2 * time.Minute
	DefaultMetricsTimeout   = 2 * time.Minute
	DefaultWatchdogInterval = 5 * time.Second
	// DefaultMaxDeliveries: about a minute of retries with the backoff.
	DefaultMaxDeliveries = 8
	// Name is the judge's name: `darklaunch serve judge`, and the source
	// of its events.
	Name   = "judge"
	source = Name
)

// Config configures the judge. The zero value of every field takes the
// default written beside it.
type Config struct {
	// Instance identifies this judge in logs and in the micro service's
	// metadata. Default: a new NUID.
	Instance string
	// Version is the service version shown by `nats micro ls`; it must be
	// SemVer. Default DefaultVersion.
	Version string
	// QueueGroup spreads API requests over the judge instances. Default
	// DefaultQueueGroup.
	QueueGroup string
	// InitTimeout fails an experiment still Initializing this long after its
	// initTime: no router answered. Default 2m.
	InitTimeout time.Duration
	// MetricsTimeout fails a Running experiment whose next dark snapshot is
	// overdue by max(3 intervals, MetricsTimeout): no collector measured it.
	// Default 2m.
	MetricsTimeout time.Duration
	// WatchdogInterval is how often stuck experiments are looked for.
	// Default 5s.
	WatchdogInterval time.Duration
	// MaxDeliveries bounds the attempts at an event whose handling keeps
	// failing (a corrupt state entry, say). The judge handles one event at a
	// time, so such an event would otherwise hold back every experiment; it
	// is dropped with an error log, and the watchdog fails its experiment
	// if nothing else moves it (while it is retried, the watchdog fails no
	// experiment that has events waiting). Default DefaultMaxDeliveries.
	MaxDeliveries int
	// MaxRequestBytes bounds a create request; larger ones get 413 before
	// any decoding. Default experiment.MaxDocumentBytes.
	MaxRequestBytes int
	// Streams are the limits passed to bus.EnsureInfra. Default: bus's.
	Streams bus.StreamLimits
	// Now is the clock, for tests. Default time.Now.
	Now func() time.Time
	// Registry receives the judge's Prometheus metrics. Default a new
	// private one.
	Registry *prometheus.Registry
	// APINKey is the nkey file the API's connection signs in with
	// (bus.RoleAPI: `darklaunch nats-config` writes api.nk), where the
	// judge's own signs in with --nkey. Empty: the host's own choice (see
	// service.Deps.Dial).
	APINKey string
	// API is the connection the experiments API is served on, as
	// bus.RoleAPI; the judge closes it when Run returns. Nil: the judge's
	// own connection (an open server, or one whose users are not
	// darklaunch's roles).
	API *nats.Conn
}

// Default fills in the default of every zero field.
func (c *Config) Default() {
	c.Instance = cmp.Or(c.Instance, nuid.Next())
	c.Version = cmp.Or(c.Version, DefaultVersion)
	c.QueueGroup = cmp.Or(c.QueueGroup, DefaultQueueGroup)
	c.InitTimeout = cmp.Or(c.InitTimeout, DefaultInitTimeout)
	c.MetricsTimeout = cmp.Or(c.MetricsTimeout, DefaultMetricsTimeout)
	c.WatchdogInterval = cmp.Or(c.WatchdogInterval, DefaultWatchdogInterval)
	c.MaxDeliveries = cmp.Or(c.MaxDeliveries, DefaultMaxDeliveries)
	c.MaxRequestBytes = cmp.Or(c.MaxRequestBytes, experiment.MaxDocumentBytes)
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Registry == nil {
		c.Registry = prometheus.NewRegistry()
	}
}

// Validate reports a setting that cannot work.
func (c *Config) Validate() error {
	if c.InitTimeout < 0 || c.MetricsTimeout < 0 || c.WatchdogInterval < 0 || c.MaxRequestBytes < 0 || c.MaxDeliveries < 0 {
		return errors.New("timeouts, intervals and sizes must not be negative")
	}
	return nil
}

// AddFlags binds `darklaunch serve judge`'s flags to c.
func (c *Config) AddFlags(fs *pflag.FlagSet) {
	fs.DurationVar(&c.InitTimeout, "init-timeout", DefaultInitTimeout, "fail an experiment whose mirroring is not set up within this")
	fs.DurationVar(&c.MetricsTimeout, "metrics-timeout", DefaultMetricsTimeout, "fail a running experiment that gets no metrics for this long past an iteration's end")
	fs.StringVar(&c.APINKey, "api-nkey", "", "nkey seed file the experiments API signs in with, as the api role (darklaunch nats-config writes api.nk); required with --nkey")
	fs.StringVar(&c.Instance, "instance", c.Instance, "this instance's name among the service's replicas (default: a random NUID; the chart uses the pod's name)")
}

// Service names the judge.
func (c *Config) Service() string { return source }

// Build makes a judge with its host's connection, logger, registry, stream
// limits and darklaunch's version (shown by `nats micro ls`).
func (c *Config) Build(d service.Deps) (service.Runner, error) {
	cfg := *c
	d.FillRegistry(&cfg.Registry)
	d.FillStreams(&cfg.Streams)
	cfg.Version = cmp.Or(cfg.Version, d.Version)
	if cfg.API == nil && d.Dial != nil {
		api, err := d.Dial(bus.RoleAPI, cfg.APINKey)
		if err != nil {
			return nil, fmt.Errorf("the experiments API's connection (--api-nkey): %w", err)
		}
		cfg.API = api
	}
	s, err := New(cfg, d.NC, d.Log)
	if err != nil && cfg.API != nil && cfg.API != c.API {
		cfg.API.Close()
	}
	return s, err
}

// Spec describes the judge to its hosts.
func Spec() service.Spec {
	return service.SpecOf[Config]("Serve the experiments API, keep the state, evaluate objectives, emit the verdict")
}
