package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/darklaunch/darklaunch/shared/bus"
)

func newSubmitCmd(g *globals) *cobra.Command {
	var out output
	cmd := &cobra.Command{
		Use:   "submit FILE|-",
		Short: "Create an experiment from a document (same as nats req darklaunch.experiments.create)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			doc, err := g.readDocument(args[0])
			if err != nil {
				return err
			}
			return g.withAPI(func(c *bus.Client) error {
				e, err := c.Create(cmd.Context(), doc)
				if err != nil {
					return withCode(ExitInvalid, err)
				}
				return out.print(g.stdout, e, func() {
					fmt.Fprintf(g.stdout, "experiment %s created (uid %s); follow it with: darklaunch watch %s\n", e.Key(), e.Metadata.UID, e.Key())
				})
			})
		},
	}
	out.add(cmd)
	return cmd
}
