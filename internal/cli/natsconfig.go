package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/darklaunch/darklaunch/shared/bus"
)

func newNATSConfigCmd(g *globals) *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "nats-config",
		Short: "Make one NATS user per service and two for people, and print their nats-server authorization",
		Long: `Make an nkey for each of darklaunch's roles — the router, loadgen, collector and judge, the
judge's API (api: it answers requests only in people's inboxes), and two for people: operator (create, get, list, delete, read events) and viewer (get, list, read
events) — as seed files <role>.nk in --dir (kept when they exist, so running it again changes
nothing), and print the nats-server configuration block that gives each its permissions: each
service may publish only what it owns (docs/protocol.md), so no client can forge a metrics event
or write the state.

Paste the block into the server's configuration (or include it), then give each service its file:
  darklaunch serve router --nkey DIR/router.nk   (the Helm chart: nats.nkeys)
  darklaunch serve judge --nkey DIR/judge.nk --api-nkey DIR/api.nk
and people theirs:
  darklaunch watch NAME --nkey DIR/operator.nk
  nats --nkey DIR/viewer.nk sub 'darklaunch.events.>'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			keys, made, err := roleKeys(dir)
			if err != nil {
				return withCode(ExitInvalid, err)
			}
			block, err := bus.AuthorizationConfig(keys)
			if err != nil {
				return err
			}
			fmt.Fprint(g.stdout, block)
			for _, k := range keys {
				state := "kept"
				if made[k.Role] {
					state = "made"
				}
				fmt.Fprintf(g.stderr, "%s %s\n", state, filepath.Join(dir, k.Role+".nk"))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "darklaunch-nats", "where the roles' nkey seed files are (made if missing)")
	return cmd
}

// roleKeys reads each role's seed file in dir, making the missing ones.
func roleKeys(dir string) (keys []bus.RoleKey, made map[string]bool, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("--dir %s: %w", dir, err)
	}
	fresh, err := bus.NewKeys()
	if err != nil {
		return nil, nil, err
	}
	made = map[string]bool{}
	for _, k := range fresh {
		path := filepath.Join(dir, k.Role+".nk")
		seed, err := os.ReadFile(path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if err := os.WriteFile(path, append(k.Seed, '\n'), 0o600); err != nil {
				return nil, nil, err
			}
			made[k.Role] = true
			keys = append(keys, k)
			continue
		case err != nil:
			return nil, nil, err
		}
		kept, err := bus.KeyFromSeed(k.Role, trimSpace(seed))
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", path, err)
		}
		keys = append(keys, kept)
	}
	return keys, made, nil
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return b
}
