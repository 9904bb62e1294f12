package router

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/nuid"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/darklaunch/darklaunch/shared/bus"
)

// Config configures the router. Every zero value takes the default written
// next to the field; New applies them.
type Config struct {
	// Backend names the mirroring backend: "proxy" (the local reverse
	// proxy) or "istio" (the seed's VirtualServices on Kubernetes). Default
	// "proxy".
	Backend string

	// ProxyAddr is where the proxy listens. Default "127.0.0.1:8080".
	ProxyAddr string
	// Listener, when set, is used instead of listening on ProxyAddr (tests,
	// embedding). Run closes it.
	Listener net.Listener

	// DefaultHost is the host mirrored when spec.mirroring.host is absent.
	// Default "customdomain.com" (the seed's).
	DefaultHost string
	// DefaultPercent is the share mirrored when spec.mirroring.percent is
	// absent, in (0, 100]. Default 40 (the seed's).
	DefaultPercent float64
	// DefaultLiveURL and DefaultDarkURL are the versions' base URLs when
	// spec.mirroring lacks them. No default: Setup fails when neither the
	// experiment nor the configuration names a URL.
	DefaultLiveURL string
	DefaultDarkURL string

	// MirrorInflight bounds the copies in flight to one experiment's dark
	// version; a copy that finds no free slot is dropped ("inflight").
	// Default 64.
	MirrorInflight int
	// MirrorMaxBody is the largest request body copied; a larger one is not
	// mirrored ("body"). Default 64 KiB.
	MirrorMaxBody int64
	// MirrorTimeout bounds one copy, from sending it to reading its
	// response. Default 5s.
	MirrorTimeout time.Duration

	// FlushInterval is how often the proxy publishes its observations.
	// Default 1s.
	FlushInterval time.Duration

	// InitTimeout bounds the init check (live and dark answer). Default 30s.
	InitTimeout time.Duration
	// InitInterval is the pause between two attempts of the init check.
	// Default 500ms.
	InitInterval time.Duration

	// Kubeconfig is the kubeconfig file of the istio backend. Default
	// empty: the in-cluster configuration, else $KUBECONFIG or
	// ~/.kube/config (client-go's default loading rules).
	Kubeconfig string
	// Namespaces are the namespaces the istio backend may act in: an
	// experiment whose target is elsewhere fails at setup. Default empty:
	// any namespace.
	Namespaces []string
	// Gateways are the gateways of the mirroring VirtualService, which
	// receives the host's traffic. Default the seed's: "mesh" and
	// "knative-serving/knative-ingress-gateway".
	Gateways []string
	// LocalGateway is the gateway of the routing VirtualService, which
	// sends live and mirrored requests to their revisions. Default the
	// seed's "knative-serving/knative-local-gateway".
	LocalGateway string
	// GatewayHost is the service of the local gateway, where the mirroring
	// VirtualService sends requests and their copies. Default the seed's
	// "knative-local-gateway.istio-system.svc.cluster.local".
	GatewayHost string
	// LegacyMirrorPercent makes the istio backend write the integer
	// mirrorPercent (in networking.istio.io/v1alpha3, which old Istio
	// serves) instead of mirrorPercentage (in networking.istio.io/v1).
	// Default false.
	LegacyMirrorPercent bool
	// KeepRouting leaves a completed experiment's mirroring in place until
	// the experiment is deleted. Default false: it is removed as soon as the
	// experiment completes. A deletion always removes it.
	KeepRouting bool

	// Instance tells this router's observation batches apart from another
	// router's. Default a new NUID per process.
	Instance string

	// Registry receives the Prometheus counters. Default a new private one.
	Registry *prometheus.Registry

	// Streams are the stream limits given to bus.EnsureInfra; zero values
	// take its defaults.
	Streams bus.StreamLimits
}

// Defaults of Config.
const (
	DefaultProxyAddr      = "127.0.0.1:8080"
	DefaultHost           = "customdomain.com"
	DefaultPercent        = 40
	DefaultMirrorInflight = 64
	DefaultMirrorMaxBody  = 64 << 10
	DefaultMirrorTimeout  = 5 * time.Second
	DefaultFlushInterval  = time.Second
	DefaultInitTimeout    = 30 * time.Second
	DefaultInitInterval   = 500 * time.Millisecond
	DefaultLocalGateway   = "knative-serving/knative-local-gateway"
	DefaultGatewayHost    = "knative-local-gateway.istio-system.svc.cluster.local"
)

// DefaultGateways are the seed's gateways of the mirroring VirtualService.
func DefaultGateways() []string {
	return []string{"mesh", "knative-serving/knative-ingress-gateway"}
}

// withDefaults returns cfg with every zero value replaced by its default.
func (cfg Config) withDefaults() Config {
	if cfg.Backend == "" {
		cfg.Backend = BackendProxy
	}
	if cfg.ProxyAddr == "" {
		cfg.ProxyAddr = DefaultProxyAddr
	}
	if cfg.DefaultHost == "" {
		cfg.DefaultHost = DefaultHost
	}
	if cfg.DefaultPercent == 0 {
		cfg.DefaultPercent = DefaultPercent
	}
	if cfg.MirrorInflight == 0 {
		cfg.MirrorInflight = DefaultMirrorInflight
	}
	if cfg.MirrorMaxBody == 0 {
		cfg.MirrorMaxBody = DefaultMirrorMaxBody
	}
	if cfg.MirrorTimeout == 0 {
		cfg.MirrorTimeout = DefaultMirrorTimeout
	}
	if cfg.FlushInterval == 0 {
		cfg.FlushInterval = DefaultFlushInterval
	}
	if cfg.InitTimeout == 0 {
		cfg.InitTimeout = DefaultInitTimeout
	}
	if cfg.InitInterval == 0 {
		cfg.InitInterval = DefaultInitInterval
	}
	if len(cfg.Gateways) == 0 {
		cfg.Gateways = DefaultGateways()
	}
	if cfg.LocalGateway == "" {
		cfg.LocalGateway = DefaultLocalGateway
	}
	if cfg.GatewayHost == "" {
		cfg.GatewayHost = DefaultGatewayHost
	}
	if cfg.Instance == "" {
		cfg.Instance = nuid.Next()
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	return cfg
}

// Validate reports every setting that cannot work, after defaults.
func (cfg Config) Validate() error {
	var errs []error
	bad := func(field string, v any, why string) {
		errs = append(errs, fmt.Errorf("router config %s=%v: %s", field, v, why))
	}
	if !(cfg.DefaultPercent > 0 && cfg.DefaultPercent <= 100) {
		bad("DefaultPercent", cfg.DefaultPercent, "must be greater than 0 and at most 100")
	}
	for name, u := range map[string]string{"DefaultLiveURL": cfg.DefaultLiveURL, "DefaultDarkURL": cfg.DefaultDarkURL} {
		if u == "" {
			continue
		}
		if _, err := parseBaseURL(u); err != nil {
			bad(name, u, err.Error())
		}
	}
	if cfg.MirrorInflight < 0 {
		bad("MirrorInflight", cfg.MirrorInflight, "must not be negative")
	}
	if cfg.MirrorMaxBody < 0 {
		bad("MirrorMaxBody", cfg.MirrorMaxBody, "must not be negative")
	}
	for name, d := range map[string]time.Duration{"MirrorTimeout": cfg.MirrorTimeout, "FlushInterval": cfg.FlushInterval, "InitTimeout": cfg.InitTimeout, "InitInterval": cfg.InitInterval} {
		if d < 0 {
			bad(name, d, "must not be negative")
		}
	}
	for _, ns := range cfg.Namespaces {
		for _, msg := range validation.IsDNS1123Label(ns) {
			bad("Namespaces", ns, msg)
		}
	}
	for _, gw := range cfg.Gateways {
		if !gatewayName(gw) {
			bad("Gateways", gw, `want "mesh", "name" or "namespace/name"`)
		}
	}
	if !gatewayName(cfg.LocalGateway) {
		bad("LocalGateway", cfg.LocalGateway, `want "name" or "namespace/name"`)
	}
	for _, msg := range validation.IsDNS1123Subdomain(cfg.GatewayHost) {
		bad("GatewayHost", cfg.GatewayHost, msg)
	}
	return errors.Join(errs...)
}

// gatewayName tells whether s can name an Istio gateway: "mesh", "name" or
// "namespace/name", each part a DNS label or subdomain.
func gatewayName(s string) bool {
	ns, name, found := strings.Cut(s, "/")
	if !found {
		name = ns
	} else if len(validation.IsDNS1123Label(ns)) > 0 {
		return false
	}
	return len(validation.IsDNS1123Subdomain(name)) == 0
}

// parseBaseURL checks a version's base URL: absolute http(s) with a host.
func parseBaseURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("want an http:// or https:// URL, got %q", s)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("the URL %q has no host", s)
	}
	return u, nil
}
