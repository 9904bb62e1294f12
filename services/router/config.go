package router

import (
	"cmp"
	"errors"
	"net/url"
	"strings"

	"github.com/nats-io/nuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"

	"github.com/darklaunch/darklaunch/services/router/istio"
	"github.com/darklaunch/darklaunch/services/router/mirroring"
	"github.com/darklaunch/darklaunch/services/router/proxy"
	"github.com/darklaunch/darklaunch/shared/service"
)

// Config configures the router. Every zero value takes the default written
// next to the field; New applies them (Default) and checks them (Validate).
type Config struct {
	// Backend names the mirroring backend: "proxy" (the local reverse
	// proxy) or "istio" (the seed's VirtualServices on Kubernetes). Default
	// "proxy".
	Backend string

	// Settings apply to every backend: the defaults of spec.mirroring and
	// the init check's timing.
	mirroring.Settings

	// Proxy and Istio are the backends' own settings; only the one Backend
	// names is used and checked.
	Proxy proxy.Config
	Istio istio.Config

	// KeepRouting leaves a completed experiment's mirroring in place until
	// the experiment is deleted, or a new experiment asks for its host.
	// Default false: it is removed as soon as the experiment completes. A
	// deletion always removes it.
	KeepRouting bool

	// Registry receives the Prometheus counters. Default a new private one.
	Registry *prometheus.Registry

	// Instance names this router among the others: its lease in the
	// members bucket, and its proxy's observation batches (Proxy.Instance
	// when that is empty). Default Proxy.Instance if set, else a new NUID.
	Instance string
}

// Default replaces every zero value with its default.
func (c *Config) Default() {
	if c.Backend == "" {
		c.Backend = BackendProxy
	}
	c.Settings.Default()
	c.Instance = cmp.Or(c.Instance, c.Proxy.Instance, nuid.Next())
	c.Proxy.Instance = cmp.Or(c.Proxy.Instance, c.Instance)
	c.Proxy.Default()
	c.Istio.Default()
	if c.Registry == nil {
		c.Registry = prometheus.NewRegistry()
	}
}

// Validate reports every setting that cannot work, after defaults: the
// shared ones and those of the backend in use. An unknown backend is
// NewBackend's to report.
func (c *Config) Validate() error {
	errs := []error{c.Settings.Validate()}
	switch c.Backend {
	case BackendProxy:
		errs = append(errs, c.Proxy.Validate())
	case BackendIstio:
		errs = append(errs, c.Istio.Validate())
	}
	return errors.Join(errs...)
}

// AddFlags binds `darklaunch serve router`'s flags to c: the router's own
// here, the shared settings' and each backend's by their AddFlags.
func (c *Config) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.Backend, "backend", BackendProxy, "mirroring backend: "+strings.Join(Backends, " or ")+" (istio: the seed's VirtualServices on Kubernetes)")
	fs.BoolVar(&c.KeepRouting, "keep-routing", false, "leave a completed experiment's mirroring in place until the experiment is deleted or a new experiment asks for its host")
	fs.StringVar(&c.Instance, "instance", c.Instance, "this instance's name among the service's replicas (default: a random NUID; the chart uses the pod's name)")
	c.Settings.AddFlags(fs)
	c.Proxy.AddFlags(fs)
	c.Istio.AddFlags(fs)
}

// Service names the router.
func (c *Config) Service() string { return Source }

// Build makes a router with its host's connection, logger, registry and
// stream limits. In the embedded stack the versions and the proxy's
// address come from the stack where the configuration leaves them empty.
func (c *Config) Build(d service.Deps) (service.Runner, error) {
	cfg := *c
	d.FillRegistry(&cfg.Registry)
	if l := d.Local; l != nil {
		cfg.DefaultLiveURL = cmp.Or(cfg.DefaultLiveURL, l.LiveURL)
		cfg.DefaultDarkURL = cmp.Or(cfg.DefaultDarkURL, l.DarkURL)
		cfg.Proxy.Addr = cmp.Or(cfg.Proxy.Addr, l.ProxyAddr)
		if u, err := url.Parse(l.ProxyURL); err == nil && u.Host != "" {
			// A router built again serves where the first one did, so that
			// loadgen's target stays right.
			cfg.Proxy.Addr = u.Host
		}
	}
	return New(cfg, d.NC, d.Log)
}

// Spec describes the router to its hosts.
func Spec() service.Spec {
	return service.SpecOf[Config]("Set up mirroring for experiments (local mirroring proxy)")
}
