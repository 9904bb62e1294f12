package bus

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// EmbeddedConfig configures a nats-server run inside the darklaunch process.
type EmbeddedConfig struct {
	// Addr is host:port to listen on; port -1 or 0 picks a free one.
	// Default 127.0.0.1:-1.
	Addr string
	// StoreDir holds JetStream's files. Empty: a new temporary directory,
	// removed by Shutdown.
	StoreDir string
	// Debug turns on the server's own logging to stderr.
	Debug bool
	// TLS, when set, makes the server accept only TLS connections; with
	// ClientCAs set it also requires and verifies a client certificate.
	TLS *tls.Config
	// Users, when set, are the only users the server lets in, each with its
	// own permissions (Users(NewKeys())).
	Users []*server.NkeyUser
}

// Embedded is a running in-process nats-server with JetStream.
type Embedded struct {
	Server  *server.Server
	tempDir string
}

// StartEmbedded starts a nats-server with JetStream, listening on loopback
// unless told otherwise, and waits until it accepts connections.
func StartEmbedded(cfg EmbeddedConfig) (*Embedded, error) {
	addr := cfg.Addr
	if addr == "" {
		addr = "127.0.0.1:-1"
	}
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("nats address %q: %w", addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("nats address %q: bad port", addr)
	}
	if port == 0 {
		port = -1
	}
	// Check what nats-server would otherwise only report in its log while
	// the caller waits: a busy port, and a store directory that cannot be.
	if port != -1 {
		ln, err := net.Listen("tcp", net.JoinHostPort(host, portStr))
		if err != nil {
			return nil, fmt.Errorf("nats address %s: %w", addr, err)
		}
		ln.Close()
	}
	e := &Embedded{}
	dir := cfg.StoreDir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "darklaunch-nats-"); err != nil {
			return nil, err
		}
		e.tempDir = dir
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("JetStream store directory: %w", err)
	}
	opts := &server.Options{
		ServerName: "darklaunch-embedded",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   dir,
		NoSigs:     true,
		NoLog:      !cfg.Debug,
		MaxPayload: 8 << 20,
	}
	opts.Nkeys = cfg.Users
	if cfg.TLS != nil {
		opts.TLSConfig = cfg.TLS
		opts.TLSVerify = cfg.TLS.ClientCAs != nil
		opts.TLSTimeout = 2 // seconds, nats-server's default is 0.5: CI machines are slow
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		e.cleanup()
		return nil, fmt.Errorf("nats-server: %w", err)
	}
	if cfg.Debug {
		ns.ConfigureLogger()
	}
	go ns.Start()
	if !ns.ReadyForConnections(15 * time.Second) {
		ns.Shutdown()
		e.cleanup()
		return nil, fmt.Errorf("nats-server did not start listening on %s (is the port in use?)", addr)
	}
	e.Server = ns
	return e, nil
}

// URL is the client URL of the server.
func (e *Embedded) URL() string { return e.Server.ClientURL() }

// Shutdown stops the server and removes its temporary store.
func (e *Embedded) Shutdown() {
	e.Server.Shutdown()
	e.Server.WaitForShutdown()
	e.cleanup()
}

func (e *Embedded) cleanup() {
	if e.tempDir != "" {
		os.RemoveAll(e.tempDir)
	}
}
