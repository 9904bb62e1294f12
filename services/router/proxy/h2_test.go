package proxy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/darklaunch/darklaunch/internal/testenv"
	"github.com/darklaunch/darklaunch/services/router/mirroring"
	"github.com/darklaunch/darklaunch/services/router/routertest"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

// seen is what a protoVersion noted of one request.
type seen struct {
	proto      int
	tls        bool
	host, mark string
	xfp        string // X-Forwarded-Proto
	body       string
}

// protoVersion is a version that notes each request's protocol.
type protoVersion struct {
	*httptest.Server
	mu  sync.Mutex
	got []seen
	// hang, when set, holds every request until it is closed.
	hang chan struct{}
}

func (v *protoVersion) handler(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	v.mu.Lock()
	v.got = append(v.got, seen{proto: r.ProtoMajor, tls: r.TLS != nil, host: r.Host, mark: r.Header.Get(experiment.MirrorHeader), xfp: r.Header.Get("X-Forwarded-Proto"), body: string(b)})
	v.mu.Unlock()
	if v.hang != nil {
		select {
		case <-v.hang:
		case <-r.Context().Done():
		}
	}
	io.WriteString(w, "proto "+r.Proto)
}

func (v *protoVersion) seen() []seen {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]seen(nil), v.got...)
}

func (v *protoVersion) wait(t *testing.T, n int) []seen {
	t.Helper()
	testenv.Until(t, 5*time.Second, "requests at "+v.URL, func() bool { return len(v.seen()) >= n })
	return v.seen()
}

// newH2CVersion serves HTTP/1.1 and h2c with prior knowledge.
func newH2CVersion(t *testing.T) *protoVersion { return newH2CVersionHanging(t, nil) }

// newH2CVersionHanging is newH2CVersion holding every request until hang
// is closed (nil: none).
func newH2CVersionHanging(t *testing.T, hang chan struct{}) *protoVersion {
	v := &protoVersion{hang: hang}
	v.Server = httptest.NewUnstartedServer(http.HandlerFunc(v.handler))
	v.Config.Protocols = serverProtocols()
	v.Start()
	t.Cleanup(v.Close)
	return v
}

// newTLSVersion serves TLS with ALPN h2 and http/1.1 (httptest's certificate).
func newTLSVersion(t *testing.T) *protoVersion {
	v := &protoVersion{}
	v.Server = httptest.NewUnstartedServer(http.HandlerFunc(v.handler))
	v.EnableHTTP2 = true
	v.StartTLS()
	t.Cleanup(v.Close)
	return v
}

func protocols(h1, h2, h2c bool) *http.Protocols {
	var ps http.Protocols
	ps.SetHTTP1(h1)
	ps.SetHTTP2(h2)
	ps.SetUnencryptedHTTP2(h2c)
	return &ps
}

// client speaks only what ps allows; roots, when set, are the CAs it trusts.
func client(t *testing.T, ps *http.Protocols, roots *x509.CertPool) *http.Client {
	tr := &http.Transport{Proxy: nil, Protocols: ps, TLSClientConfig: &tls.Config{RootCAs: roots}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func sendWith(t *testing.T, c *http.Client, base, method, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, base+"/x", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "customdomain.com"
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s through the proxy: %v", method, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("%s through the proxy: status %d", method, resp.StatusCode)
	}
	return resp
}

// TestProxyH2C: an h2c client (prior knowledge) goes to h2c versions over
// h2c, live and the copy alike; the copy keeps its Host suffix and mark and
// the share is exact. An HTTP/1.1 client on the same port stays HTTP/1.1.
func TestProxyH2C(t *testing.T) {
	live, dark := newH2CVersion(t), newH2CVersion(t)
	p, base := newTestProxy(t, Config{}, nil)
	e := routertest.Experiment("h2c", "customdomain.com", live.URL, dark.URL, 40, experiment.StageRunning)
	e.Spec.Mirroring.Methods = []string{"GET", "POST"}
	setup(t, p, e)

	h2c := client(t, protocols(false, false, true), nil)
	for i := range 10 {
		method, body := "GET", ""
		if i%2 == 1 {
			method, body = "POST", "payload"
		}
		if resp := sendWith(t, h2c, base, method, body); resp.ProtoMajor != 2 {
			t.Fatalf("the proxy answered an h2c client over %s", resp.Proto)
		}
	}
	copies := dark.wait(t, 4)
	rt := p.table.Load().byKey["default/h2c"]
	testenv.Until(t, 5*time.Second, "the copies in flight to end", func() bool { return rt.active.Load() == 0 })
	if n := len(dark.seen()); n != 4 {
		t.Errorf("dark got %d copies of 10 requests at 40%%, want 4", n)
	}
	posts := 0
	for _, c := range copies {
		if c.proto != 2 || c.host != "customdomain.com-shadow" || c.mark != "default/h2c" {
			t.Errorf("copy over HTTP/%d, Host %q, mark %q; want HTTP/2, customdomain.com-shadow, default/h2c", c.proto, c.host, c.mark)
		}
		if c.body == "payload" {
			posts++
		}
	}
	// Requests 3, 5, 8 and 10 are copied: two GETs and two POSTs.
	if posts != 2 {
		t.Errorf("%d copies with the POSTs' body, want 2: %+v", posts, copies)
	}
	got := live.seen()
	for _, l := range got {
		if l.proto != 2 || l.host != "customdomain.com" || l.mark != "" {
			t.Errorf("live got HTTP/%d, Host %q, mark %q; want HTTP/2, customdomain.com, none", l.proto, l.host, l.mark)
		}
	}
	if got := recorded(rt, roleDark); got.Count != 4 || got.Errors != 0 {
		t.Errorf("dark observed %d copies, %d failed; want 4 and 0", got.Count, got.Errors)
	}

	h1 := client(t, protocols(true, false, false), nil)
	sendWith(t, h1, base, "GET", "")
	if l := live.wait(t, 11)[10]; l.proto != 1 {
		t.Errorf("an HTTP/1.1 request reached live over HTTP/%d, want HTTP/1.1", l.proto)
	}
}

// TestProxyH2ZeroImpact: over HTTP/2 too, a hanging dark version does not
// slow live: its copies wait on dark's own HTTP/2 connections, and those
// over the bound are dropped and counted.
func TestProxyH2ZeroImpact(t *testing.T) {
	live, healthy := newH2CVersion(t), newH2CVersion(t)
	release := make(chan struct{})
	hanging := newH2CVersionHanging(t, release)
	t.Cleanup(func() { close(release) }) // runs before the servers close
	p, base := newTestProxy(t, Config{MirrorInflight: 16, MirrorTimeout: 2 * time.Second}, nil)
	setup(t, p, routertest.Experiment("healthy", "healthy.example.com", live.URL, healthy.URL, 100, experiment.StageRunning))
	setup(t, p, routertest.Experiment("hanging", "hanging.example.com", live.URL, hanging.URL, 100, experiment.StageRunning))

	h2c := client(t, protocols(false, false, true), nil)
	const n = 200
	lat := map[string][]time.Duration{}
	for range n {
		for _, name := range []string{"healthy", "hanging"} {
			req, _ := http.NewRequest("GET", base+"/", nil)
			req.Host = name + ".example.com"
			start := time.Now()
			resp, err := h2c.Do(req)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			lat[name] = append(lat[name], time.Since(start))
			if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
				t.Fatalf("%s: %s %d", name, resp.Proto, resp.StatusCode)
			}
		}
	}
	p99 := func(name string) time.Duration {
		slices.Sort(lat[name])
		return lat[name][n*99/100]
	}
	p99Healthy, p99Hanging := p99("healthy"), p99("hanging")
	t.Logf("live p99 over h2c: healthy dark %v, hanging dark %v", p99Healthy, p99Hanging)
	if p99Hanging > 3*p99Healthy+20*time.Millisecond {
		t.Errorf("live p99 with a hanging dark %v > 3×%v+20ms (healthy dark)", p99Hanging, p99Healthy)
	}
	if got := dropped(t, p, "default/hanging", DropInflight); got < n-16 {
		t.Errorf("dropped{reason=inflight} = %v, want at least %d", got, n-16)
	}
}

// writeCert writes a self-signed certificate for 127.0.0.1 and its key to
// dir, and returns their paths and a pool that trusts it.
func writeCert(t *testing.T, dir string) (certFile, keyFile string, roots *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "darklaunch proxy test"},
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	roots = x509.NewCertPool()
	roots.AddCert(cert)
	return certFile, keyFile, roots
}

// TestProxyTLS: given a certificate, the proxy serves TLS with ALPN h2 and
// http/1.1 on its TLS address; the protocol to the versions follows the
// client's: h2 to h2c versions, HTTP/1.1 to HTTP/1.1.
func TestProxyTLS(t *testing.T) {
	certFile, keyFile, roots := writeCert(t, t.TempDir())
	live, dark := newH2CVersion(t), newH2CVersion(t)
	p, _ := newTestProxy(t, Config{TLSCert: certFile, TLSKey: keyFile, TLSAddr: "127.0.0.1:0"}, nil)
	setup(t, p, routertest.Experiment("tls", "customdomain.com", live.URL, dark.URL, 100, experiment.StageRunning))
	if !strings.HasPrefix(p.TLSURL(), "https://127.0.0.1:") {
		t.Fatalf("TLSURL %q", p.TLSURL())
	}

	resp := sendWith(t, client(t, protocols(false, true, false), roots), p.TLSURL(), "GET", "")
	if resp.ProtoMajor != 2 || resp.TLS == nil || resp.TLS.NegotiatedProtocol != "h2" {
		t.Fatalf("TLS client offering h2 got %s, ALPN %v", resp.Proto, resp.TLS)
	}
	dark.wait(t, 1) // copies are sent in the background: one at a time, so that they arrive in order
	resp = sendWith(t, client(t, protocols(true, false, false), roots), p.TLSURL(), "GET", "")
	if resp.ProtoMajor != 1 {
		t.Fatalf("TLS client offering http/1.1 got %s", resp.Proto)
	}
	l, d := live.wait(t, 2), dark.wait(t, 2)
	for i, want := range []int{2, 1} {
		if l[i].proto != want || d[i].proto != want || l[i].xfp != "https" {
			t.Errorf("request %d (HTTP/%d over TLS): live got HTTP/%d (X-Forwarded-Proto %q), dark HTTP/%d", i, want, l[i].proto, l[i].xfp, d[i].proto)
		}
	}
	if d[0].host != "customdomain.com-shadow" || d[0].mark != "default/tls" {
		t.Errorf("copy Host %q, mark %q", d[0].host, d[0].mark)
	}
}

// TestProxyTLSVersionsFollowTheClient: https:// versions get TLS with h2
// for an HTTP/2 client, TLS with HTTP/1.1 for an HTTP/1.1 one, live and
// dark alike.
func TestProxyTLSVersionsFollowTheClient(t *testing.T) {
	live, dark := newTLSVersion(t), newTLSVersion(t)
	p, base := newTestProxy(t, Config{}, nil)
	roots := x509.NewCertPool()
	roots.AddCert(live.Certificate())
	roots.AddCert(dark.Certificate())
	for _, tr := range []*http.Transport{p.live, p.dark, p.live2, p.dark2} {
		if tr.TLSClientConfig == nil {
			tr.TLSClientConfig = &tls.Config{}
		}
		tr.TLSClientConfig.RootCAs = roots
	}
	setup(t, p, routertest.Experiment("https", "customdomain.com", live.URL, dark.URL, 100, experiment.StageRunning))

	sendWith(t, client(t, protocols(false, false, true), nil), base, "GET", "")
	dark.wait(t, 1) // copies are sent in the background: one at a time, so that they arrive in order
	sendWith(t, client(t, protocols(true, false, false), nil), base, "GET", "")
	l, d := live.wait(t, 2), dark.wait(t, 2)
	for i, want := range []int{2, 1} {
		if !l[i].tls || !d[i].tls || l[i].proto != want || d[i].proto != want {
			t.Errorf("request %d (HTTP/%d): live got HTTP/%d (TLS %v), dark HTTP/%d (TLS %v); want HTTP/%d over TLS at both", i, want, l[i].proto, l[i].tls, d[i].proto, d[i].tls, want)
		}
	}
}

// TestProxyTLSConfig: a certificate needs its key and the other way round,
// both readable and a pair; each error names the flag.
func TestProxyTLSConfig(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, _ := writeCert(t, dir)
	otherCert, _, _ := writeCert(t, t.TempDir())
	garbage := filepath.Join(dir, "garbage.pem")
	os.WriteFile(garbage, []byte("not PEM"), 0o600)
	missing := filepath.Join(dir, "missing.pem")
	for _, tc := range []struct {
		name       string
		cert, key  string
		wantInErr  []string
		wantListen bool
	}{
		{"neither", "", "", nil, false},
		{"both", certFile, keyFile, nil, true},
		{"cert only", certFile, "", []string{"Proxy.TLSKey", "--proxy-tls-key", "both or neither"}, false},
		{"key only", "", keyFile, []string{"Proxy.TLSCert", "--proxy-tls-cert", "both or neither"}, false},
		{"unreadable cert", missing, keyFile, []string{"--proxy-tls-cert", missing, "cannot read"}, false},
		{"unreadable key", certFile, missing, []string{"--proxy-tls-key", missing, "cannot read"}, false},
		{"not PEM", garbage, keyFile, []string{"--proxy-tls-cert", garbage, "not a PEM certificate"}, false},
		{"not a pair", otherCert, keyFile, []string{"--proxy-tls-cert", otherCert, keyFile}, false},
	} {
		cfg := Config{Addr: "127.0.0.1:0", TLSCert: tc.cert, TLSKey: tc.key, TLSAddr: "127.0.0.1:0"}
		p, err := New(cfg, mirroring.Settings{}, nil, nil, nil)
		if tc.wantInErr == nil {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
				continue
			}
			if got := p.TLSURL() != ""; got != tc.wantListen {
				t.Errorf("%s: TLSURL %q", tc.name, p.TLSURL())
			}
			p.ln.Close()
			p.closeTLS()
			continue
		}
		if err == nil {
			p.ln.Close()
			p.closeTLS()
			t.Errorf("%s: New succeeded, want an error", tc.name)
			continue
		}
		for _, s := range tc.wantInErr {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("%s: error %q does not say %q", tc.name, err, s)
			}
		}
	}

	var c Config
	fs := pflag.NewFlagSet("router", pflag.ContinueOnError)
	c.AddFlags(fs)
	if err := fs.Parse([]string{"--proxy-tls-cert", certFile, "--proxy-tls-key", keyFile, "--proxy-tls-addr", "127.0.0.1:9443"}); err != nil {
		t.Fatal(err)
	}
	if c.TLSCert != certFile || c.TLSKey != keyFile || c.TLSAddr != "127.0.0.1:9443" {
		t.Errorf("flags parsed to %+v", c)
	}
	c = Config{}
	c.Default()
	if c.TLSAddr != DefaultTLSAddr {
		t.Errorf("default TLSAddr %q", c.TLSAddr)
	}
}
