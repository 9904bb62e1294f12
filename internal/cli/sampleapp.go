package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/darklaunch/darklaunch/internal/sampleapp"
)

func newSampleAppCmd(g *globals) *cobra.Command {
	var cfg sampleapp.Config
	cmd := &cobra.Command{
		Use:   "sample-app",
		Short: "Serve the blue/green sample app (a version with chosen latency and error rate)",
		Example: `  darklaunch sample-app --name green --listen 127.0.0.1:9092 --latency 80ms
  darklaunch run --dark http://127.0.0.1:9092 examples/mirroring/experiment-local.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			app, err := sampleapp.New(cfg)
			if err != nil {
				return withCode(ExitInvalid, err)
			}
			if err := app.Start(); err != nil {
				return withCode(ExitInvalid, err)
			}
			fmt.Fprintf(g.stdout, "sample app %s listening on %s (latency %s ± %s, error rate %g)\n", cfg.Name, app.URL(), cfg.Latency, cfg.Jitter, cfg.ErrorRate)
			<-cmd.Context().Done()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			return app.Stop(ctx)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Name, "name", "blue", "version name, in every answer")
	f.StringVar(&cfg.Addr, "listen", "127.0.0.1:8081", "address to listen on")
	f.DurationVar(&cfg.Latency, "latency", 5*time.Millisecond, "latency added to every answer")
	f.DurationVar(&cfg.Jitter, "jitter", 0, "latency varies by up to this much either way")
	f.Float64Var(&cfg.ErrorRate, "error-rate", 0, "share of requests answered with --error-code, 0 to 1")
	f.IntVar(&cfg.ErrorCode, "error-code", 500, "status of failed answers")
	f.BoolVar(&cfg.Hang, "hang", false, "never answer (a dark version that hangs)")
	return cmd
}
