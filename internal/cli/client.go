package cli

import (
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/darklaunch/darklaunch/shared/bus"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

// What the clients of the experiments API (submit, get, list, delete,
// describe, watch, run --server) share.

// apiClient connects to NATS and returns an experiments API client; the
// caller closes its connection.
func (g *globals) apiClient() (*bus.Client, error) {
	log, err := g.logger(slog.LevelWarn)
	if err != nil {
		return nil, err
	}
	nc, err := g.connect("darklaunch-cli", "", log)
	if err != nil {
		return nil, err
	}
	return &bus.Client{NC: nc}, nil
}

// withAPI runs fn with an experiments API client on a connection of its own.
func (g *globals) withAPI(fn func(*bus.Client) error) error {
	c, err := g.apiClient()
	if err != nil {
		return err
	}
	defer c.NC.Close()
	return fn(c)
}

// readDocument reads FILE, or stdin for "-".
func (g *globals) readDocument(path string) ([]byte, error) {
	var (
		b   []byte
		err error
	)
	if path == "-" {
		b, err = io.ReadAll(io.LimitReader(g.stdin, experiment.MaxDocumentBytes+1))
	} else {
		var f *os.File
		if f, err = os.Open(path); err == nil {
			b, err = io.ReadAll(io.LimitReader(f, experiment.MaxDocumentBytes+1))
			f.Close()
		}
	}
	if err != nil {
		return nil, withCode(ExitInvalid, fmt.Errorf("read experiment: %w", err))
	}
	return b, nil
}
