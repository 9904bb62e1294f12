package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/darklaunch/darklaunch/internal/report"
	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

// The commands on one experiment by name: get, describe, delete and watch.

func newGetCmd(g *globals) *cobra.Command {
	return g.nameCmd("get NAME", "Show one experiment (NAME is namespace/name or name)", (*bus.Client).Get, &output{}, func(w io.Writer, e *experiment.Experiment) {
		f := report.NewWatchFormat(e)
		fmt.Fprintln(w, f.Header())
		fmt.Fprintln(w, f.Line(e))
	})
}

func newDescribeCmd(g *globals) *cobra.Command {
	return g.nameCmd("describe NAME", "Describe an experiment in the iter8ctl describe layout", (*bus.Client).Get, nil, report.Describe)
}

func newDeleteCmd(g *globals) *cobra.Command {
	return g.nameCmd("delete NAME", "Delete an experiment: stops it and removes the mirroring it set up", (*bus.Client).Delete, &output{}, func(w io.Writer, e *experiment.Experiment) {
		fmt.Fprintf(w, "experiment %s deleted\n", e.Key())
	})
}

func newWatchCmd(g *globals) *cobra.Command {
	var events bool
	cmd := &cobra.Command{
		Use:   "watch NAME",
		Short: "Follow an experiment until it ends, one line per update (exit 0 pass, 1 fail, 3 inconclusive)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var opts bus.FollowOptions
			if events {
				// With OnEvent, Follow goes on to the last event: the
				// verdict, completed, loadgen's final report.
				opts.OnEvent = func(ev *bus.Event) {
					b, err := bus.Marshal(bus.ContentTypeJSON, ev)
					if err != nil {
						fmt.Fprintf(g.stderr, "darklaunch: %s event not printable as JSON: %v\n", ev.Type, err)
						return
					}
					fmt.Fprintf(g.stdout, "%s\n", b)
				}
			} else {
				opts.OnUpdate = newProgress(g.stdout, false).update
			}
			return g.byName(cmd.Context(), args[0], (*bus.Client).Get, func(c *bus.Client, e *experiment.Experiment) error {
				final, err := c.Follow(cmd.Context(), e, opts)
				if err != nil {
					return withCode(ExitInvalid, err)
				}
				return verdictExit(final)
			})
		},
	}
	cmd.Flags().BoolVar(&events, "events", false, "print every event as a JSON line instead of progress lines")
	return cmd
}

// nameOp is what a command does to the experiment it names: Get or Delete.
type nameOp func(*bus.Client, context.Context, bus.Ref) (*experiment.Experiment, error)

// nameCmd builds a command that runs op on the experiment NAME names and
// prints the result with show. With out, the command has the -o flag, and
// prints JSON or YAML when it says so; describe has none and passes nil.
func (g *globals) nameCmd(use, short string, op nameOp, out *output, show func(io.Writer, *experiment.Experiment)) *cobra.Command {
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ExactArgs(1),
	}
	if out != nil {
		out.add(cmd)
	} else {
		out = &output{format: "text"}
	}
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		return g.byName(cmd.Context(), args[0], op, func(_ *bus.Client, e *experiment.Experiment) error {
			return out.print(g.stdout, e, func() { show(g.stdout, e) })
		})
	}
	return cmd
}

// byName runs op on the experiment NAME names, then fn with its result and
// the client, still connected.
func (g *globals) byName(ctx context.Context, name string, op nameOp, fn func(*bus.Client, *experiment.Experiment) error) error {
	ref, err := bus.ParseRef("", []byte(name))
	if err != nil {
		return withCode(ExitInvalid, err)
	}
	return g.withAPI(func(c *bus.Client) error {
		e, err := op(c, ctx, ref)
		if err != nil {
			return withCode(ExitInvalid, err)
		}
		return fn(c, e)
	})
}
