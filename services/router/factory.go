package router

import (
	"fmt"
	"log/slog"

	"github.com/nats-io/nats.go/jetstream"
)

// Backend names, as Config.Backend takes them.
const (
	BackendProxy = "proxy"
	BackendIstio = "istio"
)

// Backends lists the backend names NewBackend knows.
var Backends = []string{BackendProxy, BackendIstio}

// NewBackend returns the backend cfg.Backend names; cfg must have its
// defaults applied (New does that). js publishes the proxy's observations;
// the istio backend builds its Kubernetes clients from cfg.Kubeconfig.
// An unknown name is an error: a typo must not silently pick another backend.
func NewBackend(cfg Config, js jetstream.JetStream, log *slog.Logger) (Backend, error) {
	switch cfg.Backend {
	case BackendProxy:
		return NewProxy(cfg, js, log)
	case BackendIstio:
		return newIstioFromKubeconfig(cfg, log)
	default:
		return nil, fmt.Errorf("unknown router backend %q (known: %v)", cfg.Backend, Backends)
	}
}
