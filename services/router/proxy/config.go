package proxy

import (
	"cmp"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nuid"
	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/darklaunch/darklaunch/services/router/mirroring"
)

// Config configures the proxy backend (router.Config.Proxy). Every zero
// value takes the default written next to the field (Default).
type Config struct {
	// Addr is where the proxy listens: HTTP/1.1 and h2c (HTTP/2 with prior
	// knowledge, as gRPC clients send it). Default "127.0.0.1:8080".
	Addr string
	// TLSCert and TLSKey are PEM files of a certificate (its chain after
	// it) and of its key. Given both, the proxy also serves TLS on TLSAddr,
	// with ALPN h2 and http/1.1. Default none: no TLS listener.
	TLSCert, TLSKey string
	// TLSAddr is where the proxy serves TLS, given TLSCert and TLSKey.
	// Default "127.0.0.1:8443".
	TLSAddr string

	// MirrorMemory bounds the memory the copies in flight may hold, every
	// experiment together: each copy counts as CopyOverhead plus its
	// headers and body. A copy that would go over it is dropped
	// ("inflight"), never queued or waited for. Under it, the copies in
	// flight follow the traffic: rate × the dark version's latency
	// (Little's law), up to MirrorMemory / CopyOverhead copies. Default
	// 64 MiB: 2,048 copies without a body, 2.6 s of copies at 2,000 req/s
	// mirrored 40 % to a dark version that hangs.
	MirrorMemory int64
	// MirrorInflight, when set, also bounds the copies in flight to one
	// experiment's dark version. Default 0: only MirrorMemory bounds them.
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
	// router's; the router sets it to its own Instance, which names its
	// lease too, so that the collector finds a batch's router among the
	// leases. Default a new NUID per process.
	Instance string
}

// Defaults of Config.
const (
	DefaultAddr          = "127.0.0.1:8080"
	DefaultMirrorMemory  = 64 << 20
	DefaultMirrorMaxBody = 64 << 10
	DefaultMirrorTimeout = 5 * time.Second
	DefaultFlushInterval = time.Second
)

// Default replaces every zero value with its default.
func (c *Config) Default() {
	c.Addr = cmp.Or(c.Addr, DefaultAddr)
	c.TLSAddr = cmp.Or(c.TLSAddr, DefaultTLSAddr)
	c.MirrorMemory = cmp.Or(c.MirrorMemory, DefaultMirrorMemory)
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
	negative("MirrorMemory", c.MirrorMemory)
	negative("MirrorMaxBody", c.MirrorMaxBody)
	for _, d := range []struct {
		field string
		d     time.Duration
	}{{"MirrorTimeout", c.MirrorTimeout}, {"FlushInterval", c.FlushInterval}} {
		if d.d < 0 {
			errs = append(errs, mirroring.Problem("Proxy.", d.field, d.d, "must not be negative"))
		}
	}
	errs = append(errs, c.tlsProblems()...)
	return errors.Join(errs...)
}

// AddFlags binds the flags of `darklaunch serve router` that set c.
func (c *Config) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.Addr, "proxy-addr", DefaultAddr, "where the mirroring proxy listens: HTTP/1.1 and h2c (proxy backend)")
	fs.StringVar(&c.TLSCert, flagTLSCert, "", "PEM file of the certificate (chain after it) the proxy serves TLS with, on --"+flagTLSAddr+", ALPN h2 and http/1.1; needs --"+flagTLSKey+" (proxy backend)")
	fs.StringVar(&c.TLSKey, flagTLSKey, "", "PEM file of the key of --"+flagTLSCert+" (proxy backend)")
	fs.StringVar(&c.TLSAddr, flagTLSAddr, DefaultTLSAddr, "where the proxy serves TLS, given --"+flagTLSCert+" and --"+flagTLSKey+" (proxy backend)")
	c.MirrorMemory = DefaultMirrorMemory // the flag's default, as the other flags set theirs
	fs.Var(bytesFlag{&c.MirrorMemory}, "mirror-memory", "memory the copies in flight to dark versions may hold, as a quantity (64Mi, 1Gi); a copy over it is dropped and counted (proxy backend)")
	fs.IntVar(&c.MirrorInflight, "mirror-inflight", 0, "copies in flight to one experiment's dark version at most, besides --mirror-memory; 0: no such bound (proxy backend)")
	fs.Int64Var(&c.MirrorMaxBody, "mirror-max-body", DefaultMirrorMaxBody, "largest request body copied, in bytes (proxy backend)")
	fs.DurationVar(&c.MirrorTimeout, "mirror-timeout", DefaultMirrorTimeout, "timeout of a copy sent to the dark version (proxy backend)")
	fs.DurationVar(&c.FlushInterval, "flush-interval", DefaultFlushInterval, "how often observations are published (proxy backend)")
}

// bytesFlag is a size flag written as a Kubernetes quantity (64Mi, 1Gi,
// 500k), the way the chart's values and resource limits are.
type bytesFlag struct{ v *int64 }

func (f bytesFlag) String() string {
	if f.v == nil {
		return ""
	}
	return resource.NewQuantity(*f.v, resource.BinarySI).String()
}

func (f bytesFlag) Set(s string) error {
	q, err := resource.ParseQuantity(s)
	if err != nil {
		return fmt.Errorf("%q is not a size such as 64Mi or 1Gi", s)
	}
	if q.Sign() < 0 {
		return fmt.Errorf("%q must not be negative", s)
	}
	*f.v = q.Value()
	return nil
}

func (f bytesFlag) Type() string { return "quantity" }
