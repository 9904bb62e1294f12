package router

import (
	"slices"
	"testing"

	"github.com/spf13/pflag"

	"github.com/darklaunch/darklaunch/services/router/istio"
	"github.com/darklaunch/darklaunch/services/router/mirroring"
)

// TestRouterFlags: the flags the Helm chart passes reach Config, and
// the defaults are the router's.
func TestRouterFlags(t *testing.T) {
	parse := func(args ...string) Config {
		t.Helper()
		var c Config
		fs := pflag.NewFlagSet("router", pflag.ContinueOnError)
		c.AddFlags(fs)
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		return c
	}
	def := parse()
	if def.Backend != BackendProxy || def.Istio.Namespaces != nil || def.KeepRouting || def.Istio.LegacyMirrorPercent ||
		!slices.Equal(def.Istio.Gateways, istio.DefaultGateways()) || def.Istio.LocalGateway != istio.DefaultLocalGateway ||
		def.Istio.GatewayHost != istio.DefaultGatewayHost || def.InitInterval != mirroring.DefaultInitInterval || def.Instance != "" {
		t.Errorf("defaults %+v", def)
	}

	c := parse("--backend", "istio", "--kubeconfig", "/k", "--namespaces", "default,staging", "--gateways", "mesh",
		"--local-gateway", "gw/local", "--gateway-host", "gw.example.svc", "--legacy-mirror-percent", "--keep-routing", "--instance", "router-7d9f-x2")
	if c.Backend != BackendIstio || c.Istio.Kubeconfig != "/k" || !slices.Equal(c.Istio.Namespaces, []string{"default", "staging"}) ||
		!slices.Equal(c.Istio.Gateways, []string{"mesh"}) || c.Istio.LocalGateway != "gw/local" || c.Istio.GatewayHost != "gw.example.svc" ||
		!c.Istio.LegacyMirrorPercent || !c.KeepRouting || c.Instance != "router-7d9f-x2" {
		t.Errorf("parsed %+v", c)
	}
}
