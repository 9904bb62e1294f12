package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/darklaunch/darklaunch/internal/report"
	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

// output is the -o flag of the commands that print experiments.
type output struct{ format string }

func (o *output) add(cmd *cobra.Command, def string) {
	cmd.Flags().StringVarP(&o.format, "output", "o", def, "output format: text, json or yaml")
}

func (o *output) check() error {
	switch o.format {
	case "text", "json", "yaml":
		return nil
	}
	return withCode(ExitInvalid, fmt.Errorf("--output %q: want text, json or yaml", o.format))
}

// print writes v as JSON or YAML, or calls text for the text format.
func (o *output) print(w io.Writer, v any, text func()) error {
	switch o.format {
	case "json":
		b, err := bus.Marshal(bus.ContentTypeJSON, v)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	case "yaml":
		b, err := bus.Marshal(bus.ContentTypeYAML, v)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	text()
	return nil
}

// apiClient connects to NATS and returns an experiments API client.
func (g *globals) apiClient() (*bus.Client, *nats.Conn, error) {
	log, err := g.logger(slog.LevelWarn)
	if err != nil {
		return nil, nil, err
	}
	nc, err := g.connect("darklaunch-cli", log)
	if err != nil {
		return nil, nil, err
	}
	return &bus.Client{NC: nc}, nc, nil
}

func parseRef(arg string) (bus.Ref, error) {
	ref, err := bus.ParseRef("", []byte(arg))
	if err != nil {
		return ref, withCode(ExitInvalid, err)
	}
	return ref, nil
}

// byName runs op (Get or Delete) on the experiment NAME names.
func (g *globals) byName(ctx context.Context, name string, op func(*bus.Client, context.Context, bus.Ref) (*experiment.Experiment, error)) (*experiment.Experiment, error) {
	ref, err := parseRef(name)
	if err != nil {
		return nil, err
	}
	c, nc, err := g.apiClient()
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	e, err := op(c, ctx, ref)
	if err != nil {
		return nil, withCode(ExitInvalid, err)
	}
	return e, nil
}

// readDocument reads FILE, or stdin for "-".
func (g *globals) readDocument(path string) ([]byte, error) {
	var (
		b   []byte
		err error
	)
	if path == "-" {
		b, err = io.ReadAll(io.LimitReader(g.stdin, experiment.MaxDocumentBytes+1))
	} else {
		var f *os.File
		if f, err = os.Open(path); err == nil {
			b, err = io.ReadAll(io.LimitReader(f, experiment.MaxDocumentBytes+1))
			f.Close()
		}
	}
	if err != nil {
		return nil, withCode(ExitInvalid, fmt.Errorf("read experiment: %w", err))
	}
	return b, nil
}

func newSubmitCmd(g *globals) *cobra.Command {
	var out output
	cmd := &cobra.Command{
		Use:   "submit FILE|-",
		Short: "Create an experiment from a document (same as nats req darklaunch.experiments.create)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := out.check(); err != nil {
				return err
			}
			doc, err := g.readDocument(args[0])
			if err != nil {
				return err
			}
			c, nc, err := g.apiClient()
			if err != nil {
				return err
			}
			defer nc.Close()
			e, err := c.Create(cmd.Context(), doc)
			if err != nil {
				return withCode(ExitInvalid, err)
			}
			return out.print(g.stdout, e, func() {
				fmt.Fprintf(g.stdout, "experiment %s created (uid %s); follow it with: darklaunch watch %s\n", e.Key(), e.Metadata.UID, e.Key())
			})
		},
	}
	out.add(cmd, "text")
	return cmd
}

func newGetCmd(g *globals) *cobra.Command {
	var out output
	cmd := &cobra.Command{
		Use:   "get NAME",
		Short: "Show one experiment (NAME is namespace/name or name)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := out.check(); err != nil {
				return err
			}
			e, err := g.byName(cmd.Context(), args[0], (*bus.Client).Get)
			if err != nil {
				return err
			}
			return out.print(g.stdout, e, func() {
				f := report.NewWatchFormat(e)
				fmt.Fprintln(g.stdout, f.Header())
				fmt.Fprintln(g.stdout, f.Line(e))
			})
		},
	}
	out.add(cmd, "text")
	return cmd
}

func newListCmd(g *globals) *cobra.Command {
	var (
		out       output
		namespace string
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List experiments",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := out.check(); err != nil {
				return err
			}
			c, nc, err := g.apiClient()
			if err != nil {
				return err
			}
			defer nc.Close()
			items, err := c.List(cmd.Context(), namespace)
			if err != nil {
				return withCode(ExitInvalid, err)
			}
			sort.Slice(items, func(i, j int) bool { return items[i].Key() < items[j].Key() })
			return out.print(g.stdout, bus.ExperimentList{Items: items}, func() {
				if len(items) == 0 {
					fmt.Fprintln(g.stdout, "No experiments.")
					return
				}
				f := report.NewWatchFormat(items...)
				fmt.Fprintln(g.stdout, f.Header())
				for _, e := range items {
					fmt.Fprintln(g.stdout, f.Line(e))
				}
			})
		},
	}
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "", "only this namespace")
	out.add(cmd, "text")
	return cmd
}

func newDeleteCmd(g *globals) *cobra.Command {
	var out output
	cmd := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete an experiment: stops it and removes the mirroring it set up",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := out.check(); err != nil {
				return err
			}
			e, err := g.byName(cmd.Context(), args[0], (*bus.Client).Delete)
			if err != nil {
				return err
			}
			return out.print(g.stdout, e, func() { fmt.Fprintf(g.stdout, "experiment %s deleted\n", e.Key()) })
		},
	}
	out.add(cmd, "text")
	return cmd
}

func newDescribeCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "describe NAME",
		Short: "Describe an experiment in the iter8ctl describe layout",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := g.byName(cmd.Context(), args[0], (*bus.Client).Get)
			if err != nil {
				return err
			}
			report.Describe(g.stdout, e)
			return nil
		},
	}
}

func newWatchCmd(g *globals) *cobra.Command {
	var events bool
	cmd := &cobra.Command{
		Use:   "watch NAME",
		Short: "Follow an experiment until it ends, one line per update (exit 0 pass, 1 fail)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref, err := parseRef(args[0])
			if err != nil {
				return err
			}
			c, nc, err := g.apiClient()
			if err != nil {
				return err
			}
			defer nc.Close()
			e, err := c.Get(cmd.Context(), ref)
			if err != nil {
				return withCode(ExitInvalid, err)
			}
			var onEvent func(*bus.Event)
			if events {
				onEvent = func(ev *bus.Event) {
					b, _ := bus.Marshal(bus.ContentTypeJSON, ev)
					fmt.Fprintf(g.stdout, "%s\n", b)
				}
			}
			p := newProgress(g.stdout, false)
			if !events {
				p.update(e)
			}
			final, err := follow(cmd.Context(), nc, c, e, func(e *experiment.Experiment) {
				if !events {
					p.update(e)
				}
			}, onEvent)
			if err != nil {
				return withCode(ExitInvalid, err)
			}
			return verdictExit(final)
		},
	}
	cmd.Flags().BoolVar(&events, "events", false, "print every event as a JSON line instead of progress lines")
	return cmd
}

// verdictExit maps a finished experiment to the exit code: 0 passed,
// 1 failed an objective, 2 could not be judged.
func verdictExit(e *experiment.Experiment) error {
	switch {
	case e.Status.Failed():
		return withCode(ExitInvalid, fmt.Errorf("experiment %s failed: %s", e.Key(), e.Status.Condition(experiment.ConditionFailed).Message))
	case e.Passed():
		return nil
	default:
		return withCode(ExitFail, errSilent)
	}
}

// follow reads the experiment's events from the stream (from its creation
// on) and calls onUpdate with the experiment's state each time it changes,
// until it is Completed; it returns the final state. The API is polled too,
// every few seconds, so a missed event cannot stall it. With onEvent, the
// events are followed to the last one: the judge stores the final state
// before it publishes the verdict, completed or failed event, so follow
// waits for that event (at most finalEventWait) before it returns, and
// replays the events of an experiment that has already finished.
func follow(ctx context.Context, nc *nats.Conn, c *bus.Client, e *experiment.Experiment, onUpdate func(*experiment.Experiment), onEvent func(*bus.Event)) (*experiment.Experiment, error) {
	if e.Status.Terminal() && onEvent == nil {
		return e, nil
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	start := time.Now().Add(-time.Hour)
	if t := e.Metadata.CreationTimestamp; t != nil {
		start = t.Add(-time.Second)
	}
	ref := bus.Ref{Namespace: e.Metadata.Namespace, Name: e.Metadata.Name}
	cons, err := js.OrderedConsumer(ctx, bus.StreamEvents, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{bus.EventsFilter(ref.Namespace, ref.Name)},
		DeliverPolicy:  jetstream.DeliverByStartTimePolicy,
		OptStartTime:   &start,
	})
	if err != nil {
		return nil, fmt.Errorf("follow the events of %s: %w", ref, err)
	}
	evs := make(chan *bus.Event, 64)
	cc, err := cons.Consume(func(m jetstream.Msg) {
		var ev bus.Event
		if bus.Unmarshal(m.Headers().Get(bus.HeaderContentType), m.Data(), &ev) == nil && ev.UID == e.Metadata.UID {
			select {
			case evs <- &ev:
			case <-ctx.Done():
			}
		}
	})
	if err != nil {
		return nil, err
	}
	defer cc.Stop()

	last := e
	refresh := func() (*experiment.Experiment, error) {
		cur, err := c.Get(ctx, ref)
		if err != nil {
			return nil, err
		}
		if cur.Metadata.UID != e.Metadata.UID {
			return nil, fmt.Errorf("experiment %s was replaced by a new run (uid %s)", ref, cur.Metadata.UID)
		}
		if cur.Status.Stage != last.Status.Stage || cur.Status.CompletedIterations != last.Status.CompletedIterations || cur.Status.Message != last.Status.Message {
			onUpdate(cur)
		}
		last = cur
		return cur, nil
	}
	tick := time.NewTicker(3 * time.Second)
	defer tick.Stop()
	var final *experiment.Experiment // set once the stored state is terminal
	var drain <-chan time.Time       // then, the wait for the last event
	ended := false                   // the completed or failed event was seen
	finish := func(cur *experiment.Experiment) {
		final = cur
		drain = time.After(finalEventWait)
	}
	if e.Status.Terminal() {
		finish(e)
	}
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-drain:
			return final, nil
		case ev := <-evs:
			if onEvent != nil {
				onEvent(ev)
			}
			if final != nil && ended {
				// After the last judge event, loadgen's final report may
				// still come: wait until the stream is quiet a moment.
				drain = time.After(quietAfterEnd)
				continue
			}
			switch ev.Type {
			case bus.EventDeleted:
				return nil, fmt.Errorf("experiment %s was deleted", ref)
			case bus.EventCompleted, bus.EventFailed:
				ended = true
				if final != nil {
					drain = time.After(quietAfterEnd)
				}
			case bus.EventLoad, bus.EventMetrics:
				continue
			}
		case <-tick.C:
		}
		if final != nil {
			continue
		}
		cur, err := refresh()
		if err != nil {
			return nil, err
		}
		if cur.Status.Terminal() {
			if onEvent == nil {
				return cur, nil
			}
			finish(cur)
			if ended {
				drain = time.After(quietAfterEnd)
			}
		}
	}
}

// finalEventWait bounds how long follow waits for the completed or failed
// event once the stored state is final (the judge publishes it right after
// storing); quietAfterEnd is how long the stream must then stay quiet
// (loadgen's final report can come after the judge's last event).
const (
	finalEventWait = 5 * time.Second
	quietAfterEnd  = 750 * time.Millisecond
)
