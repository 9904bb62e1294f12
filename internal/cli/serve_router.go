package cli

import (
	"strings"

	"github.com/spf13/pflag"

	"github.com/darklaunch/darklaunch/services/router"
)

// routerFlags binds `darklaunch serve router`'s flags to c.
func routerFlags(fs *pflag.FlagSet, c *router.Config) {
	fs.StringVar(&c.Backend, "backend", router.BackendProxy, "mirroring backend: "+strings.Join(router.Backends, " or ")+" (istio: the seed's VirtualServices on Kubernetes)")
	fs.StringVar(&c.ProxyAddr, "proxy-addr", router.DefaultProxyAddr, "where the mirroring proxy listens (proxy backend)")
	fs.StringVar(&c.DefaultHost, "host", router.DefaultHost, "host mirrored when spec.mirroring.host is absent")
	fs.Float64Var(&c.DefaultPercent, "percent", router.DefaultPercent, "percent mirrored when spec.mirroring.percent is absent")
	fs.StringVar(&c.DefaultLiveURL, "live", "", "live base URL when spec.mirroring.liveURL is absent (proxy backend)")
	fs.StringVar(&c.DefaultDarkURL, "dark", "", "dark base URL when spec.mirroring.darkURL is absent (proxy backend)")
	fs.IntVar(&c.MirrorInflight, "mirror-inflight", router.DefaultMirrorInflight, "copies in flight to the dark version at most; more are dropped and counted (proxy backend)")
	fs.Int64Var(&c.MirrorMaxBody, "mirror-max-body", router.DefaultMirrorMaxBody, "largest request body copied, in bytes (proxy backend)")
	fs.DurationVar(&c.MirrorTimeout, "mirror-timeout", router.DefaultMirrorTimeout, "timeout of a copy sent to the dark version (proxy backend)")
	fs.DurationVar(&c.FlushInterval, "flush-interval", router.DefaultFlushInterval, "how often observations are published (proxy backend)")
	fs.DurationVar(&c.InitTimeout, "init-timeout", router.DefaultInitTimeout, "how long to wait for the target (live and dark answer; istio: the Knative Service is Ready and serves the dark revision) before failing the experiment")
	fs.DurationVar(&c.InitInterval, "init-interval", router.DefaultInitInterval, "pause between two attempts of the init check")

	fs.StringVar(&c.Kubeconfig, "kubeconfig", "", "kubeconfig file (istio backend); empty: in-cluster, else $KUBECONFIG or ~/.kube/config")
	fs.StringSliceVar(&c.Namespaces, "namespaces", nil, "namespaces the router may act in, comma-separated (istio backend); empty: any")
	fs.StringSliceVar(&c.Gateways, "gateways", router.DefaultGateways(), "gateways of the mirroring VirtualService (istio backend)")
	fs.StringVar(&c.LocalGateway, "local-gateway", router.DefaultLocalGateway, "gateway of the routing VirtualService (istio backend)")
	fs.StringVar(&c.GatewayHost, "gateway-host", router.DefaultGatewayHost, "service of the local gateway, where the mirroring VirtualService sends traffic and copies (istio backend)")
	fs.BoolVar(&c.LegacyMirrorPercent, "legacy-mirror-percent", false, "write the integer mirrorPercent with networking.istio.io/v1alpha3, for an old Istio (istio backend)")
	fs.BoolVar(&c.KeepRouting, "keep-routing", false, "leave a completed experiment's mirroring in place until the experiment is deleted")
}
