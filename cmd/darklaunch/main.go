// Command darklaunch runs dark launches: it mirrors a share of live traffic
// to a dark version of a service, measures it, and judges it against
// objectives. One binary holds the CLI and every service; see
// `darklaunch --help`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/darklaunch/darklaunch/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
