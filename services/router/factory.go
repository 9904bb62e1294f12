package router

import (
	"fmt"
	"log/slog"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/darklaunch/darklaunch/services/router/istio"
	"github.com/darklaunch/darklaunch/services/router/proxy"
)

// Backend names, as Config.Backend takes them.
const (
	BackendProxy = proxy.Name
	BackendIstio = istio.Name
)

// Backends lists the backend names NewBackend knows.
var Backends = []string{BackendProxy, BackendIstio}

var (
	_ Backend  = (*proxy.Proxy)(nil)
	_ Runner   = (*proxy.Proxy)(nil)
	_ Endpoint = (*proxy.Proxy)(nil)
	_ Backend  = (*istio.Istio)(nil)
)

// NewBackend returns the backend cfg.Backend names; cfg must have its
// defaults applied (New does that). js publishes the proxy's observations;
// the istio backend builds its Kubernetes clients from cfg.Istio.Kubeconfig.
// An unknown name is an error: a typo must not silently pick another backend.
func NewBackend(cfg Config, js jetstream.JetStream, log *slog.Logger) (Backend, error) {
	switch cfg.Backend {
	case BackendProxy:
		return proxy.New(cfg.Proxy, cfg.Settings, js, cfg.Registry, log)
	case BackendIstio:
		return istio.NewFromKubeconfig(cfg.Istio, cfg.Settings, log)
	default:
		return nil, fmt.Errorf("unknown router backend %q (known: %v)", cfg.Backend, Backends)
	}
}
