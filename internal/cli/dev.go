package cli

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"

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
				cfg.NATS = g.connConfig("darklaunch-dev", "")
			}
			if cfg.Auth && g.server != "" {
				return withCode(ExitInvalid, fmt.Errorf("--auth configures the embedded NATS server; the one of --server has its own authorization (darklaunch nats-config)"))
			}
			if g.server == "" && !cfg.Auth && !loopback(cfg.NATSAddr) {
				return withCode(ExitInvalid, fmt.Errorf("--nats-addr %s is reachable from other hosts: an open NATS there would let anyone forge a verdict; add --auth (each service its own NATS user) or listen on 127.0.0.1", cfg.NATSAddr))
			}
			st, err := stack.Start(cmd.Context(), cfg)
			if err != nil {
				if authRefused(err) { // --server's NATS wants other credentials
					err = fmt.Errorf("%w (%s)", err, g.connectHint(err))
				}
				return withCode(ExitInvalid, err)
			}
			defer st.Close()
			access := "open: any client on this host may publish anything (add --auth for one NATS user per service)"
			as := "" // the Try lines' credentials
			if cfg.Auth {
				keys, dir, err := writePeopleKeys(st, cfg.StoreDir)
				if err != nil {
					return withCode(ExitInvalid, err)
				}
				if cfg.StoreDir == "" {
					defer os.RemoveAll(filepath.Dir(dir)) // the keys of a stack that is gone
				}
				access, as = keys, " --nkey "+filepath.Join(dir, bus.RoleOperator+".nk")
			}
			fmt.Fprintf(g.stdout, `darklaunch dev is up. Ctrl-C stops it.

  NATS          %s
  access        %s
  proxy         %s   (send requests with Host: customdomain.com)
  live version  %s
  dark version  %s

Try, in another terminal:
  nats%[6]s micro ls
  nats%[6]s sub 'darklaunch.events.>' --translate 'darklaunch decode'
  nats%[6]s req darklaunch.experiments.create "$(cat examples/mirroring/experiment-local.yaml)"
  darklaunch watch mirroring-local%[6]s
The proxy routes a host only while an experiment mirrors it; until then it answers 404.
`, bus.RedactURL(st.URL), access, st.ProxyURL, st.LiveURL, st.DarkURL, as)
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
	f.BoolVar(&cfg.Auth, "auth", false, "let in only darklaunch's NATS users: each service its own, allowed only what it owns; prints the people's keys")
	return cmd
}

// loopback tells whether addr listens on a loopback address only.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// writePeopleKeys writes the operator's and the viewer's nkey seeds for
// people to use, in dir/keys (a new temporary directory without dir), and
// says where; it returns what it says and the keys' directory.
func writePeopleKeys(st *stack.Stack, dir string) (string, string, error) {
	var err error
	if dir == "" {
		if dir, err = os.MkdirTemp("", "darklaunch-dev-"); err != nil {
			return "", "", err
		}
	}
	dir = filepath.Join(dir, "keys")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", err
	}
	var b strings.Builder
	b.WriteString("each service signs in as its own NATS user. People's keys:")
	for _, k := range st.Keys {
		if k.Role != bus.RoleOperator && k.Role != bus.RoleViewer {
			continue
		}
		path := filepath.Join(dir, k.Role+".nk")
		if err := os.WriteFile(path, append(k.Seed, '\n'), 0o600); err != nil {
			return "", "", err
		}
		fmt.Fprintf(&b, "\n                  %-8s %s   (darklaunch --nkey %s, nats --nkey %s)", k.Role, path, path, path)
	}
	return b.String(), dir, nil
}
