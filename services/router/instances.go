package router

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/darklaunch/darklaunch/services/router/mirroring"
	"github.com/darklaunch/darklaunch/shared"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

// Any number of routers may run side by side. They hold leases in the
// members bucket (shared/members, role router, named by Config.Instance,
// which also names their proxy's observation batches), so that the
// collector tells a router that stopped from one that has no traffic, and
// the routers can divide the work that is done once for all:
//
//   - With the proxy backend every router serves every experiment: a
//     client (a load balancer) may send a request to any of them, so each
//     sets up its own route. The router that owns the experiment's UID
//     (rendezvous hashing over the live routers) runs the init check and
//     publishes the routing event; the others route the host at once,
//     without a check of their own, so that their routes are up by the
//     time the owner's event has the judge start the run (a router that
//     sees the new experiment only after that answers 404 meanwhile). If
//     the owner goes away before its event is stored, the next owner checks
//     and publishes. The event's Msg-Id (<uid>.routing) makes the stream
//     keep one, whoever publishes it, however often.
//   - With the Istio backend the VirtualServices are the cluster's, one set
//     for all the routers: the router that owns the experiment's UID
//     (rendezvous hashing over the live routers) runs its init check, writes
//     them and publishes the routing event; if it goes away before the
//     event is stored, the next owner does (initializeOwned). Restoring a
//     running experiment's routing is idempotent (the owner labels keep a
//     router off other experiments' objects) and done by any router.
//   - Teardown is done by every router that sees the run end, first come
//     first served: the proxy's is each router's own route; Istio's deletes
//     only objects that name the run's UID, and a second delete finds none.
//
// Without the bucket (a judge older than it) a router works as if alone,
// which is what a single router always did.

// sharedBackend says whether the backend's routing is one for all routers
// (Istio), rather than each router's own (the proxy, which serves the
// traffic itself).
func (s *Service) sharedBackend() bool {
	_, own := s.backend.(Endpoint)
	return !own
}

// initTask is the task of a new experiment: initialize it here when alone,
// else where its owner is (initializeOwned).
func (s *Service) initTask(e *experiment.Experiment) func(ctx context.Context) error {
	if s.group == nil {
		return func(ctx context.Context) error { s.initialize(ctx, e); return nil }
	}
	return func(ctx context.Context) error { return s.initializeOwned(ctx, e) }
}

// initializeOwned initializes e if this router owns its UID. Otherwise it
// routes e at once if the routing is this router's own (the proxy), then
// waits for the owner to report the routing, or for the ownership to move
// here (the owner went away: then it initializes), or for ctx to end. A
// route of its own it could not set up by the time the routing is
// reported is an error: the loop tries again, as it restores a route.
func (s *Service) initializeOwned(ctx context.Context, e *experiment.Experiment) error {
	ns, name, uid := e.Metadata.Namespace, e.Metadata.Name, e.Metadata.UID
	own := !s.sharedBackend()
	unchecked := false // own route set up without the check
	var routeErr error
	for ctx.Err() == nil {
		changed := s.group.Changed()
		// Afresh each time: a task tried again has the state it started
		// with.
		cur, _, err := s.store.Get(ctx, ns, name)
		switch {
		case errors.Is(err, shared.ErrNotFound):
			return nil // deleted: Release tears down
		case err != nil:
			cur = e // not readable now: go by what is known
		case cur.Metadata.UID != uid:
			return nil // replaced
		case !mirroring.NeedsInitCheck(cur):
			// Reported (by the owner, or by this router before it was
			// tried again): route here too, as a restore does.
			if own && !unchecked {
				if _, err := s.setup(ctx, cur); err != nil {
					return fmt.Errorf("mirroring of %s not set up on this router: %w", e.Key(), err)
				}
			}
			return nil
		}
		if s.group.Owns(uid) {
			if unchecked {
				// The owner went before its event: the check is this
				// router's now, and Setup checks only a route it makes.
				if err := s.backend.Teardown(ctx, cur); err != nil && ctx.Err() == nil {
					s.log.Warn("unchecked route not removed before the init check", "experiment", e.Key(), "err", err)
				}
			}
			s.initialize(ctx, cur)
			return nil
		}
		if own && !unchecked {
			// As a restored route: the owner's check stands for all.
			routed := *cur
			routed.Status.Routing = &experiment.RoutingStatus{}
			_, err := s.setup(ctx, &routed)
			if err != nil && ctx.Err() == nil && (routeErr == nil || err.Error() != routeErr.Error()) {
				s.log.Warn("mirroring not set up on this router yet; the experiment's owner reports on it", "experiment", e.Key(), "owner", s.group.Owner(uid), "err", err)
			}
			unchecked, routeErr = err == nil, err
		}
		t := time.NewTimer(s.cfg.InitInterval)
		select {
		case <-ctx.Done():
		case <-changed:
		case <-t.C:
		}
		t.Stop()
	}
	return nil
}
