package istio_test

import (
	"testing"
	"time"

	"github.com/darklaunch/darklaunch/services/router/istio"
	"github.com/darklaunch/darklaunch/services/router/istio/istiotest"
	"github.com/darklaunch/darklaunch/services/router/mirroring"
	"github.com/darklaunch/darklaunch/services/router/routertest"
)

// TestContract: the istio backend passes the suite every router backend
// passes, on fake clients holding the seed's Ready Knative Service. A
// restarted backend is a new one on the same cluster: the VirtualServices
// stay. (test/k8s runs the same suite against a real API server.)
func TestContract(t *testing.T) {
	set := mirroring.Settings{InitTimeout: 300 * time.Millisecond, InitInterval: 10 * time.Millisecond}
	routertest.TestBackend(t, func(t *testing.T) routertest.Harness {
		c := istiotest.NewCluster(t, istiotest.KnativeService(t, istiotest.SeedTraffic(), nil))
		return istiotest.Harness(c.Istio, c.Dynamic, "default", func(t *testing.T) routertest.Backend {
			b, err := istio.New(istio.Config{}, set, c.Istio, c.Dynamic, routertest.Logger(t))
			if err != nil {
				t.Fatal(err)
			}
			return b
		})
	})
}
