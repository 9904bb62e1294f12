// Package router sets up and tears down the mirroring of darklaunch
// experiments. It reconciles from the experiment state in the KV bucket: for
// a new experiment it has its backend check that the target answers
// (Iter8's init task) and mirror a share of the target's traffic to the
// dark version, and publishes a routing event; when the experiment ends it
// removes the mirroring. The backends live in their own packages: proxy,
// the local reverse proxy that also observes both versions and publishes
// what it saw on the bus, and istio, which checks the target Knative
// Service and writes the seed's two VirtualServices.
package router

import (
	"context"

	"github.com/darklaunch/darklaunch/shared/experiment"
)

// Backend sets up and removes mirroring.
type Backend interface {
	// Setup checks the target answers and sets up mirroring for exp
	// (idempotent: a restarted router converges). The check is Iter8's init
	// task and runs only for a new experiment (Initializing, no
	// status.routing yet: mirroring.NeedsInitCheck): for one whose routing
	// was already reported (a router restart), the judge has accepted the
	// target and the route must come back at once, whatever the dark
	// version does.
	Setup(ctx context.Context, exp *experiment.Experiment) (experiment.RoutingStatus, error)
	// Teardown removes what Setup created (idempotent).
	Teardown(ctx context.Context, exp *experiment.Experiment) error
}

// Runner is a backend with work of its own beside the reconcile loop: the
// proxy serves the experiments' traffic and publishes its observations. The
// Service runs it for as long as it runs and stops it after the
// reconcilers, which may still use it: it ends Run's context, waits for Run
// to return, then calls Close.
type Runner interface {
	// Run works until ctx ends (nil), or returns the error that keeps it
	// from going on, which stops the Service with that error.
	Run(ctx context.Context) error
	// Close releases what is left once Run has returned (the proxy:
	// publishes the last observations), within ctx. It is called even
	// when Run was not (the Service stopped before it started).
	Close(ctx context.Context) error
}

// Endpoint is a backend that serves the experiments' traffic itself, as
// the proxy does (with istio the mesh does): URL is where clients such as
// loadgen send their requests, known from the backend's construction on.
type Endpoint interface {
	URL() string
}
