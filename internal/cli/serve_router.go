package cli

import (
	"github.com/spf13/pflag"

	"github.com/darklaunch/darklaunch/services/router"
)

// routerFlags binds `darklaunch serve router`'s flags to c.
func routerFlags(fs *pflag.FlagSet, c *router.Config) {
	fs.StringVar(&c.Backend, "backend", router.BackendProxy, "mirroring backend")
	fs.StringVar(&c.ProxyAddr, "proxy-addr", router.DefaultProxyAddr, "where the mirroring proxy listens")
	fs.StringVar(&c.DefaultHost, "host", router.DefaultHost, "host mirrored when spec.mirroring.host is absent")
	fs.Float64Var(&c.DefaultPercent, "percent", router.DefaultPercent, "percent mirrored when spec.mirroring.percent is absent")
	fs.StringVar(&c.DefaultLiveURL, "live", "", "live base URL when spec.mirroring.liveURL is absent")
	fs.StringVar(&c.DefaultDarkURL, "dark", "", "dark base URL when spec.mirroring.darkURL is absent")
	fs.IntVar(&c.MirrorInflight, "mirror-inflight", router.DefaultMirrorInflight, "copies in flight to the dark version at most; more are dropped and counted")
	fs.Int64Var(&c.MirrorMaxBody, "mirror-max-body", router.DefaultMirrorMaxBody, "largest request body copied, in bytes")
	fs.DurationVar(&c.MirrorTimeout, "mirror-timeout", router.DefaultMirrorTimeout, "timeout of a copy sent to the dark version")
	fs.DurationVar(&c.FlushInterval, "flush-interval", router.DefaultFlushInterval, "how often observations are published")
	fs.DurationVar(&c.InitTimeout, "init-timeout", router.DefaultInitTimeout, "how long to wait for live and dark to answer before failing the experiment")
}
