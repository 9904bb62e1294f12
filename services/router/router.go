// Package router sets up and tears down the mirroring of darklaunch
// experiments. It reconciles from the experiment state in the KV bucket: for
// a new experiment it checks that the live and dark versions answer (Iter8's
// init task), has its backend mirror a share of the target's traffic to the
// dark version and publishes a routing event; when the experiment ends it
// removes the mirroring. The local backend, Proxy, is a reverse proxy that
// also observes both versions and publishes what it saw on the bus; the
// Kubernetes one, Istio, checks the target Knative Service and writes the
// seed's two VirtualServices.
package router

import (
	"context"

	"github.com/darklaunch/darklaunch/shared/experiment"
)

// Backend sets up and removes mirroring. Proxy is the local one, Istio the
// Kubernetes one (the seed's two VirtualServices).
type Backend interface {
	// Setup checks the target answers and sets up mirroring for exp
	// (idempotent: a restarted router converges). The check is Iter8's init
	// task and runs only for a new experiment (Initializing, no
	// status.routing yet): for one whose routing was already reported (a
	// router restart), the judge has accepted the target and the route must
	// come back at once, whatever the dark version does.
	Setup(ctx context.Context, exp *experiment.Experiment) (experiment.RoutingStatus, error)
	// Teardown removes what Setup created (idempotent).
	Teardown(ctx context.Context, exp *experiment.Experiment) error
}
