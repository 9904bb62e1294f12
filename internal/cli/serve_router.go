package cli

import (
	"strings"

	"github.com/spf13/pflag"

	"github.com/darklaunch/darklaunch/services/router"
)

// routerFlags binds `darklaunch serve router`'s flags to c: the router's
// own here, the shared settings' and each backend's by their AddFlags.
func routerFlags(fs *pflag.FlagSet, c *router.Config) {
	fs.StringVar(&c.Backend, "backend", router.BackendProxy, "mirroring backend: "+strings.Join(router.Backends, " or ")+" (istio: the seed's VirtualServices on Kubernetes)")
	fs.BoolVar(&c.KeepRouting, "keep-routing", false, "leave a completed experiment's mirroring in place until the experiment is deleted")
	c.Settings.AddFlags(fs)
	c.Proxy.AddFlags(fs)
	c.Istio.AddFlags(fs)
}
