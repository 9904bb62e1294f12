package cli

import (
	"fmt"
	"sort"

	"github.com/spf13/cobra"

	"github.com/darklaunch/darklaunch/internal/report"
	"github.com/darklaunch/darklaunch/shared/bus"
)

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
			return g.withAPI(func(c *bus.Client) error {
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
			})
		},
	}
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "", "only this namespace")
	out.add(cmd)
	return cmd
}
