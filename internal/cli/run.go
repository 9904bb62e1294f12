package cli

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

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
	// confidence, when --confidence was given, is spec.criteria.confidence.
	confidence    float64
	confidenceSet bool
}

func newRunCmd(g *globals) *cobra.Command {
	var o runOptions
	cmd := &cobra.Command{
		Use:   "run FILE|-",
		Short: "Run an experiment end to end and print its report (exit 0 pass, 1 fail, 3 inconclusive, 2 error)",
		Long: `Run an experiment end to end. Without --server, everything runs in this process: a
nats-server with JetStream, the sample app as live (blue) and dark (green) versions, and the
router, loadgen, collector and judge services. With --live/--dark your own versions replace
the sample app. With --server, the experiment is submitted to the darklaunch services
already running on that NATS.

Progress goes to stderr; the report (iter8ctl describe layout, or -o json|yaml) to stdout.
With --confidence (or spec.criteria.confidence) each objective is judged on its confidence
interval: satisfied, violated or inconclusive, and the verdict PASS, FAIL or INCONCLUSIVE, which
says how many more requests each inconclusive objective needs (docs/statistics.md).
Exit code: 0 the dark version passed, 1 it failed an objective, 3 inconclusive, 2 invalid input
or an error.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.confidenceSet = cmd.Flags().Changed("confidence")
			return runExperiment(cmd.Context(), g, &o, args[0])
		},
	}
	f := cmd.Flags()
	addVersionFlags(f, &o.live, &o.dark)
	f.StringVar(&o.proxyAddr, "proxy-addr", "127.0.0.1:0", "where the embedded mirroring proxy listens")
	f.DurationVar(&o.timeout, "timeout", 0, "give up after this long (default: the experiment's duration plus 3 minutes)")
	f.Float64Var(&o.confidence, "confidence", 0, "judge each objective by its confidence interval at this level, such as 0.95 (sets spec.criteria.confidence): PASS, FAIL or INCONCLUSIVE")
	f.BoolVar(&o.keep, "keep", false, "with --server: leave the experiment in place when interrupted (default: delete it)")
	o.out.add(cmd)
	return cmd
}

// addVersionFlags adds --live and --dark, the same for run and dev.
func addVersionFlags(f *pflag.FlagSet, live, dark *string) {
	f.StringVar(live, "live", "", "base URL of your live version (default: the sample app, blue)")
	f.StringVar(dark, "dark", "", "base URL of your dark version (default: the sample app, green)")
}

func runExperiment(ctx context.Context, g *globals, o *runOptions, path string) error {
	doc, exp, err := o.document(g, path)
	if err != nil {
		return err
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
	client, closeClient, err := o.client(ctx, g, log)
	if err != nil {
		return err
	}
	defer closeClient()

	created, err := client.Create(ctx, doc)
	if err != nil {
		return withCode(ExitInvalid, err)
	}
	fmt.Fprintf(g.stderr, "Experiment %s: %d iterations of %s\n", created.Key(), created.TotalIterations(), created.Interval())
	p := newProgress(g.stderr, true)
	final, err := client.Follow(ctx, created, bus.FollowOptions{OnUpdate: p.update})
	p.done()
	if err != nil {
		if g.server != "" && !o.keep && ctx.Err() != nil {
			deleteAbandoned(g, client, created)
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

// document reads and parses the experiment, with --live and --dark applied:
// a bad document is reported before anything starts.
func (o *runOptions) document(g *globals, path string) ([]byte, *experiment.Experiment, error) {
	doc, err := g.readDocument(path)
	if err != nil {
		return nil, nil, err
	}
	exp, err := experiment.Parse(doc)
	if err != nil {
		return nil, nil, withCode(ExitInvalid, err)
	}
	if o.live == "" && o.dark == "" && !o.confidenceSet {
		return doc, exp, nil
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
	}
	if o.confidenceSet && exp.Spec.Criteria != nil {
		c := o.confidence
		exp.Spec.Criteria.Confidence = &c
	}
	if errs := exp.Validate(); len(errs) > 0 {
		return nil, nil, withCode(ExitInvalid, &experiment.InvalidError{Name: exp.Key(), Errors: errs})
	}
	if doc, err = bus.Marshal(bus.ContentTypeJSON, exp); err != nil {
		return nil, nil, err
	}
	return doc, exp, nil
}

// client returns an API client of the services on --server or, without it,
// of a whole stack started in this process; closeClient closes what it
// opened.
func (o *runOptions) client(ctx context.Context, g *globals, log *slog.Logger) (_ *bus.Client, closeClient func(), _ error) {
	if g.server != "" {
		c, err := g.apiClient()
		if err != nil {
			return nil, nil, err
		}
		return c, c.NC.Close, nil
	}
	fmt.Fprintf(g.stderr, "Starting darklaunch (embedded NATS, sample app, router, loadgen, collector, judge)...\n")
	st, err := stack.Start(ctx, stack.Config{ProxyAddr: o.proxyAddr, Log: log})
	if err != nil {
		return nil, nil, withCode(ExitInvalid, err)
	}
	c, nc, err := st.Client()
	if err != nil {
		st.Close()
		return nil, nil, withCode(ExitInvalid, err)
	}
	live, dark := orStr(o.live, st.LiveURL+" (sample app blue)"), orStr(o.dark, st.DarkURL+" (sample app green)")
	fmt.Fprintf(g.stderr, "NATS %s · proxy %s · live %s · dark %s\n", bus.RedactURL(st.URL), st.ProxyURL, live, dark)
	return c, func() { nc.Close(); st.Close() }, nil
}

// deleteAbandoned deletes the experiment run was following on --server when
// it was interrupted or timed out, unless --keep: nobody is left to read its
// report.
func deleteAbandoned(g *globals, c *bus.Client, e *experiment.Experiment) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Delete(ctx, bus.Ref{Namespace: e.Metadata.Namespace, Name: e.Metadata.Name}); err == nil {
		fmt.Fprintf(g.stderr, "deleted experiment %s\n", e.Key())
	}
}

func orStr(s, def string) string {
	if s != "" {
		return s
	}
	return def
}
