// Package testenv is darklaunch's one test kit: a real nats-server with
// JetStream (random loopback port, store in t.TempDir()), the bus as the
// services see it, running a service for the length of a test, waiting for
// a condition instead of sleeping, the seed's experiment document and
// builders of experiments in any stage.
package testenv

import (
	"context"
	"crypto/tls"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/darklaunch/darklaunch/shared/bus"
)

// NATS is a test nats-server, shut down by t.Cleanup.
type NATS struct {
	*bus.Embedded
	StoreDir string
	t        testing.TB
	tls      *tls.Config
	// addr is where a stopped server is to start again.
	addr string
}

// StartNATS starts a nats-server with JetStream on a free loopback port.
func StartNATS(t testing.TB) *NATS {
	t.Helper()
	return startNATS(t, nil)
}

func startNATS(t testing.TB, tlsConfig *tls.Config) *NATS {
	t.Helper()
	dir := t.TempDir()
	e, err := bus.StartEmbedded(bus.EmbeddedConfig{Addr: "127.0.0.1:-1", StoreDir: dir, TLS: tlsConfig})
	if err != nil {
		t.Fatalf("start nats-server: %v", err)
	}
	s := &NATS{Embedded: e, StoreDir: dir, t: t, tls: tlsConfig}
	t.Cleanup(func() { s.Embedded.Shutdown() })
	return s
}

// StartNATSWith starts a nats-server as StartNATS does, with its options
// changed by configure first: authorization, a larger max_payload. Its
// Conn connects without credentials, and Restart starts StartNATS's
// server again.
func StartNATSWith(t testing.TB, configure func(*server.Options)) *NATS {
	t.Helper()
	dir := t.TempDir()
	opts := &server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir, NoSigs: true, NoLog: true}
	configure(opts)
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("nats-server: %v", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(15 * time.Second) {
		ns.Shutdown()
		t.Fatal("nats-server did not start")
	}
	s := &NATS{Embedded: &bus.Embedded{Server: ns}, StoreDir: dir, t: t}
	t.Cleanup(func() { s.Embedded.Shutdown() })
	return s
}

// Restart stops the server and starts it again on the same port and store,
// as a NATS restart in production would.
func (s *NATS) Restart() {
	s.t.Helper()
	s.Stop()
	s.Start()
}

// Stop shuts the server down, as an outage of NATS would: the clients
// keep trying to reconnect until Start.
func (s *NATS) Stop() {
	s.addr = s.Server.Addr().String()
	s.Embedded.Shutdown()
}

// Start starts a stopped server again on its port and store.
func (s *NATS) Start() {
	s.t.Helper()
	e, err := bus.StartEmbedded(bus.EmbeddedConfig{Addr: s.addr, StoreDir: s.StoreDir, TLS: s.tls})
	if err != nil {
		s.t.Fatalf("restart nats-server: %v", err)
	}
	s.Embedded = e
}

// Conn is a new connection to the server, closed by t.Cleanup: each
// service under test gets its own, as it would in its own process.
func (s *NATS) Conn(t testing.TB) *nats.Conn {
	t.Helper()
	nc, err := bus.Connect(bus.ConnConfig{URL: s.URL(), Name: t.Name()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// Bus is a test's view of the bus: a server, a connection, and the streams
// and state bucket every service creates at start-up.
type Bus struct {
	*bus.Infra
	NATS *NATS
	NC   *nats.Conn
	// API calls the experiments API (a judge must be running).
	API *bus.Client
}

// NewBus starts a server and creates darklaunch's streams and bucket on it.
func NewBus(t testing.TB) *Bus {
	t.Helper()
	return NewBusOn(t, StartNATS(t))
}

// NewBusOn is NewBus on a server of the test's own (StartNATSWith).
func NewBusOn(t testing.TB, srv *NATS) *Bus {
	t.Helper()
	nc := srv.Conn(t)
	return &Bus{Infra: Infra(t, nc), NATS: srv, NC: nc, API: &bus.Client{NC: nc, Timeout: 5 * time.Second}}
}

// Infra creates darklaunch's streams and bucket through nc, as every
// service does at start-up, and returns them.
func Infra(t testing.TB, nc *nats.Conn) *bus.Infra {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	infra, err := bus.EnsureInfra(ctx, nc, bus.StreamLimits{})
	if err != nil {
		t.Fatal(err)
	}
	return infra
}
