package router

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/darklaunch/darklaunch/services/router/istio"
	"github.com/darklaunch/darklaunch/services/router/mirroring"
	"github.com/darklaunch/darklaunch/services/router/proxy"
	"github.com/darklaunch/darklaunch/shared/bus"
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
	// the experiment is deleted. Default false: it is removed as soon as the
	// experiment completes. A deletion always removes it.
	KeepRouting bool

	// Registry receives the Prometheus counters. Default a new private one.
	Registry *prometheus.Registry

	// Streams are the stream limits given to bus.EnsureInfra; zero values
	// take its defaults.
	Streams bus.StreamLimits
}

// Default replaces every zero value with its default.
func (c *Config) Default() {
	if c.Backend == "" {
		c.Backend = BackendProxy
	}
	c.Settings.Default()
	c.Proxy.Default()
	c.Istio.Default()
	if c.Registry == nil {
		c.Registry = prometheus.NewRegistry()
	}
}

// Validate reports every setting that cannot work, after defaults: the
// shared ones and those of the backend in use. An unknown backend is
// NewBackend's to report.
func (c Config) Validate() error {
	errs := []error{c.Settings.Validate()}
	switch c.Backend {
	case BackendProxy:
		errs = append(errs, c.Proxy.Validate())
	case BackendIstio:
		errs = append(errs, c.Istio.Validate())
	}
	return errors.Join(errs...)
}
