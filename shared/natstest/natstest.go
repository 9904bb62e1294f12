// Package natstest starts a real nats-server with JetStream for tests: random
// loopback port, store in t.TempDir(), shut down by t.Cleanup.
package natstest

import (
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/darklaunch/darklaunch/shared/bus"
)

// Server is a test nats-server.
type Server struct {
	*bus.Embedded
	StoreDir string
	t        testing.TB
}

// Run starts a server and registers its shutdown.
func Run(t testing.TB) *Server {
	t.Helper()
	dir := t.TempDir()
	e, err := bus.StartEmbedded(bus.EmbeddedConfig{Addr: "127.0.0.1:-1", StoreDir: dir})
	if err != nil {
		t.Fatalf("start nats-server: %v", err)
	}
	s := &Server{Embedded: e, StoreDir: dir, t: t}
	t.Cleanup(func() { s.Embedded.Shutdown() })
	return s
}

// Restart stops the server and starts it again on the same port and store,
// as a NATS restart in production would.
func (s *Server) Restart() {
	s.t.Helper()
	addr := s.Server.Addr().String()
	s.Embedded.Shutdown()
	e, err := bus.StartEmbedded(bus.EmbeddedConfig{Addr: addr, StoreDir: s.StoreDir})
	if err != nil {
		s.t.Fatalf("restart nats-server: %v", err)
	}
	s.Embedded = e
}

// Conn connects to the server; the connection is closed by t.Cleanup.
func (s *Server) Conn(t testing.TB) *nats.Conn {
	t.Helper()
	nc, err := bus.Connect(bus.ConnConfig{URL: s.URL(), Name: t.Name()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}
