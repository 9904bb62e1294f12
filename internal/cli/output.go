package cli

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/darklaunch/darklaunch/shared/bus"
)

// output is the -o flag of the commands that print experiments.
type output struct{ format string }

// add gives cmd the -o flag (default text) and checks its value before cmd
// runs, so that a bad format is reported before anything is read or started.
func (o *output) add(cmd *cobra.Command) {
	cmd.Flags().StringVarP(&o.format, "output", "o", "text", "output format: text, json or yaml")
	cmd.PreRunE = func(*cobra.Command, []string) error { return o.check() }
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
