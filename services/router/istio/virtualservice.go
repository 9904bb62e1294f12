package istio

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/darklaunch/darklaunch/services/router/mirroring"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

// Labels and annotations of the VirtualServices darklaunch manages. Only an
// object with both labels, the second naming the experiment, is ever
// updated or deleted; the UID annotation tells two runs of one name apart,
// and the experiment annotation names the experiment in full
// ("namespace/name", where the label may be shortened), so that a router
// can find out whether the run holding a host has ended.
const (
	LabelManagedBy          = "app.kubernetes.io/managed-by"
	ManagedBy               = "darklaunch"
	LabelExperiment         = "darklaunch.dev/experiment"
	AnnotationExperiment    = "darklaunch.dev/experiment"
	AnnotationExperimentUID = "darklaunch.dev/experiment-uid"
)

// Knative's headers that make its local gateway deliver a request to one
// revision, as the seed's routing rules set them.
const (
	headerKnativeNamespace = "Knative-Serving-Namespace"
	headerKnativeRevision  = "Knative-Serving-Revision"
)

// shadowSuffix is what Envoy appends to the authority of a mirrored copy.
const shadowSuffix = "-shadow"

// owned says why darklaunch may not write cur for exp, or nil. Another
// experiment's is a *mirroring.HostHeld.
func owned(cur *networkingv1.VirtualService, exp *experiment.Experiment) error {
	if cur.Labels[LabelManagedBy] != ManagedBy {
		return fmt.Errorf("VirtualService %s/%s exists and is not managed by darklaunch; refusing to overwrite it", cur.Namespace, cur.Name)
	}
	if other := cur.Labels[LabelExperiment]; other != experimentLabel(exp) {
		return &mirroring.HostHeld{
			Holder: holder(cur),
			Reason: fmt.Sprintf("VirtualService %s/%s is managed by darklaunch for experiment %s; refusing to take it over (end that experiment or delete the VirtualService)", cur.Namespace, cur.Name, other),
		}
	}
	return nil
}

// holder is the run that wrote vs, as Teardown needs it: its metadata and
// the target's namespace, where its VirtualServices are. Nil for one
// written without the experiment annotation (by an older router), which
// names the experiment only in the label, maybe shortened.
func holder(vs *networkingv1.VirtualService) *experiment.Experiment {
	ns, name, ok := strings.Cut(vs.Annotations[AnnotationExperiment], "/")
	if !ok || ns == "" || name == "" {
		return nil
	}
	e := &experiment.Experiment{Metadata: experiment.Metadata{Namespace: ns, Name: name, UID: vs.Annotations[AnnotationExperimentUID]}}
	e.Spec.Target = vs.Namespace + "/"
	if experimentLabel(e) != vs.Labels[LabelExperiment] {
		return nil // not the experiment the label names: leave it alone
	}
	return e
}

// ensure makes the VirtualService named like want exist with want's spec,
// labels and annotations: created, updated if it is exp's own, left alone
// if it already matches. It reports whether it created it.
func (b *Istio) ensure(ctx context.Context, exp *experiment.Experiment, want *networkingv1.VirtualService) (*networkingv1.VirtualService, bool, error) {
	log := b.log.With("experiment", exp.Key(), "virtualservice", want.Namespace+"/"+want.Name)
	var last error
	// Conflicts (another writer between read and write) are retried on a
	// fresh read; a few suffice, as only this router writes these objects.
	for range 5 {
		cur, err := b.vs.Get(ctx, want.Namespace, want.Name)
		var got *networkingv1.VirtualService
		// Created since it was read as missing: read again.
		w := write{doing: "creating", done: "created", retry: apierrors.IsAlreadyExists}
		switch {
		case apierrors.IsNotFound(err):
			got, err = b.vs.Create(ctx, want)
		case err != nil:
			return nil, false, fmt.Errorf("reading VirtualService %s/%s: %w", want.Namespace, want.Name, err)
		default:
			if err := owned(cur, exp); err != nil {
				return nil, false, err
			}
			if proto.Equal(&cur.Spec, &want.Spec) && subset(want.Labels, cur.Labels) && subset(want.Annotations, cur.Annotations) {
				return cur, false, nil
			}
			upd := cur.DeepCopy()
			upd.Labels = merged(cur.Labels, want.Labels)
			upd.Annotations = merged(cur.Annotations, want.Annotations)
			want.Spec.DeepCopyInto(&upd.Spec)
			// Changed, or deleted (an older run's teardown racing this
			// setup), since it was read: read again, and create it if gone.
			w = write{doing: "updating", done: "updated", retry: func(err error) bool { return apierrors.IsConflict(err) || apierrors.IsNotFound(err) }}
			got, err = b.vs.Update(ctx, upd)
		}
		if w.retry(err) {
			last = err
			continue
		}
		if err != nil {
			return nil, false, fmt.Errorf("%s VirtualService %s/%s: %w", w.doing, want.Namespace, want.Name, err)
		}
		log.Info("VirtualService " + w.done)
		return got, w.done == "created", nil
	}
	return nil, false, fmt.Errorf("writing VirtualService %s/%s: kept changing under the router: %w", want.Namespace, want.Name, last)
}

// write is one of ensure's two writes, with the errors that call for a
// fresh read.
type write struct {
	doing, done string
	retry       func(error) bool
}

func subset(small, big map[string]string) bool {
	for k, v := range small {
		if w, ok := big[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func merged(base, over map[string]string) map[string]string {
	out := make(map[string]string, len(base)+len(over))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range over {
		out[k] = v
	}
	return out
}

// remove deletes vs if it belongs to this run of exp and has not changed
// since it was read; a change (another run of the experiment took it over)
// is read again and judged anew.
func (b *Istio) remove(ctx context.Context, exp *experiment.Experiment, vs *networkingv1.VirtualService) error {
	for range 5 {
		if owned(vs, exp) != nil || (exp.Metadata.UID != "" && vs.Annotations[AnnotationExperimentUID] != exp.Metadata.UID) {
			return nil
		}
		err := b.vs.Delete(ctx, vs.Namespace, vs.Name, vs.ResourceVersion)
		switch {
		case err == nil:
			b.log.Info("VirtualService deleted", "experiment", exp.Key(), "virtualservice", vs.Namespace+"/"+vs.Name)
			return nil
		case apierrors.IsNotFound(err):
			return nil
		case !apierrors.IsConflict(err):
			return fmt.Errorf("deleting VirtualService %s/%s: %w", vs.Namespace, vs.Name, err)
		}
		fresh, err := b.vs.Get(ctx, vs.Namespace, vs.Name)
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading VirtualService %s/%s: %w", vs.Namespace, vs.Name, err)
		}
		vs = fresh
	}
	return fmt.Errorf("deleting VirtualService %s/%s: kept changing under the router", vs.Namespace, vs.Name)
}

// experimentLabel is the value of LabelExperiment for exp, "namespace.name".
// A label value holds 63 characters at most: a longer one keeps its start
// and ends in a hash of the whole.
func experimentLabel(exp *experiment.Experiment) string {
	v := exp.Metadata.Namespace + "." + exp.Metadata.Name
	if len(v) <= validation.LabelValueMaxLength {
		return v
	}
	sum := sha256.Sum256([]byte(v))
	return strings.TrimRight(v[:validation.LabelValueMaxLength-11], "-_.") + "-" + hex.EncodeToString(sum[:5])
}

// meta is the metadata of a VirtualService written for exp.
func (b *Istio) meta(exp *experiment.Experiment, ns, name string) metav1.ObjectMeta {
	m := metav1.ObjectMeta{
		Name:      name,
		Namespace: ns,
		Labels:    map[string]string{LabelManagedBy: ManagedBy, LabelExperiment: experimentLabel(exp)},
	}
	m.Annotations = map[string]string{AnnotationExperiment: exp.Key()}
	if exp.Metadata.UID != "" {
		m.Annotations[AnnotationExperimentUID] = exp.Metadata.UID
	}
	return m
}

// mirroringVS is the seed's customdomain-mirroring: the host's traffic, from
// the mesh and the ingress gateway, goes to Knative's local gateway with
// its authority kept, and a share of it is mirrored there too.
func (b *Istio) mirroringVS(exp *experiment.Experiment, t *target) *networkingv1.VirtualService {
	vs := &networkingv1.VirtualService{ObjectMeta: b.meta(exp, t.namespace, t.mirroring)}
	route := &networking.HTTPRoute{
		Rewrite: &networking.HTTPRewrite{Authority: t.Host},
		Route:   []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: b.cfg.GatewayHost}}},
		Mirror:  &networking.Destination{Host: b.cfg.GatewayHost},
	}
	if b.cfg.LegacyMirrorPercent {
		route.MirrorPercent = wrapperspb.UInt32(uint32(t.Percent))
	} else {
		route.MirrorPercentage = &networking.Percent{Value: t.Percent}
	}
	vs.Spec.Gateways = slices.Clone(b.cfg.Gateways)
	vs.Spec.Hosts = []string{t.Host}
	vs.Spec.Http = []*networking.HTTPRoute{route}
	return vs
}

// routingVS is the seed's customdomain-routing: on the local gateway, the
// copies (authority "<host>-shadow") go to the dark revision and the host's
// requests to the live one.
func (b *Istio) routingVS(exp *experiment.Experiment, t *target) *networkingv1.VirtualService {
	vs := &networkingv1.VirtualService{ObjectMeta: b.meta(exp, t.namespace, t.routing)}
	vs.Spec.Gateways = []string{b.cfg.LocalGateway}
	vs.Spec.Hosts = []string{"*"}
	vs.Spec.Http = []*networking.HTTPRoute{
		authorityRoute(t.Host+shadowSuffix, t.namespace, t.dark),
		authorityRoute(t.Host, t.namespace, t.live),
	}
	return vs
}

// authorityRoute sends requests whose authority starts with prefix to one
// Knative revision, through its private service.
func authorityRoute(prefix, ns, revision string) *networking.HTTPRoute {
	return &networking.HTTPRoute{
		Match: []*networking.HTTPMatchRequest{{
			Authority: &networking.StringMatch{MatchType: &networking.StringMatch_Prefix{Prefix: prefix}},
		}},
		Route: []*networking.HTTPRouteDestination{{
			Destination: &networking.Destination{
				Host: revision + "." + ns + ".svc.cluster.local",
				Port: &networking.PortSelector{Number: 80},
			},
			Headers: &networking.Headers{Request: &networking.Headers_HeaderOperations{
				Set: map[string]string{headerKnativeNamespace: ns, headerKnativeRevision: revision},
			}},
		}},
	}
}
