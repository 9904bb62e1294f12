package loadgen

import (
	"fmt"
	"net/url"
	"time"

	"github.com/nats-io/nuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"

	"github.com/darklaunch/darklaunch/shared/experiment"
	"github.com/darklaunch/darklaunch/shared/members"
	"github.com/darklaunch/darklaunch/shared/service"
)

// Config is the loadgen's configuration. Every zero value takes the default
// written next to it (applied by New); an experiment's spec.load overrides
// URL, Host, Rate, Delay, Concurrency, Timeout and Method for that experiment.
type Config struct {
	// URL requests are sent to when spec.load.url is empty. Default
	// "http://127.0.0.1:8080", the local router's mirroring proxy.
	URL string
	// Host header when neither spec.load.host nor spec.mirroring.host is
	// set. Default "customdomain.com", the seed's host.
	Host string
	// Rate in requests per second. Default 2, the seed's curl loop
	// (`sleep 0.5`). Only spec.load.rate can turn the traffic off (rate 0).
	Rate float64
	// Delay before the first request, counted from the experiment's start.
	// Default 10s (the seed's `sleep 10.0`); a negative value means none.
	Delay time.Duration
	// Concurrency is the workers sending an experiment's requests, each
	// over one kept-alive connection with one request in flight: it bounds
	// the requests in flight. Default 16.
	Concurrency int
	// Timeout of one request, body included. Default 5s.
	Timeout time.Duration
	// Method of the requests. Default "GET".
	Method string
	// Instance tells this loadgen's progress events apart from another
	// instance's (and from its own before a restart), and names its lease
	// among the instances that share the rate (share.go): unique among
	// them, without '.', '*', '>' or spaces. Default a new NUID.
	Instance string
	// MemberTTL is how long a loadgen instance that stopped heartbeating
	// keeps its share of the rate (shared/members) before the others take
	// it. Default members.DefaultTTL; it should be the members bucket's
	// (bus.StreamLimits.MemberTTL, set by the judge).
	MemberTTL time.Duration
	// Registry receives loadgen's Prometheus metrics. Default a new private
	// one.
	Registry *prometheus.Registry
}

// Defaults.
const (
	DefaultURL         = "http://127.0.0.1:8080"
	DefaultHost        = "customdomain.com"
	DefaultRate        = 2
	DefaultDelay       = 10 * time.Second
	DefaultConcurrency = 16
	DefaultTimeout     = 5 * time.Second
	DefaultMethod      = "GET"
)

// Default fills in the default of every zero field.
func (c *Config) Default() {
	if c.Registry == nil {
		c.Registry = prometheus.NewRegistry()
	}
	if c.URL == "" {
		c.URL = DefaultURL
	}
	if c.Host == "" {
		c.Host = DefaultHost
	}
	if c.Rate <= 0 {
		c.Rate = DefaultRate
	}
	switch {
	case c.Delay == 0:
		c.Delay = DefaultDelay
	case c.Delay < 0:
		c.Delay = 0
	}
	if c.Concurrency <= 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Method == "" {
		c.Method = DefaultMethod
	}
	if c.Instance == "" {
		c.Instance = nuid.Next()
	}
	if c.MemberTTL <= 0 {
		c.MemberTTL = members.DefaultTTL
	}
}

// Validate reports a setting that cannot work.
func (c *Config) Validate() error {
	if u, err := url.Parse(c.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("URL %q: want an http:// or https:// URL", c.URL)
	}
	return nil
}

// AddFlags binds `darklaunch serve loadgen`'s flags to c.
func (c *Config) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.URL, "url", DefaultURL, "where requests go when spec.load.url is absent")
	fs.StringVar(&c.Host, "host", DefaultHost, "Host header when neither spec.load.host nor spec.mirroring.host is set")
	fs.Float64Var(&c.Rate, "rate", DefaultRate, "requests per second when spec.load.rate is absent")
	fs.DurationVar(&c.Delay, "delay", DefaultDelay, "wait after the experiment starts when spec.load.delay is absent")
	fs.IntVar(&c.Concurrency, "concurrency", DefaultConcurrency, "requests in flight at most")
	fs.DurationVar(&c.Timeout, "timeout", DefaultTimeout, "timeout of one request")
	fs.StringVar(&c.Instance, "instance", c.Instance, "this instance's name among the service's replicas (default: a random NUID; the chart uses the pod's name)")
}

// Service names loadgen.
func (c *Config) Service() string { return Name }

// Build makes a loadgen with its host's connection, logger, registry and
// stream limits; in the embedded stack its traffic goes to the local
// mirroring proxy unless URL says otherwise.
func (c *Config) Build(d service.Deps) (service.Runner, error) {
	cfg := *c
	d.FillRegistry(&cfg.Registry)
	if cfg.URL == "" && d.Local != nil {
		cfg.URL = d.Local.ProxyURL
	}
	return New(cfg, d.NC, d.Log)
}

// Spec describes loadgen to its hosts.
func Spec() service.Spec {
	return service.SpecOf[Config]("Send open-loop traffic to running experiments")
}

// plan is the traffic of one experiment: the configuration with spec.load
// applied.
type plan struct {
	URL         string
	Host        string
	Method      string
	Rate        float64
	Delay       time.Duration
	Duration    time.Duration // 0: until the experiment ends
	Concurrency int
	Timeout     time.Duration
}

// planFor applies the experiment's spec.load (then spec.mirroring.host) over
// the configuration.
func planFor(cfg Config, exp *experiment.Experiment) plan {
	p := plan{
		URL:         cfg.URL,
		Host:        cfg.Host,
		Method:      cfg.Method,
		Rate:        cfg.Rate,
		Delay:       cfg.Delay,
		Concurrency: cfg.Concurrency,
		Timeout:     cfg.Timeout,
	}
	if m := exp.Spec.Mirroring; m != nil && m.Host != "" {
		p.Host = m.Host
	}
	l := exp.Spec.Load
	if l == nil {
		return p
	}
	if l.URL != "" {
		p.URL = l.URL
	}
	if l.Host != "" {
		p.Host = l.Host
	}
	if l.Method != "" {
		p.Method = l.Method
	}
	if l.Rate != nil {
		p.Rate = *l.Rate
	}
	if l.Delay != nil {
		p.Delay = l.Delay.Duration
	}
	if l.Duration != nil {
		p.Duration = l.Duration.Duration
	}
	if l.Concurrency != nil && *l.Concurrency > 0 {
		p.Concurrency = int(*l.Concurrency)
	}
	if l.Timeout != nil && l.Timeout.Duration > 0 {
		p.Timeout = l.Timeout.Duration
	}
	return p
}
