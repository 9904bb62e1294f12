// Package cli is the darklaunch command line: `run` (the main job), `dev`,
// `serve`, the API clients (submit, get, list, delete, describe, watch),
// `decode` and `sample-app`. main only wires signals and calls Run.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

// Exit codes of `darklaunch run` (and of every command for errors).
const (
	ExitPass    = 0 // the dark version passed
	ExitFail    = 1 // the dark version failed an objective
	ExitInvalid = 2 // invalid input or an error
	// ExitInconclusive: with spec.criteria.confidence, the objectives were
	// not shown either way; the verdict says how much more each needs.
	ExitInconclusive = 3
)

// Version is set at build time with -ldflags "-X github.com/darklaunch/darklaunch/internal/cli.Version=...".
var Version = "0.1.0-dev"

// exitError carries an exit code through cobra.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func withCode(code int, err error) error { return &exitError{code: code, err: err} }

// verdictExit maps a finished experiment to the exit code: 0 passed,
// 1 failed an objective, 3 inconclusive (with a confidence level), 2 could
// not be judged.
func verdictExit(e *experiment.Experiment) error {
	switch {
	case e.Status.Failed():
		return withCode(ExitInvalid, fmt.Errorf("experiment %s failed: %s", e.Key(), e.Status.Condition(experiment.ConditionFailed).Message))
	case e.Passed():
		return nil
	case e.Status.Analysis != nil && e.Status.Analysis.Outcome == experiment.VerdictInconclusive:
		return withCode(ExitInconclusive, errSilent)
	default:
		return withCode(ExitFail, errSilent)
	}
}

// globals are the flags every command has.
type globals struct {
	server    string
	creds     string
	token     string
	nkey      string
	tlsCA     string
	tlsCert   string
	tlsKey    string
	logLevel  string
	logFormat string

	stdin          io.Reader
	stdout, stderr io.Writer
}

// Run runs the CLI with args and returns the process exit code.
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	g := &globals{stdin: stdin, stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:   "darklaunch",
		Short: "Dark launches over NATS: mirror live traffic to a dark version, measure it, judge it",
		Long: `darklaunch runs dark launches: it mirrors a share of live traffic to a new ("dark")
version of a service, ignores the dark responses, measures the dark version and judges it
against objectives (mean latency, 95th-percentile latency, error rate), like an Iter8
conformance experiment with mirrored traffic.

Start here:  darklaunch run examples/mirroring/experiment.yaml`,
		SilenceUsage:      true,
		SilenceErrors:     true,
		Version:           Version,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error { return envFallback(cmd) },
	}
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	pf := root.PersistentFlags()
	pf.StringVarP(&g.server, "server", "s", "", "NATS server URL (env DARKLAUNCH_SERVER; default "+nats.DefaultURL+"; run: embedded)")
	pf.StringVar(&g.creds, "creds", "", "NATS credentials file (env DARKLAUNCH_CREDS)")
	pf.StringVar(&g.token, "token", "", "NATS token (env DARKLAUNCH_TOKEN)")
	pf.StringVar(&g.nkey, "nkey", "", "file of a NATS user's nkey seed, as darklaunch nats-config writes one per role (env DARKLAUNCH_NKEY)")
	pf.StringVar(&g.tlsCA, "tls-ca", "", "PEM file of the CA that signed the NATS server's certificate (env DARKLAUNCH_TLS_CA; default: the system's)")
	pf.StringVar(&g.tlsCert, "tls-cert", "", "PEM file of this client's certificate, for a NATS server that verifies clients (env DARKLAUNCH_TLS_CERT)")
	pf.StringVar(&g.tlsKey, "tls-key", "", "PEM file of the key of --tls-cert (env DARKLAUNCH_TLS_KEY)")
	pf.StringVar(&g.logLevel, "log-level", "", "log level: debug, info, warn, error (env DARKLAUNCH_LOG_LEVEL)")
	pf.StringVar(&g.logFormat, "log-format", "text", "log format: text or json (env DARKLAUNCH_LOG_FORMAT)")

	root.AddCommand(
		newRunCmd(g),
		newDevCmd(g),
		newServeCmd(g),
		newSubmitCmd(g),
		newGetCmd(g),
		newListCmd(g),
		newDeleteCmd(g),
		newDescribeCmd(g),
		newWatchCmd(g),
		newDecodeCmd(g),
		newNATSConfigCmd(g),
		newSampleAppCmd(g),
	)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitPass
	}
	code := ExitInvalid
	var ee *exitError
	if errors.As(err, &ee) {
		code = ee.code
	}
	switch {
	case errors.Is(err, errSilent):
	case ctx.Err() != nil && errors.Is(err, context.Canceled):
		// Ctrl-C or SIGTERM: what was running has been stopped.
		fmt.Fprintln(stderr, "darklaunch: interrupted")
	default:
		fmt.Fprintf(stderr, "darklaunch: %s\n", err)
	}
	return code
}

// errSilent ends a command with an exit code and nothing more to say.
var errSilent = errors.New("silent")

// envFallback sets every flag that was not given from DARKLAUNCH_<FLAG>
// (upper case, dashes as underscores), so containers are configured by
// environment and people by flags.
func envFallback(cmd *cobra.Command) error {
	var err error
	visit := func(f *pflag.Flag) {
		if f.Changed || err != nil {
			return
		}
		env := "DARKLAUNCH_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(env); ok {
			if e := f.Value.Set(v); e != nil {
				err = withCode(ExitInvalid, fmt.Errorf("%s=%q: %w", env, v, e))
			}
		}
	}
	cmd.Flags().VisitAll(visit)
	cmd.InheritedFlags().VisitAll(visit)
	return err
}

func (g *globals) logger(defaultLevel slog.Level) (*slog.Logger, error) {
	level := defaultLevel
	if g.logLevel != "" {
		if err := level.UnmarshalText([]byte(g.logLevel)); err != nil {
			return nil, withCode(ExitInvalid, fmt.Errorf("--log-level %q: want debug, info, warn or error", g.logLevel))
		}
	}
	opts := &slog.HandlerOptions{Level: level}
	switch g.logFormat {
	case "", "text":
		return slog.New(slog.NewTextHandler(g.stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(g.stderr, opts)), nil
	}
	return nil, withCode(ExitInvalid, fmt.Errorf("--log-format %q: want text or json", g.logFormat))
}

// connConfig is how the command connects; role is the service it runs
// ("" for a person's command), whose replies come to its own inboxes.
func (g *globals) connConfig(name, role string) bus.ConnConfig {
	url := g.server
	if url == "" {
		url = nats.DefaultURL
	}
	c := bus.ConnConfig{URL: url, Name: name, CredsFile: g.creds, Token: g.token, NKeyFile: g.nkey,
		TLSCA: g.tlsCA, TLSCert: g.tlsCert, TLSKey: g.tlsKey}
	if role != "" {
		c.InboxPrefix = bus.InboxPrefix(role)
	}
	return c
}

func (g *globals) connect(name, role string, log *slog.Logger) (*nats.Conn, error) {
	nc, err := bus.Connect(g.connConfig(name, role), log)
	if err != nil {
		if hint := g.connectHint(err); hint != "" {
			err = fmt.Errorf("%w (%s)", err, hint)
		}
		return nil, withCode(ExitInvalid, err)
	}
	return nc, nil
}

// connectHint says what to do about a connection that failed: with no
// server there, start one; with credentials refused, give the right ones
// (starting another server would not help).
func (g *globals) connectHint(err error) string {
	switch {
	case authRefused(err):
		what := "the NATS server refused the connection without credentials"
		if g.creds != "" || g.token != "" || g.nkey != "" || strings.Contains(g.server, "@") {
			what = "the NATS server refused the credentials given"
		}
		return what + ": give them with --nkey FILE, --creds FILE, --token TOKEN or --server nats://user:password@host, or in DARKLAUNCH_NKEY, DARKLAUNCH_CREDS, DARKLAUNCH_TOKEN or DARKLAUNCH_SERVER"
	case errors.Is(err, nats.ErrNoServers):
		return "start one with `darklaunch dev`, or pass --server"
	}
	return ""
}

// authRefused tells an error of a server that refused the client's
// credentials (or has stopped accepting them) from one of no server at all.
func authRefused(err error) bool {
	for _, e := range []error{nats.ErrAuthorization, nats.ErrAuthExpired, nats.ErrAuthRevoked, nats.ErrAccountAuthExpired} {
		if errors.Is(err, e) {
			return true
		}
	}
	// A server may word it otherwise: "-ERR 'Authorization Violation'".
	return strings.Contains(strings.ToLower(err.Error()), "authorization violation")
}
