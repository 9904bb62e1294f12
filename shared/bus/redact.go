package bus

import (
	"cmp"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
)

// Redacted stands for a secret in a message or a log.
const Redacted = "xxxxx"

// RedactURL is urls (a NATS URL, or several comma-separated) fit for a
// message or a log: a password becomes Redacted, and so does a token, which
// a URL carries as a user without a password (nats.go sends it as the
// token). net/url's Redacted, and so nc.ConnectedUrlRedacted, hide only
// passwords and would show a token in full.
func RedactURL(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		parts[i] = redactOne(p)
	}
	return strings.Join(parts, ",")
}

// ConnectedURL is the URL nc is connected to, redacted.
func ConnectedURL(nc *nats.Conn) string { return RedactURL(nc.ConnectedUrl()) }

// redactOne redacts one URL. It does not parse it: a URL that does not parse
// (a password with a '/' in it, a bad port) must be redacted all the same.
// Everything up to the last '@' after the scheme is the user information.
func redactOne(s string) string {
	prefix, rest := "", s
	if i := strings.Index(s, "://"); i >= 0 {
		prefix, rest = s[:i+3], s[i+3:]
	}
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return s
	}
	if user, _, ok := strings.Cut(rest[:at], ":"); ok {
		return prefix + user + ":" + Redacted + rest[at:]
	}
	return prefix + Redacted + rest[at:]
}

// secrets are the secrets of cfg: its token and password, and those its
// URLs carry, each as written and unescaped.
func (cfg ConnConfig) secrets() []string {
	out := []string{cfg.Token, cfg.Password}
	for _, p := range strings.Split(cfg.URL, ",") {
		rest := p
		if i := strings.Index(p, "://"); i >= 0 {
			rest = p[i+3:]
		}
		at := strings.LastIndex(rest, "@")
		if at < 0 {
			continue
		}
		info := rest[:at]
		if _, pass, ok := strings.Cut(info, ":"); ok {
			info = pass
		}
		out = append(out, info)
		if u, err := url.PathUnescape(info); err == nil {
			out = append(out, u)
		}
	}
	return out
}

// redactMessage takes every secret of cfg out of msg, and every form a
// message may quote it in (%q of the URL, as url.Parse's errors do). A
// secret may be part of a longer one: the longest are taken first.
func (cfg ConnConfig) redactMessage(msg string) string {
	var forms []string
	for _, s := range cfg.secrets() {
		if s == "" {
			continue
		}
		q := strconv.Quote(s)
		forms = append(forms, s, q[1:len(q)-1])
	}
	slices.SortFunc(forms, func(a, b string) int { return cmp.Compare(len(b), len(a)) })
	for _, f := range forms {
		msg = strings.ReplaceAll(msg, f, Redacted)
	}
	return msg
}

// redactedError is an error whose message has its secrets taken out;
// errors.Is and As still see what it wraps.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }
