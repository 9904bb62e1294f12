package istio

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/darklaunch/darklaunch/shared/retry"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// KnativeServices is the resource of Knative Services. The istio backend
// reads it with the dynamic client, so darklaunch does not depend on
// Knative's (large) module; it only ever gets one Service by name.
var KnativeServices = schema.GroupVersionResource{Group: "serving.knative.dev", Version: "v1", Resource: "services"}

// knativeReadyConditions must all be True for Iter8's knative init task.
var knativeReadyConditions = []string{"Ready", "ConfigurationsReady", "RoutesReady"}

// knativeService is the part of a Knative Service the init check reads.
type knativeService struct {
	Metadata struct {
		Generation int64 `json:"generation,omitempty"`
	} `json:"metadata"`
	Status struct {
		ObservedGeneration int64              `json:"observedGeneration,omitempty"`
		Conditions         []knativeCondition `json:"conditions,omitempty"`
		Traffic            []struct {
			RevisionName   string `json:"revisionName,omitempty"`
			Percent        *int64 `json:"percent,omitempty"`
			LatestRevision *bool  `json:"latestRevision,omitempty"`
			Tag            string `json:"tag,omitempty"`
		} `json:"traffic,omitempty"`
	} `json:"status"`
}

type knativeCondition struct {
	Type    string `json:"type"`
	Status  string `json:"status"`
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
}

// permanentError is an init failure that waiting cannot cure (the router
// may not read the Service): the check gives up at once.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// waitKnative is Iter8's knative/init-experiment: it polls the target's
// Knative Service every InitInterval until it is Ready and serves the dark
// revision, and returns the live revision. After InitTimeout it fails with
// the last reason, which names what is missing.
func (b *Istio) waitKnative(ctx context.Context, t *target) (string, error) {
	wctx, cancel := context.WithTimeout(ctx, b.set.InitTimeout)
	defer cancel()
	var last error
	live, err := retry.Value(wctx, retry.Policy{First: b.set.InitInterval, Max: b.set.InitInterval}, func(wctx context.Context) (string, error) {
		live, err := b.checkKnative(wctx, t)
		var perm *permanentError
		switch {
		case err == nil:
			return live, nil
		case ctx.Err() != nil:
			return "", retry.Permanent(ctx.Err())
		case errors.As(err, &perm):
			return "", retry.Permanent(err)
		case wctx.Err() == nil || last == nil:
			// Keep the cause over the deadline that cut the last read
			// short, unless there is nothing else.
			last = err
		}
		return "", err
	}, nil)
	switch {
	case err == nil:
		return live, nil
	case ctx.Err() != nil:
		return "", ctx.Err()
	case wctx.Err() != nil:
		return "", fmt.Errorf("%w (still so after %s)", cmp.Or(last, err), b.set.InitTimeout)
	}
	return "", err
}

// checkKnative reads the target's Knative Service once and returns the live
// revision, or why the target is not ready for the experiment.
func (b *Istio) checkKnative(ctx context.Context, t *target) (string, error) {
	u, err := b.dyn.Resource(KnativeServices).Namespace(t.namespace).Get(ctx, t.service, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return "", fmt.Errorf("Knative Service %s/%s not found", t.namespace, t.service)
	case apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err):
		return "", &permanentError{fmt.Errorf("reading Knative Service %s/%s (the router needs get on services.serving.knative.dev in %s): %w", t.namespace, t.service, t.namespace, err)}
	case err != nil:
		return "", fmt.Errorf("reading Knative Service %s/%s: %w", t.namespace, t.service, err)
	}
	var ks knativeService
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &ks); err != nil {
		return "", fmt.Errorf("reading Knative Service %s/%s: %w", t.namespace, t.service, err)
	}
	return ks.liveRevision(t)
}

// liveRevision checks the Service is Ready and serves the dark revision,
// and picks the live one: spec.mirroring.liveRevision, or the revision that
// serves 100 % of the traffic.
func (ks *knativeService) liveRevision(t *target) (string, error) {
	svc := t.namespace + "/" + t.service
	if g, o := ks.Metadata.Generation, ks.Status.ObservedGeneration; g != 0 && o != 0 && o < g {
		// The conditions below describe an older spec.
		return "", fmt.Errorf("Knative Service %s is not Ready: its status is for generation %d, the spec is at %d", svc, o, g)
	}
	var notReady []string
	for _, want := range knativeReadyConditions {
		i := slices.IndexFunc(ks.Status.Conditions, func(c knativeCondition) bool { return c.Type == want })
		if i < 0 {
			notReady = append(notReady, want+" missing")
			continue
		}
		c := ks.Status.Conditions[i]
		if c.Status == "True" {
			continue
		}
		s := want + "=" + c.Status
		switch {
		case c.Reason != "" && c.Message != "":
			s += fmt.Sprintf(" (reason %s: %s)", c.Reason, c.Message)
		case c.Reason != "":
			s += fmt.Sprintf(" (reason %s)", c.Reason)
		case c.Message != "":
			s += fmt.Sprintf(" (%s)", c.Message)
		}
		notReady = append(notReady, s)
	}
	if len(notReady) > 0 {
		return "", fmt.Errorf("Knative Service %s is not Ready: %s", svc, strings.Join(notReady, ", "))
	}

	// A revision may appear more than once (tags): add its shares up.
	percent := map[string]int64{}
	for _, tr := range ks.Status.Traffic {
		if tr.RevisionName == "" {
			continue
		}
		p := percent[tr.RevisionName]
		if tr.Percent != nil {
			p += *tr.Percent
		}
		percent[tr.RevisionName] = p
	}
	revisions := slices.Sorted(maps.Keys(percent))
	listed := strings.Join(revisions, ", ")
	if listed == "" {
		listed = "none"
	}
	if _, ok := percent[t.dark]; !ok {
		return "", fmt.Errorf("revision %s is not in the traffic of %s (revisions: %s)", t.dark, svc, listed)
	}
	live := t.LiveRevision
	if live != "" {
		if _, ok := percent[live]; !ok {
			return "", fmt.Errorf("live revision %s (spec.mirroring.liveRevision) is not in the traffic of %s (revisions: %s)", live, svc, listed)
		}
	} else {
		for _, r := range revisions {
			if percent[r] == 100 {
				live = r
			}
		}
		if live == "" {
			shares := make([]string, len(revisions))
			for i, r := range revisions {
				shares[i] = fmt.Sprintf("%s %d%%", r, percent[r])
			}
			return "", fmt.Errorf("no revision serves 100%% of the traffic of %s (traffic: %s); name the live one in spec.mirroring.liveRevision", svc, strings.Join(shares, ", "))
		}
	}
	if live == t.dark {
		return "", fmt.Errorf("the dark revision %s is the live one of %s: mirroring it to itself would double its requests", t.dark, svc)
	}
	return live, nil
}
