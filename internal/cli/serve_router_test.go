package cli

import (
	"slices"
	"testing"

	"github.com/spf13/pflag"

	"github.com/darklaunch/darklaunch/services/router"
)

// TestRouterFlags: the flags the Helm chart passes reach router.Config, and
// the defaults are the router's.
func TestRouterFlags(t *testing.T) {
	parse := func(args ...string) router.Config {
		t.Helper()
		var c router.Config
		fs := pflag.NewFlagSet("router", pflag.ContinueOnError)
		routerFlags(fs, &c)
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		return c
	}
	def := parse()
	if def.Backend != router.BackendProxy || def.Namespaces != nil || def.KeepRouting || def.LegacyMirrorPercent ||
		!slices.Equal(def.Gateways, router.DefaultGateways()) || def.LocalGateway != router.DefaultLocalGateway ||
		def.GatewayHost != router.DefaultGatewayHost || def.InitInterval != router.DefaultInitInterval {
		t.Errorf("defaults %+v", def)
	}

	c := parse("--backend", "istio", "--kubeconfig", "/k", "--namespaces", "default,staging", "--gateways", "mesh",
		"--local-gateway", "gw/local", "--gateway-host", "gw.example.svc", "--legacy-mirror-percent", "--keep-routing")
	if c.Backend != router.BackendIstio || c.Kubeconfig != "/k" || !slices.Equal(c.Namespaces, []string{"default", "staging"}) ||
		!slices.Equal(c.Gateways, []string{"mesh"}) || c.LocalGateway != "gw/local" || c.GatewayHost != "gw.example.svc" ||
		!c.LegacyMirrorPercent || !c.KeepRouting {
		t.Errorf("parsed %+v", c)
	}
}
