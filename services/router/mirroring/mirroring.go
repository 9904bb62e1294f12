// Package mirroring is what every router backend shares: the router's
// settings that apply to any backend, an experiment's spec.mirroring
// resolved against them, and the rule of when the init check runs. It is a
// leaf: the router's factory imports the backends, and the backends import
// this instead of the router.
package mirroring

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/darklaunch/darklaunch/shared/experiment"
)

// Settings are the router's settings that every backend applies to an
// experiment: what its spec.mirroring falls back on, and how long the init
// check waits for its target. router.Config embeds them; every zero value
// takes the default written next to the field (Default).
type Settings struct {
	// DefaultHost is the host mirrored when spec.mirroring.host is absent.
	// Default "customdomain.com" (the seed's).
	DefaultHost string
	// DefaultPercent is the share mirrored when spec.mirroring.percent is
	// absent, in (0, 100]. Default 40 (the seed's).
	DefaultPercent float64
	// DefaultLiveURL and DefaultDarkURL are the versions' base URLs when
	// spec.mirroring lacks them (the proxy sends traffic there). No
	// default: the proxy's Setup fails when neither the experiment nor the
	// configuration names a URL.
	DefaultLiveURL string
	DefaultDarkURL string

	// InitTimeout bounds the init check (the proxy: live and dark answer;
	// istio: the Knative Service is Ready). Default 30s.
	InitTimeout time.Duration
	// InitInterval is the pause between two attempts of the init check.
	// Default 500ms.
	InitInterval time.Duration
}

// Defaults of Settings.
const (
	DefaultHost         = "customdomain.com"
	DefaultPercent      = 40
	DefaultInitTimeout  = 30 * time.Second
	DefaultInitInterval = 500 * time.Millisecond
)

// Default replaces every zero value with its default.
func (s *Settings) Default() {
	s.DefaultHost = cmp.Or(s.DefaultHost, DefaultHost)
	s.DefaultPercent = cmp.Or(s.DefaultPercent, DefaultPercent)
	s.InitTimeout = cmp.Or(s.InitTimeout, DefaultInitTimeout)
	s.InitInterval = cmp.Or(s.InitInterval, DefaultInitInterval)
}

// Validate reports every setting that cannot work, after defaults.
func (s Settings) Validate() error {
	var errs []error
	bad := func(field string, v any, why string) {
		errs = append(errs, Problem("", field, v, why))
	}
	if !(s.DefaultPercent > 0 && s.DefaultPercent <= 100) {
		bad("DefaultPercent", s.DefaultPercent, "must be greater than 0 and at most 100")
	}
	for _, u := range []struct{ field, url string }{{"DefaultLiveURL", s.DefaultLiveURL}, {"DefaultDarkURL", s.DefaultDarkURL}} {
		if u.url == "" {
			continue
		}
		if _, err := ParseBaseURL(u.url); err != nil {
			bad(u.field, u.url, err.Error())
		}
	}
	for _, d := range []struct {
		field string
		d     time.Duration
	}{{"InitTimeout", s.InitTimeout}, {"InitInterval", s.InitInterval}} {
		if d.d < 0 {
			bad(d.field, d.d, "must not be negative")
		}
	}
	return errors.Join(errs...)
}

// Problem is one setting that cannot work, as every Validate of the router
// reports it: the field, as it is reached from router.Config (section
// "Proxy." or "Istio." for a backend's own), its value and why.
func Problem(section, field string, v any, why string) error {
	return fmt.Errorf("config %s%s=%v: %s", section, field, v, why)
}

// AddFlags binds the flags of `darklaunch serve router` that set s.
func (s *Settings) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&s.DefaultHost, "host", DefaultHost, "host mirrored when spec.mirroring.host is absent")
	fs.Float64Var(&s.DefaultPercent, "percent", DefaultPercent, "percent mirrored when spec.mirroring.percent is absent")
	fs.StringVar(&s.DefaultLiveURL, "live", "", "live base URL when spec.mirroring.liveURL is absent (proxy backend)")
	fs.StringVar(&s.DefaultDarkURL, "dark", "", "dark base URL when spec.mirroring.darkURL is absent (proxy backend)")
	fs.DurationVar(&s.InitTimeout, "init-timeout", DefaultInitTimeout, "how long to wait for the target (live and dark answer; istio: the Knative Service is Ready and serves the dark revision) before failing the experiment")
	fs.DurationVar(&s.InitInterval, "init-interval", DefaultInitInterval, "pause between two attempts of the init check")
}

// Spec is an experiment's spec.mirroring with the router's defaults
// applied: what both backends set up.
type Spec struct {
	Host    string   // lower case, without port or trailing dot
	Percent float64  // the mirrored share, in (0, 100] once Resolve accepts it
	Methods []string // the methods copied, upper case
	// LiveRevision is spec.mirroring.liveRevision (istio), if any.
	LiveRevision string
	// KeepHost is spec.mirroring.keepHost (proxy).
	KeepHost bool
}

// Status is the part of the routing status every backend reports.
func (m Spec) Status(backend string) experiment.RoutingStatus {
	return experiment.RoutingStatus{Backend: backend, Host: m.Host, Percent: m.Percent}
}

// Resolve reads exp's spec.mirroring, falling back on s. The error is about
// the share, the one thing every backend checks; what was resolved comes
// back with it, for the status of the failed setup.
func (s Settings) Resolve(exp *experiment.Experiment) (Spec, error) {
	m := exp.Spec.Mirroring
	if m == nil {
		m = &experiment.Mirroring{}
	}
	spec := Spec{Host: Host(m.Host), Percent: s.DefaultPercent, LiveRevision: m.LiveRevision, KeepHost: m.KeepHost}
	if spec.Host == "" {
		spec.Host = Host(s.DefaultHost)
	}
	if m.Percent != nil {
		spec.Percent = *m.Percent
	}
	spec.Methods = experiment.DefaultMirrorMethods
	if len(m.Methods) > 0 {
		spec.Methods = make([]string, len(m.Methods))
		for i, meth := range m.Methods {
			spec.Methods[i] = strings.ToUpper(meth)
		}
	}
	if !(spec.Percent > 0 && spec.Percent <= 100) {
		return spec, fmt.Errorf("spec.mirroring.percent %v: must be greater than 0 and at most 100", spec.Percent)
	}
	return spec, nil
}

// Versions resolves the live and dark versions' base URLs, from
// spec.mirroring or s. Live comes back even when dark fails.
func (s Settings) Versions(exp *experiment.Experiment) (live, dark *url.URL, err error) {
	m := exp.Spec.Mirroring
	if m == nil {
		m = &experiment.Mirroring{}
	}
	if live, err = versionURL("live", m.LiveURL, "spec.mirroring.liveURL", s.DefaultLiveURL); err != nil {
		return nil, nil, err
	}
	if dark, err = versionURL("dark", m.DarkURL, "spec.mirroring.darkURL", s.DefaultDarkURL); err != nil {
		return live, nil, err
	}
	return live, dark, nil
}

func versionURL(role, fromSpec, field, fromConfig string) (*url.URL, error) {
	raw, from := fromSpec, field
	if raw == "" {
		raw, from = fromConfig, "the router's default "+role+" URL"
	}
	if raw == "" {
		return nil, fmt.Errorf("no %s version URL: set %s or the router's default %s URL", role, field, role)
	}
	u, err := ParseBaseURL(raw)
	if err != nil {
		return nil, fmt.Errorf("%s version URL from %s: %w", role, from, err)
	}
	return u, nil
}

// ParseBaseURL checks a version's base URL: absolute http(s) with a host.
func ParseBaseURL(s string) (*url.URL, error) {
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

// Host turns a Host header or configured host into the mirrored host: lower
// case, without port or trailing dot.
func Host(h string) string {
	// Most Host headers have no port: SplitHostPort would allocate its error.
	if strings.LastIndexByte(h, ':') >= 0 {
		if host, _, err := net.SplitHostPort(h); err == nil {
			h = host
		}
	}
	return strings.TrimSuffix(strings.ToLower(h), ".")
}

// NeedsInitCheck tells whether exp's target must pass the init check before
// it is routed: only a new experiment, one the judge has not yet seen
// routed. Once routing was reported, the route must come back at once after
// a router restart, whatever the target does right now.
func NeedsInitCheck(exp *experiment.Experiment) bool {
	st := exp.Status
	return (st.Stage == experiment.StageInitializing || st.Stage == "") && st.Routing == nil
}

// HostHeld is a backend's refusal to route a host because the routing of
// another experiment holds it. The router does not leave it at that when
// the holding run has ended (it is being torn down, or completed or deleted
// since): it has that routing removed and tries again (see the router's
// Service). A host held by a run still going on stays refused.
type HostHeld struct {
	// Holder is the holding run, as much of it as the backend's Teardown
	// needs to remove its routing (metadata with the UID; istio: the
	// target's namespace too), or nil when the backend cannot tell which
	// run it is: the refusal then stands.
	Holder *experiment.Experiment
	// Reason is the error's message, naming the host and the holder.
	Reason string
}

func (h *HostHeld) Error() string { return h.Reason }
