package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/darklaunch/darklaunch/services/collector"
	"github.com/darklaunch/darklaunch/services/judge"
	"github.com/darklaunch/darklaunch/services/loadgen"
	"github.com/darklaunch/darklaunch/services/router"
	"github.com/darklaunch/darklaunch/shared/bus"
)

// serveOptions are the flags every service has.
type serveOptions struct {
	healthAddr     string
	connectWait    time.Duration
	streamReplicas int
}

// streams are the stream and bucket limits every service passes to
// bus.EnsureInfra: they must agree, or each start-up would change them back.
func (so *serveOptions) streams() bus.StreamLimits {
	return bus.StreamLimits{Replicas: so.streamReplicas}
}

func newServeCmd(g *globals) *cobra.Command {
	var so serveOptions
	cmd := &cobra.Command{
		Use:   "serve router|loadgen|collector|judge",
		Short: "Run one darklaunch service against a NATS server (what the Helm chart runs)",
		Long: `Run one service. Every flag can also be set as DARKLAUNCH_<FLAG> in the environment
(e.g. DARKLAUNCH_SERVER, DARKLAUNCH_HEALTH_ADDR). With --health-addr the service serves
/healthz (alive), /readyz (connected to NATS) and /metrics (Prometheus).`,
	}
	cmd.PersistentFlags().StringVar(&so.healthAddr, "health-addr", "", "serve /healthz, /readyz and /metrics here (e.g. :8081); empty: off")
	cmd.PersistentFlags().DurationVar(&so.connectWait, "connect-wait", time.Minute, "keep trying to reach NATS at start-up this long (a sidecar or NATS itself may start later); 0: try once")
	cmd.PersistentFlags().IntVar(&so.streamReplicas, "stream-replicas", 1, "replicas of darklaunch's JetStream streams and KV bucket (1, 3 or 5 on a clustered NATS; every service must be given the same)")

	var rc router.Config
	r := &cobra.Command{
		Use:   "router",
		Short: "Set up mirroring for experiments (local mirroring proxy)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return serve(cmd.Context(), g, &so, "router", func(nc *nats.Conn, log *slog.Logger, reg *prometheus.Registry) (runner, error) {
				rc.Registry, rc.Streams = reg, so.streams()
				return router.New(rc, nc, log)
			})
		},
	}
	rc.AddFlags(r.Flags())

	var lc loadgen.Config
	l := &cobra.Command{
		Use:   "loadgen",
		Short: "Send open-loop traffic to running experiments",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return serve(cmd.Context(), g, &so, "loadgen", func(nc *nats.Conn, log *slog.Logger, reg *prometheus.Registry) (runner, error) {
				lc.Registry, lc.Streams = reg, so.streams()
				return loadgen.New(lc, nc, log)
			})
		},
	}
	lc.AddFlags(l.Flags())

	var cc collector.Config
	c := &cobra.Command{
		Use:   "collector",
		Short: "Publish a metrics snapshot of every version each interval",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return serve(cmd.Context(), g, &so, "collector", func(nc *nats.Conn, log *slog.Logger, reg *prometheus.Registry) (runner, error) {
				cc.Registry, cc.Streams = reg, so.streams()
				return collector.New(cc, nc, log)
			})
		},
	}
	cc.AddFlags(c.Flags())

	var jc judge.Config
	j := &cobra.Command{
		Use:   "judge",
		Short: "Serve the experiments API, keep the state, evaluate objectives, emit the verdict",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return serve(cmd.Context(), g, &so, "judge", func(nc *nats.Conn, log *slog.Logger, reg *prometheus.Registry) (runner, error) {
				jc.Version, jc.Registry, jc.Streams = Version, reg, so.streams()
				return judge.New(jc, nc, log)
			})
		},
	}
	jf := j.Flags()
	jf.DurationVar(&jc.InitTimeout, "init-timeout", judge.DefaultInitTimeout, "fail an experiment whose mirroring is not set up within this")
	jf.DurationVar(&jc.MetricsTimeout, "metrics-timeout", judge.DefaultMetricsTimeout, "fail a running experiment that gets no metrics for this long past an iteration's end")

	cmd.AddCommand(r, l, c, j)
	return cmd
}

type runner interface {
	Run(ctx context.Context) error
}

// serve connects, builds the service, serves health and metrics, and runs
// the service until ctx ends.
func serve(ctx context.Context, g *globals, so *serveOptions, name string, build func(*nats.Conn, *slog.Logger, *prometheus.Registry) (runner, error)) error {
	log, err := g.logger(slog.LevelInfo)
	if err != nil {
		return err
	}
	log = log.With("service", name)
	if so.streamReplicas < 1 || so.streamReplicas > 5 {
		return withCode(ExitInvalid, fmt.Errorf("--stream-replicas %d: want 1 to 5 (JetStream's limit)", so.streamReplicas))
	}
	nc, err := connectWithin(ctx, g, "darklaunch-"+name, so.connectWait, log)
	if err != nil {
		return err
	}
	defer nc.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	svc, err := build(nc, log, reg)
	if err != nil {
		return withCode(ExitInvalid, err)
	}
	if so.healthAddr != "" {
		stop, err := serveHealth(so.healthAddr, nc, reg, log)
		if err != nil {
			return withCode(ExitInvalid, err)
		}
		defer stop()
	}
	log.Info("starting", "nats", nc.ConnectedUrlRedacted(), "version", Version)
	if err := svc.Run(ctx); err != nil {
		return withCode(ExitInvalid, fmt.Errorf("%s: %w", name, err))
	}
	log.Info("stopped")
	return nil
}

// connectWithin connects to NATS, trying again every second for up to wait:
// in a pod, NATS or the mesh sidecar may come up after the service, and a
// service that exits at once only gets restarted with a growing back-off.
func connectWithin(ctx context.Context, g *globals, name string, wait time.Duration, log *slog.Logger) (*nats.Conn, error) {
	deadline := time.Now().Add(wait)
	for {
		nc, err := g.connect(name, log)
		if err == nil {
			return nc, nil
		}
		if !time.Now().Add(time.Second).Before(deadline) {
			return nil, err
		}
		log.Warn("NATS not reachable yet; trying again", "err", err, "giveUpIn", time.Until(deadline).Round(time.Second))
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w while waiting for NATS (last: %v)", context.Cause(ctx), err)
		case <-time.After(time.Second):
		}
	}
}

// serveHealth serves the probes and the metrics: /healthz says the process
// is alive, /readyz that it is connected to NATS.
func serveHealth(addr string, nc *nats.Conn, reg *prometheus.Registry, log *slog.Logger) (func(), error) {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if st := nc.Status(); st != nats.CONNECTED {
			http.Error(w, "NATS connection is "+st.String(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--health-addr %s: %w", addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("health server", "err", err)
		}
	}()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}, nil
}
