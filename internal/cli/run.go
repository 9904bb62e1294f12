package cli

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/darklaunch/darklaunch/internal/report"
	"github.com/darklaunch/darklaunch/internal/stack"
	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

type runOptions struct {
	live, dark string
	proxyAddr  string
	out        output
	timeout    time.Duration
	keep       bool
}

func newRunCmd(g *globals) *cobra.Command {
	var o runOptions
	cmd := &cobra.Command{
		Use:   "run FILE|-",
		Short: "Run an experiment end to end and print its report (exit 0 pass, 1 fail, 2 error)",
		Long: `Run an experiment end to end. Without --server, everything runs in this process: a
nats-server with JetStream, the sample app as live (blue) and dark (green) versions, and the
router, loadgen, collector and judge services. With --live/--dark your own versions replace
the sample app. With --server, the experiment is submitted to the darklaunch services
already running on that NATS.

Progress goes to stderr; the report (iter8ctl describe layout, or -o json|yaml) to stdout.
Exit code: 0 the dark version passed, 1 it failed an objective, 2 invalid input or an error.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return runExperiment(cmd.Context(), g, &o, args[0]) },
	}
	f := cmd.Flags()
	f.StringVar(&o.live, "live", "", "base URL of your live version (default: the sample app, blue)")
	f.StringVar(&o.dark, "dark", "", "base URL of your dark version (default: the sample app, green)")
	f.StringVar(&o.proxyAddr, "proxy-addr", "127.0.0.1:0", "where the embedded mirroring proxy listens")
	f.DurationVar(&o.timeout, "timeout", 0, "give up after this long (default: the experiment's duration plus 3 minutes)")
	f.BoolVar(&o.keep, "keep", false, "with --server: leave the experiment in place when interrupted (default: delete it)")
	o.out.add(cmd, "text")
	return cmd
}

func runExperiment(ctx context.Context, g *globals, o *runOptions, path string) error {
	if err := o.out.check(); err != nil {
		return err
	}
	doc, err := g.readDocument(path)
	if err != nil {
		return err
	}
	// Parse here first: a bad document is reported before anything starts.
	exp, err := experiment.Parse(doc)
	if err != nil {
		return withCode(ExitInvalid, err)
	}
	if o.live != "" || o.dark != "" {
		if exp.Spec.Mirroring == nil {
			exp.Spec.Mirroring = &experiment.Mirroring{}
		}
		if o.live != "" {
			exp.Spec.Mirroring.LiveURL = o.live
		}
		if o.dark != "" {
			exp.Spec.Mirroring.DarkURL = o.dark
		}
		if errs := exp.Validate(); len(errs) > 0 {
			return withCode(ExitInvalid, &experiment.InvalidError{Name: exp.Key(), Errors: errs})
		}
		if doc, err = bus.Marshal(bus.ContentTypeJSON, exp); err != nil {
			return err
		}
	}
	log, err := g.logger(slog.LevelWarn)
	if err != nil {
		return err
	}
	timeout := o.timeout
	if timeout == 0 {
		timeout = time.Duration(exp.TotalIterations())*exp.Interval() + 3*time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	var client *bus.Client
	if g.server == "" {
		fmt.Fprintf(g.stderr, "Starting darklaunch (embedded NATS, sample app, router, loadgen, collector, judge)...\n")
		st, err := stack.Start(ctx, stack.Config{ProxyAddr: o.proxyAddr, Log: log})
		if err != nil {
			return withCode(ExitInvalid, err)
		}
		defer st.Close()
		c, nc, err := st.Client()
		if err != nil {
			return withCode(ExitInvalid, err)
		}
		defer nc.Close()
		client = c
		live, dark := orStr(o.live, st.LiveURL+" (sample app blue)"), orStr(o.dark, st.DarkURL+" (sample app green)")
		fmt.Fprintf(g.stderr, "NATS %s · proxy %s · live %s · dark %s\n", st.URL, st.ProxyURL, live, dark)
	} else {
		c, nc, err := g.apiClient()
		if err != nil {
			return err
		}
		defer nc.Close()
		client = c
	}
	created, err := client.Create(ctx, doc)
	if err != nil {
		return withCode(ExitInvalid, err)
	}
	fmt.Fprintf(g.stderr, "Experiment %s: %d iterations of %s\n", created.Key(), created.TotalIterations(), created.Interval())
	p := newProgress(g.stderr, true)
	p.update(created)
	final, err := follow(ctx, client.NC, client, created, p.update, nil)
	p.done()
	if err != nil {
		if g.server != "" && !o.keep && ctx.Err() != nil {
			dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
			if _, derr := client.Delete(dctx, bus.Ref{Namespace: created.Metadata.Namespace, Name: created.Metadata.Name}); derr == nil {
				fmt.Fprintf(g.stderr, "deleted experiment %s\n", created.Key())
			}
			dcancel()
		}
		if ctx.Err() == context.DeadlineExceeded {
			return withCode(ExitInvalid, fmt.Errorf("experiment %s did not finish within %s", created.Key(), timeout))
		}
		return withCode(ExitInvalid, err)
	}
	if err := o.out.print(g.stdout, final, func() { report.Describe(g.stdout, final) }); err != nil {
		return err
	}
	return verdictExit(final)
}

func orStr(s, def string) string {
	if s != "" {
		return s
	}
	return def
}

type devOptions struct {
	natsAddr, proxyAddr string
	live, dark          string
	storeDir            string
}

func newDevCmd(g *globals) *cobra.Command {
	var o devOptions
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run the whole stack embedded and keep it up, for use with the nats CLI",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger(slog.LevelInfo)
			if err != nil {
				return err
			}
			cfg := stack.Config{NATSAddr: o.natsAddr, ProxyAddr: o.proxyAddr, LiveURL: o.live, DarkURL: o.dark, StoreDir: o.storeDir, Log: log}
			if g.server != "" {
				// An existing NATS instead of the embedded one; the
				// environment variable is easy to have set and forget.
				if cmd.Flags().Changed("nats-addr") || cmd.Flags().Changed("store-dir") {
					return withCode(ExitInvalid, fmt.Errorf("--server %s (or DARKLAUNCH_SERVER) uses an existing NATS, --nats-addr and --store-dir configure the embedded one: give one or the other", g.server))
				}
				fmt.Fprintf(g.stderr, "Using the NATS server at %s (--server or DARKLAUNCH_SERVER), not an embedded one.\n", g.server)
				cfg.NATS = g.connConfig("darklaunch-dev")
			}
			st, err := stack.Start(cmd.Context(), cfg)
			if err != nil {
				return withCode(ExitInvalid, err)
			}
			defer st.Close()
			fmt.Fprintf(g.stdout, `darklaunch dev is up. Ctrl-C stops it.

  NATS          %s
  proxy         %s   (send requests with Host: customdomain.com)
  live version  %s
  dark version  %s

Try, in another terminal:
  nats micro ls
  nats sub 'darklaunch.events.>' --translate 'darklaunch decode'
  nats req darklaunch.experiments.create "$(cat examples/mirroring/experiment-local.yaml)"
  darklaunch watch mirroring-local
The proxy routes a host only while an experiment mirrors it; until then it answers 404.
`, st.URL, st.ProxyURL, st.LiveURL, st.DarkURL)
			<-cmd.Context().Done()
			fmt.Fprintln(g.stderr, "stopping")
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.natsAddr, "nats-addr", "127.0.0.1:4222", "where the embedded NATS server listens")
	f.StringVar(&o.proxyAddr, "proxy-addr", "127.0.0.1:8080", "where the mirroring proxy listens")
	f.StringVar(&o.live, "live", "", "base URL of your live version (default: the sample app, blue)")
	f.StringVar(&o.dark, "dark", "", "base URL of your dark version (default: the sample app, green)")
	f.StringVar(&o.storeDir, "store-dir", "", "keep JetStream's files here (default: a temporary directory)")
	return cmd
}
