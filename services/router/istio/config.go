package istio

import (
	"cmp"
	"errors"
	"strings"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/darklaunch/darklaunch/services/router/mirroring"
)

// Config configures the istio backend (router.Config.Istio). Every zero
// value takes the default written next to the field (Default).
type Config struct {
	// Kubeconfig is the kubeconfig file. Default empty: the in-cluster
	// configuration, else $KUBECONFIG or ~/.kube/config (client-go's
	// default loading rules).
	Kubeconfig string
	// Namespaces are the namespaces the backend may act in: an experiment
	// whose target is elsewhere fails at setup. Default empty: any
	// namespace.
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
	// LegacyMirrorPercent writes the integer mirrorPercent (in
	// networking.istio.io/v1alpha3, which old Istio serves) instead of
	// mirrorPercentage (in networking.istio.io/v1). Default false.
	LegacyMirrorPercent bool
}

// Defaults of Config.
const (
	DefaultLocalGateway = "knative-serving/knative-local-gateway"
	DefaultGatewayHost  = "knative-local-gateway.istio-system.svc.cluster.local"
)

// DefaultGateways are the seed's gateways of the mirroring VirtualService.
func DefaultGateways() []string {
	return []string{"mesh", "knative-serving/knative-ingress-gateway"}
}

// Default replaces every zero value with its default.
func (c *Config) Default() {
	if len(c.Gateways) == 0 {
		c.Gateways = DefaultGateways()
	}
	c.LocalGateway = cmp.Or(c.LocalGateway, DefaultLocalGateway)
	c.GatewayHost = cmp.Or(c.GatewayHost, DefaultGatewayHost)
}

// Validate reports every setting that cannot work, after defaults.
func (c Config) Validate() error {
	var errs []error
	bad := func(field string, v any, why string) {
		errs = append(errs, mirroring.Problem("Istio.", field, v, why))
	}
	for _, ns := range c.Namespaces {
		for _, msg := range validation.IsDNS1123Label(ns) {
			bad("Namespaces", ns, msg)
		}
	}
	for _, gw := range c.Gateways {
		if !gatewayName(gw) {
			bad("Gateways", gw, `want "mesh", "name" or "namespace/name"`)
		}
	}
	if !gatewayName(c.LocalGateway) {
		bad("LocalGateway", c.LocalGateway, `want "name" or "namespace/name"`)
	}
	for _, msg := range validation.IsDNS1123Subdomain(c.GatewayHost) {
		bad("GatewayHost", c.GatewayHost, msg)
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

// AddFlags binds the flags of `darklaunch serve router` that set c.
func (c *Config) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.Kubeconfig, "kubeconfig", "", "kubeconfig file (istio backend); empty: in-cluster, else $KUBECONFIG or ~/.kube/config")
	fs.StringSliceVar(&c.Namespaces, "namespaces", nil, "namespaces the router may act in, comma-separated (istio backend); empty: any")
	fs.StringSliceVar(&c.Gateways, "gateways", DefaultGateways(), "gateways of the mirroring VirtualService (istio backend)")
	fs.StringVar(&c.LocalGateway, "local-gateway", DefaultLocalGateway, "gateway of the routing VirtualService (istio backend)")
	fs.StringVar(&c.GatewayHost, "gateway-host", DefaultGatewayHost, "service of the local gateway, where the mirroring VirtualService sends traffic and copies (istio backend)")
	fs.BoolVar(&c.LegacyMirrorPercent, "legacy-mirror-percent", false, "write the integer mirrorPercent with networking.istio.io/v1alpha3, for an old Istio (istio backend)")
}
