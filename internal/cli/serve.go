package cli

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/darklaunch/darklaunch/services"
	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/retry"
	"github.com/darklaunch/darklaunch/shared/service"
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
		Use:   "serve " + strings.Join(services.Names(), "|"),
		Short: "Run one darklaunch service against a NATS server (what the Helm chart runs)",
		Long: `Run one service. Every flag can also be set as DARKLAUNCH_<FLAG> in the environment
(e.g. DARKLAUNCH_SERVER, DARKLAUNCH_HEALTH_ADDR). With --health-addr the service serves
/healthz (alive), /readyz (connected to NATS, and the service's watches and
consumer set up on the connection) and /metrics (Prometheus).`,
	}
	cmd.PersistentFlags().StringVar(&so.healthAddr, "health-addr", "", "serve /healthz, /readyz and /metrics here (e.g. :8081); empty: off")
	cmd.PersistentFlags().DurationVar(&so.connectWait, "connect-wait", time.Minute, "keep trying to reach NATS at start-up this long (a sidecar or NATS itself may start later); 0: try once")
	cmd.PersistentFlags().IntVar(&so.streamReplicas, "stream-replicas", 1, "replicas of darklaunch's JetStream streams and KV bucket, which the judge creates (1, 3 or 5 on a clustered NATS; the other services only use them)")

	for _, spec := range services.All() {
		cfg := spec.NewConfig()
		sub := &cobra.Command{
			Use:   spec.Name,
			Short: spec.Short,
			Args:  cobra.NoArgs,
			RunE:  func(cmd *cobra.Command, _ []string) error { return serve(cmd.Context(), g, &so, spec.Name, cfg) },
		}
		cfg.AddFlags(sub.Flags())
		cmd.AddCommand(sub)
	}
	return cmd
}

// serve connects, builds the service, serves health and metrics, and runs
// the service until ctx ends.
func serve(ctx context.Context, g *globals, so *serveOptions, name string, cfg service.Config) error {
	base, err := g.logger(slog.LevelInfo)
	if err != nil {
		return err
	}
	// The service adds its own name to its logs; serve's own lines and the
	// connection's carry it too.
	log := base.With("service", name)
	if so.streamReplicas < 1 || so.streamReplicas > 5 {
		return withCode(ExitInvalid, fmt.Errorf("--stream-replicas %d: want 1 to 5 (JetStream's limit)", so.streamReplicas))
	}
	nc, err := connectWithin(ctx, g, name, so.connectWait, log)
	if err != nil {
		return err
	}
	defer nc.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	svc, err := cfg.Build(service.Deps{NC: nc, Log: base, Registry: reg, Streams: so.streams(), Version: Version, Dial: g.dial(name, log)})
	if err != nil {
		return withCode(ExitInvalid, err)
	}
	if so.healthAddr != "" {
		stop, err := serveHealth(so.healthAddr, nc, svc, reg, log)
		if err != nil {
			return withCode(ExitInvalid, err)
		}
		defer stop()
	}
	log.Info("starting", "nats", bus.ConnectedURL(nc), "version", Version)
	if err := svc.Run(ctx); err != nil {
		return withCode(ExitInvalid, fmt.Errorf("%s: %w", name, err))
	}
	log.Info("stopped")
	return nil
}

// dial is a service's Deps.Dial: a connection as role, signed in with
// nkeyFile and otherwise as the service's own (server, TLS). Without
// nkeyFile, none, and the service uses its own connection; unless the
// service signs in with --nkey, as one of nats-config's roles, whose
// permissions are not role's.
func (g *globals) dial(service string, log *slog.Logger) func(role, nkeyFile string) (*nats.Conn, error) {
	return func(role, nkeyFile string) (*nats.Conn, error) {
		if nkeyFile == "" {
			if g.nkey != "" {
				return nil, fmt.Errorf("--nkey signs the %s in as its own role, and the %s role needs a key of its own", service, role)
			}
			return nil, nil
		}
		as := *g
		as.nkey = nkeyFile
		return as.connect("darklaunch-"+service+"-"+role, role, log)
	}
}

// connectWithin connects to NATS, trying again every second for up to wait:
// in a pod, NATS or the mesh sidecar may come up after the service, and a
// service that exits at once only gets restarted with a growing back-off.
func connectWithin(ctx context.Context, g *globals, service string, wait time.Duration, log *slog.Logger) (*nats.Conn, error) {
	deadline := time.Now().Add(wait)
	var last error
	// A Within of zero would mean forever: --connect-wait 0 is one try.
	nc, err := retry.Value(ctx, retry.Policy{First: time.Second, Max: time.Second, Within: max(wait, time.Nanosecond)}, func(context.Context) (*nats.Conn, error) {
		nc, err := g.connect("darklaunch-"+service, service, log)
		last = err
		return nc, err
	}, func(err error, _ time.Duration) {
		msg := "NATS not reachable yet; trying again"
		if authRefused(err) {
			// The server's credentials may be provisioned after the service.
			msg = "NATS refused the credentials; trying again"
		}
		log.Warn(msg, "err", err, "giveUpIn", time.Until(deadline).Round(time.Second))
	})
	if err != nil && ctx.Err() != nil {
		return nil, fmt.Errorf("%w while waiting for NATS (last: %v)", context.Cause(ctx), cmp.Or(last, err))
	}
	return nc, err
}

// serveHealth serves the probes and the metrics: /healthz says the process
// is alive, /readyz that it is connected to NATS and, for a service that
// can say (service.Readier), that what it watches and consumes is set up on
// the connection as it is now: not before the first watch, nor from a
// reconnect until the watches are set up again.
func serveHealth(addr string, nc *nats.Conn, svc service.Runner, reg *prometheus.Registry, log *slog.Logger) (func(), error) {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if st := nc.Status(); st != nats.CONNECTED {
			http.Error(w, "NATS connection is "+st.String(), http.StatusServiceUnavailable)
			return
		}
		if r, ok := svc.(service.Readier); ok {
			if err := r.Ready(); err != nil {
				http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
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
