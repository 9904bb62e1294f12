package cli

import (
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/darklaunch/darklaunch/internal/stack"
	"github.com/darklaunch/darklaunch/shared/bus"
)

func newDevCmd(g *globals) *cobra.Command {
	var cfg stack.Config // the flags set the embedded stack's fields directly
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run the whole stack embedded and keep it up, for use with the nats CLI",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger(slog.LevelInfo)
			if err != nil {
				return err
			}
			cfg.Log = log
			if g.server != "" {
				// An existing NATS instead of the embedded one; the
				// environment variable is easy to have set and forget.
				if cmd.Flags().Changed("nats-addr") || cmd.Flags().Changed("store-dir") {
					return withCode(ExitInvalid, fmt.Errorf("--server %s (or DARKLAUNCH_SERVER) uses an existing NATS, --nats-addr and --store-dir configure the embedded one: give one or the other", bus.RedactURL(g.server)))
				}
				fmt.Fprintf(g.stderr, "Using the NATS server at %s (--server or DARKLAUNCH_SERVER), not an embedded one.\n", bus.RedactURL(g.server))
				cfg.NATS = g.connConfig("darklaunch-dev")
			}
			st, err := stack.Start(cmd.Context(), cfg)
			if err != nil {
				if authRefused(err) { // --server's NATS wants other credentials
					err = fmt.Errorf("%w (%s)", err, g.connectHint(err))
				}
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
`, bus.RedactURL(st.URL), st.ProxyURL, st.LiveURL, st.DarkURL)
			<-cmd.Context().Done()
			fmt.Fprintln(g.stderr, "stopping")
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.NATSAddr, "nats-addr", "127.0.0.1:4222", "where the embedded NATS server listens")
	f.StringVar(&cfg.ProxyAddr, "proxy-addr", "127.0.0.1:8080", "where the mirroring proxy listens")
	addVersionFlags(f, &cfg.LiveURL, &cfg.DarkURL)
	f.StringVar(&cfg.StoreDir, "store-dir", "", "keep JetStream's files here (default: a temporary directory)")
	return cmd
}
