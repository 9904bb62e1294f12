package router

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/darklaunch/darklaunch/services/router/istio"
	"github.com/darklaunch/darklaunch/services/router/proxy"
)

// defaulted is c with its defaults, as New hands it to NewBackend.
func defaulted(c Config) Config {
	c.Default()
	return c
}

func TestFactoryUnknownBackend(t *testing.T) {
	cfg := defaulted(Config{Backend: "linkerd"})
	if _, err := NewBackend(cfg, nil, nil); err == nil || !strings.Contains(err.Error(), `"linkerd"`) {
		t.Fatalf("err %v, want an unknown-backend error naming linkerd", err)
	}
	cfg = defaulted(Config{Proxy: proxy.Config{Addr: "127.0.0.1:0"}})
	b, err := NewBackend(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	p, ok := b.(*proxy.Proxy)
	if !ok {
		t.Fatalf("default backend %T, want *proxy.Proxy", b)
	}
	_ = p.Close(context.Background())
}

func TestIstioBackendFromKubeconfig(t *testing.T) {
	dir := t.TempDir()
	kc := dir + "/kubeconfig"
	const cfgText = `apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: "https://127.0.0.1:6443"}
users:
- name: u
  user: {token: "t"}
contexts:
- name: x
  context: {cluster: c, user: u, namespace: default}
current-context: x
`
	if err := os.WriteFile(kc, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := NewBackend(defaulted(Config{Backend: BackendIstio, Istio: istio.Config{Kubeconfig: kc}}), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := b.(*istio.Istio); !ok {
		t.Errorf("backend %T, want *Istio", b)
	}
	if _, err := NewBackend(defaulted(Config{Backend: BackendIstio, Istio: istio.Config{Kubeconfig: dir + "/missing"}}), nil, nil); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing kubeconfig: err %v, want one naming the file", err)
	}
}
