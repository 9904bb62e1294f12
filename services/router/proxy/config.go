package proxy

import (
	"cmp"
	"errors"
	"time"

	"github.com/nats-io/nuid"
	"github.com/spf13/pflag"

	"github.com/darklaunch/darklaunch/services/router/mirroring"
)

// Config configures the proxy backend (router.Config.Proxy). Every zero
// value takes the default written next to the field (Default).
type Config struct {
	// Addr is where the proxy listens. Default "127.0.0.1:8080".
	Addr string

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

	// FlushInterval is how often the proxy publishes its observations. It
	// also sets their slots: the longest exact fraction of a second no
	// longer than it (sketch.SlotWidth). Default 1s.
	FlushInterval time.Duration
	// Instance tells this router's observation batches apart from another
	// router's. Default a new NUID per process.
	Instance string
}

// Defaults of Config.
const (
	DefaultAddr           = "127.0.0.1:8080"
	DefaultMirrorInflight = 64
	DefaultMirrorMaxBody  = 64 << 10
	DefaultMirrorTimeout  = 5 * time.Second
	DefaultFlushInterval  = time.Second
)

// Default replaces every zero value with its default.
func (c *Config) Default() {
	c.Addr = cmp.Or(c.Addr, DefaultAddr)
	c.MirrorInflight = cmp.Or(c.MirrorInflight, DefaultMirrorInflight)
	c.MirrorMaxBody = cmp.Or(c.MirrorMaxBody, DefaultMirrorMaxBody)
	c.MirrorTimeout = cmp.Or(c.MirrorTimeout, DefaultMirrorTimeout)
	c.FlushInterval = cmp.Or(c.FlushInterval, DefaultFlushInterval)
	if c.Instance == "" {
		c.Instance = nuid.Next()
	}
}

// Validate reports every setting that cannot work, after defaults.
func (c Config) Validate() error {
	var errs []error
	negative := func(field string, v int64) {
		if v < 0 {
			errs = append(errs, mirroring.Problem("Proxy.", field, v, "must not be negative"))
		}
	}
	negative("MirrorInflight", int64(c.MirrorInflight))
	negative("MirrorMaxBody", c.MirrorMaxBody)
	for _, d := range []struct {
		field string
		d     time.Duration
	}{{"MirrorTimeout", c.MirrorTimeout}, {"FlushInterval", c.FlushInterval}} {
		if d.d < 0 {
			errs = append(errs, mirroring.Problem("Proxy.", d.field, d.d, "must not be negative"))
		}
	}
	return errors.Join(errs...)
}

// AddFlags binds the flags of `darklaunch serve router` that set c.
func (c *Config) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.Addr, "proxy-addr", DefaultAddr, "where the mirroring proxy listens (proxy backend)")
	fs.IntVar(&c.MirrorInflight, "mirror-inflight", DefaultMirrorInflight, "copies in flight to the dark version at most; more are dropped and counted (proxy backend)")
	fs.Int64Var(&c.MirrorMaxBody, "mirror-max-body", DefaultMirrorMaxBody, "largest request body copied, in bytes (proxy backend)")
	fs.DurationVar(&c.MirrorTimeout, "mirror-timeout", DefaultMirrorTimeout, "timeout of a copy sent to the dark version (proxy backend)")
	fs.DurationVar(&c.FlushInterval, "flush-interval", DefaultFlushInterval, "how often observations are published (proxy backend)")
}
