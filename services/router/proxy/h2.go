package proxy

import (
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// The protocol a request takes to the versions follows the one it came in
// with, as Envoy's USE_DOWNSTREAM_PROTOCOL: a request that came in over
// HTTP/2 (h2c or TLS) goes to an http:// version over h2c with prior
// knowledge and to an https:// one over TLS with ALPN h2; an HTTP/1.1
// request stays HTTP/1.1 either way. A gRPC call thus reaches gRPC versions
// as it must, and an HTTP/1.1 client is never switched to HTTP/2 behind its
// back. Each role has its own HTTP/1.1 and HTTP/2 transports: a hanging dark
// version only ever exhausts dark's connections, never live's.

// serverProtocols are what the proxy serves: HTTP/1.1 and h2c with prior
// knowledge (what gRPC clients send over plain TCP) on its plain listener,
// HTTP/1.1 and HTTP/2 negotiated by ALPN on its TLS one.
func serverProtocols() *http.Protocols {
	var ps http.Protocols
	ps.SetHTTP1(true)
	ps.SetHTTP2(true)
	ps.SetUnencryptedHTTP2(true)
	return &ps
}

// http1Only is the protocols of the HTTP/1.1 transports: with TLS they
// offer no h2 either.
func http1Only() *http.Protocols {
	var ps http.Protocols
	ps.SetHTTP1(true)
	return &ps
}

// newServer is the HTTP server of the proxy's listeners.
func (p *Proxy) newServer() *http.Server {
	return &http.Server{
		Handler:           p,
		Protocols:         serverProtocols(),
		TLSConfig:         p.tlsConf,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(p.log.Handler(), slog.LevelWarn),
	}
}

// newH2Transport carries one role's requests that came in over HTTP/2.
// HTTP/2 multiplexes: a few connections carry every stream, and the
// transport opens more when a version's stream limit is reached. Pings on
// a connection silent for SendPingTimeout find a dead one before a request
// waits on it.
func newH2Transport() *http.Transport {
	var ps http.Protocols
	ps.SetHTTP2(true)            // https:// versions: TLS with ALPN h2
	ps.SetUnencryptedHTTP2(true) // http:// versions: h2c, prior knowledge
	return &http.Transport{
		Proxy: nil, // never an environment HTTP proxy
		DialContext: (&net.Dialer{
			Timeout:   5 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		TLSClientConfig:     &tls.Config{MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout: 10 * time.Second,
		IdleConnTimeout:     90 * time.Second,
		MaxIdleConnsPerHost: 16,
		Protocols:           &ps,
		HTTP2: &http.HTTP2Config{
			SendPingTimeout: 30 * time.Second,
			PingTimeout:     15 * time.Second,
		},
	}
}

// byProtocol is one role's transports, picked by the protocol the request
// came in with (the outgoing request keeps the incoming one's ProtoMajor).
type byProtocol struct{ h1, h2 *http.Transport }

func (t byProtocol) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.ProtoMajor == 2 {
		return t.h2.RoundTrip(r)
	}
	return t.h1.RoundTrip(r)
}

// liveTransport is what live's reverse proxy sends with.
func (p *Proxy) liveTransport() http.RoundTripper { return byProtocol{p.live, p.live2} }

// darkTransport is what a copy is sent with: out is a clone of the
// client's request, with its protocol.
func (p *Proxy) darkTransport(out *http.Request) *http.Transport {
	if out.ProtoMajor == 2 {
		return p.dark2
	}
	return p.dark
}

// closeIdleH2 closes the HTTP/2 transports' idle connections.
func (p *Proxy) closeIdleH2() {
	p.live2.CloseIdleConnections()
	p.dark2.CloseIdleConnections()
}

// initClientH2 is the init check's HTTP/2 client (see waitAnswer): its own
// connections, none kept, like the HTTP/1.1 one.
func initClientH2() *http.Client {
	t := newH2Transport()
	t.DisableKeepAlives = true
	return &http.Client{
		Transport:     t,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}
