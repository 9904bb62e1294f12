package proxy

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"

	"github.com/darklaunch/darklaunch/services/router/mirroring"
)

// Flags of the proxy's TLS listener (environment DARKLAUNCH_PROXY_TLS_CERT,
// ..._KEY, ..._ADDR). Not --tls-cert: that one is the NATS client's.
const (
	flagTLSCert = "proxy-tls-cert"
	flagTLSKey  = "proxy-tls-key"
	flagTLSAddr = "proxy-tls-addr"
)

// DefaultTLSAddr is Config.TLSAddr's default.
const DefaultTLSAddr = "127.0.0.1:8443"

// tlsProblems checks the TLS settings: a certificate and its key, both or
// neither, each a readable file, the two a pair.
func (c Config) tlsProblems() []error {
	bad := func(field, flag, v, why string) error {
		return mirroring.Problem("Proxy.", field, v, fmt.Sprintf("--%s: %s", flag, why))
	}
	switch {
	case c.TLSCert == "" && c.TLSKey == "":
		return nil
	case c.TLSKey == "":
		return []error{bad("TLSKey", flagTLSKey, "", "missing: --"+flagTLSCert+" needs the key of its certificate (give both or neither)")}
	case c.TLSCert == "":
		return []error{bad("TLSCert", flagTLSCert, "", "missing: --"+flagTLSKey+" needs its certificate (give both or neither)")}
	}
	var errs []error
	for _, f := range []struct{ field, flag, path string }{{"TLSCert", flagTLSCert, c.TLSCert}, {"TLSKey", flagTLSKey, c.TLSKey}} {
		if _, err := os.ReadFile(f.path); err != nil {
			errs = append(errs, bad(f.field, f.flag, f.path, "cannot read the file: "+err.Error()))
		}
	}
	if len(errs) > 0 {
		return errs
	}
	if _, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey); err != nil {
		return []error{bad("TLSCert", flagTLSCert, c.TLSCert, fmt.Sprintf("not a PEM certificate whose key is --%s %s: %v", flagTLSKey, c.TLSKey, err))}
	}
	return nil
}

// listenTLS listens on TLSAddr when a certificate is configured.
func (p *Proxy) listenTLS() error {
	if p.cfg.TLSCert == "" {
		return nil
	}
	cert, err := tls.LoadX509KeyPair(p.cfg.TLSCert, p.cfg.TLSKey)
	if err != nil {
		return fmt.Errorf("proxy: --%s %s: %w", flagTLSCert, p.cfg.TLSCert, err)
	}
	// NextProtos are set by ServeTLS from the server's Protocols: h2 and
	// http/1.1.
	p.tlsConf = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if p.tlsLn, err = net.Listen("tcp", p.cfg.TLSAddr); err != nil {
		return fmt.Errorf("proxy (--%s): %w", flagTLSAddr, err)
	}
	p.tlsURL = "https://" + p.tlsLn.Addr().String()
	return nil
}

// TLSURL is where the proxy serves TLS ("https://127.0.0.1:8443"), or ""
// without a certificate.
func (p *Proxy) TLSURL() string { return p.tlsURL }

// serve serves srv on the proxy's listeners, each in its own goroutine,
// and returns how many it serves and where each one's end is reported.
func (p *Proxy) serve(srv *http.Server) (int, <-chan error) {
	served := make(chan error, 2)
	go func() { served <- srv.Serve(p.ln) }()
	if p.tlsLn == nil {
		return 1, served
	}
	go func() { served <- srv.ServeTLS(p.tlsLn, "", "") }()
	return 2, served
}

// closeTLS closes the TLS listener, if any.
func (p *Proxy) closeTLS() {
	if p.tlsLn != nil {
		p.tlsLn.Close()
	}
}
