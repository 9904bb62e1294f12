package cli

import (
	"github.com/spf13/pflag"

	"github.com/darklaunch/darklaunch/services/collector"
)

// collectorFlags binds `darklaunch serve collector`'s flags to c.
func collectorFlags(fs *pflag.FlagSet, c *collector.Config) {
	fs.StringVar(&c.Source, "source", collector.SourceBus, "metrics source")
	fs.DurationVar(&c.Grace, "grace", collector.DefaultGrace, "wait after an interval ends for the last observations")
}
