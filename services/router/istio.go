package router

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	"istio.io/client-go/pkg/clientset/versioned"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/dynamic"

	"github.com/darklaunch/darklaunch/shared/experiment"
)

// Labels and annotation of the VirtualServices darklaunch manages. Only an
// object with both labels, the second naming the experiment, is ever
// updated or deleted; the annotation tells two runs of one name apart.
const (
	LabelManagedBy          = "app.kubernetes.io/managed-by"
	ManagedBy               = "darklaunch"
	LabelExperiment         = "darklaunch.dev/experiment"
	AnnotationExperimentUID = "darklaunch.dev/experiment-uid"
)

// RevisionVariable is the baseline's variable that names the dark Knative
// revision, as in Iter8's knative experiments.
const RevisionVariable = "revision"

// Knative's headers that make its local gateway deliver a request to one
// revision, as the seed's routing rules set them.
const (
	headerKnativeNamespace = "Knative-Serving-Namespace"
	headerKnativeRevision  = "Knative-Serving-Revision"
)

// shadowSuffix is what Envoy appends to the authority of a mirrored copy.
const shadowSuffix = "-shadow"

// cleanupTimeout bounds the removal of a half-written setup, which runs
// even when Setup's own context has ended.
const cleanupTimeout = 10 * time.Second

// Istio is the Kubernetes backend, the seed's mirroring done by Istio: it
// checks the target Knative Service like Iter8's knative/init-experiment,
// then writes the seed's two VirtualServices (routing-rules.yaml). The
// mirroring one sends the host's traffic to Knative's local gateway and
// mirrors a share of it there; Envoy gives the copies the authority
// "<host>-shadow", and the routing one sends those to the dark revision and
// the rest to the live one. It needs get/list/create/update/delete on
// VirtualServices and get on Knative Services, in the target's namespace.
type Istio struct {
	cfg     Config
	vs      virtualServices
	dyn     dynamic.Interface
	log     *slog.Logger
	allowed map[string]bool // nil: any namespace
}

var _ Backend = (*Istio)(nil)

// NewIstio returns the istio backend on the given clients (tests pass fake
// or real ones). The configuration's zero values take their defaults.
func NewIstio(cfg Config, ic versioned.Interface, dyn dynamic.Interface, log *slog.Logger) (*Istio, error) {
	if ic == nil || dyn == nil {
		return nil, errors.New("istio backend: no kubernetes clients")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	b := &Istio{cfg: cfg, vs: newVirtualServices(ic, cfg.LegacyMirrorPercent), dyn: dyn, log: log}
	if len(cfg.Namespaces) > 0 {
		b.allowed = map[string]bool{}
		for _, ns := range cfg.Namespaces {
			b.allowed[ns] = true
		}
	}
	return b, nil
}

// newIstioFromKubeconfig builds the clients from cfg.Kubeconfig (see
// Config) and the backend on them.
func newIstioFromKubeconfig(cfg Config, log *slog.Logger) (*Istio, error) {
	ic, dyn, err := kubeClients(cfg.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("istio backend: %w", err)
	}
	return NewIstio(cfg, ic, dyn, log)
}

// istioTarget is what an experiment asks of the istio backend, defaults
// applied.
type istioTarget struct {
	namespace, service string // the Knative Service, and where the VirtualServices go
	host               string
	percent            float64
	dark               string // the baseline's revision
	liveRevision       string // spec.mirroring.liveRevision, if any
	live               string // the live revision, once known
	mirroring, routing string // the VirtualServices' names
}

func (t *istioTarget) status(objects []string) experiment.RoutingStatus {
	return experiment.RoutingStatus{Backend: BackendIstio, Host: t.host, Percent: t.percent, Live: t.live, Dark: t.dark, Objects: objects}
}

// objects names the VirtualServices as RoutingStatus lists them.
func (t *istioTarget) objects() []string {
	return []string{
		"VirtualService " + t.namespace + "/" + t.mirroring,
		"VirtualService " + t.namespace + "/" + t.routing,
	}
}

// resolve reads the experiment, falling back to the configuration.
func (b *Istio) resolve(exp *experiment.Experiment) (*istioTarget, error) {
	ns, svc := exp.TargetNamespaceName()
	m := exp.Spec.Mirroring
	if m == nil {
		m = &experiment.Mirroring{}
	}
	t := &istioTarget{namespace: ns, service: svc, host: hostOnly(m.Host), percent: b.cfg.DefaultPercent, liveRevision: m.LiveRevision}
	if t.host == "" {
		t.host = hostOnly(b.cfg.DefaultHost)
	}
	if m.Percent != nil {
		t.percent = *m.Percent
	}
	t.dark, _ = exp.BaselineVariable(RevisionVariable)
	label, _, _ := strings.Cut(t.host, ".")
	t.mirroring, t.routing = label+"-mirroring", label+"-routing"

	if !b.namespaceAllowed(ns) {
		return t, fmt.Errorf("target namespace %s is not one the router may act in (allowed: %s)", ns, strings.Join(b.cfg.Namespaces, ", "))
	}
	if !(t.percent > 0 && t.percent <= 100) {
		return t, fmt.Errorf("spec.mirroring.percent %v: must be greater than 0 and at most 100", t.percent)
	}
	if b.cfg.LegacyMirrorPercent && t.percent != math.Trunc(t.percent) {
		return t, fmt.Errorf("mirror percent %v is not a whole number, and the router writes the integer mirrorPercent of old Istio (legacy mirror percent)", t.percent)
	}
	if t.dark == "" {
		return t, fmt.Errorf("no dark revision: spec.versionInfo.baseline needs the variable %q naming the Knative revision under test", RevisionVariable)
	}
	for _, name := range []string{t.mirroring, t.routing} {
		if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
			return t, fmt.Errorf("host %s gives the VirtualService name %q: %s", t.host, name, strings.Join(errs, "; "))
		}
	}
	return t, nil
}

func (b *Istio) namespaceAllowed(ns string) bool { return b.allowed == nil || b.allowed[ns] }

// Setup checks the target Knative Service (for a new experiment) and writes
// the two VirtualServices, or brings them back to what they should be. A
// VirtualService of the same name that darklaunch does not manage is never
// touched: Setup fails before writing anything.
func (b *Istio) Setup(ctx context.Context, exp *experiment.Experiment) (experiment.RoutingStatus, error) {
	t, err := b.resolve(exp)
	if err != nil {
		return t.status(nil), err
	}
	log := b.log.With("experiment", exp.Key())
	// Refuse early, before waiting for the Service, when the names are taken.
	for _, name := range []string{t.mirroring, t.routing} {
		cur, err := b.vs.Get(ctx, t.namespace, name)
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return t.status(nil), fmt.Errorf("reading VirtualService %s/%s: %w", t.namespace, name, err)
		}
		if err := owned(cur, exp); err != nil {
			return t.status(nil), err
		}
	}

	switch r := exp.Status.Routing; {
	case needsInitCheck(exp):
		if t.live, err = b.waitKnative(ctx, t); err != nil {
			return t.status(nil), err
		}
	case r != nil && r.Backend == BackendIstio && r.Live != "":
		// The judge accepted this live revision: restore exactly that,
		// at once, whatever the Service says now.
		t.live = r.Live
	default:
		if t.live, err = b.checkKnative(ctx, t); err != nil {
			return t.status(nil), err
		}
	}

	// The routing one first: until the mirroring one sends traffic to the
	// local gateway, nothing reaches it, whereas the other order would
	// leave live requests without a route for a moment.
	routing, created, err := b.ensure(ctx, exp, b.routingVS(exp, t))
	if err != nil {
		return t.status(nil), err
	}
	if _, _, err := b.ensure(ctx, exp, b.mirroringVS(exp, t)); err != nil {
		if created {
			// Nothing half-created: this Setup wrote the routing one.
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
			if derr := b.vs.Delete(cctx, routing.Namespace, routing.Name, routing.ResourceVersion); derr != nil && !apierrors.IsNotFound(derr) {
				log.Warn("VirtualService created by a failed setup not removed", "virtualservice", t.namespace+"/"+t.routing, "err", derr)
			}
			cancel()
		}
		return t.status(nil), err
	}
	log.Info("mirroring set up", "host", t.host, "percent", t.percent, "live", t.live, "dark", t.dark,
		"virtualservices", []string{t.mirroring, t.routing}, "namespace", t.namespace)
	return t.status(t.objects()), nil
}

// owned says why darklaunch may not write cur for exp, or nil.
func owned(cur *networkingv1.VirtualService, exp *experiment.Experiment) error {
	if cur.Labels[LabelManagedBy] != ManagedBy {
		return fmt.Errorf("VirtualService %s/%s exists and is not managed by darklaunch; refusing to overwrite it", cur.Namespace, cur.Name)
	}
	if other := cur.Labels[LabelExperiment]; other != experimentLabel(exp) {
		return fmt.Errorf("VirtualService %s/%s is managed by darklaunch for experiment %s; refusing to take it over (end that experiment or delete the VirtualService)", cur.Namespace, cur.Name, other)
	}
	return nil
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
		if apierrors.IsNotFound(err) {
			got, err := b.vs.Create(ctx, want)
			if apierrors.IsAlreadyExists(err) {
				last = err
				continue
			}
			if err != nil {
				return nil, false, fmt.Errorf("creating VirtualService %s/%s: %w", want.Namespace, want.Name, err)
			}
			log.Info("VirtualService created")
			return got, true, nil
		}
		if err != nil {
			return nil, false, fmt.Errorf("reading VirtualService %s/%s: %w", want.Namespace, want.Name, err)
		}
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
		got, err := b.vs.Update(ctx, upd)
		if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
			// Changed, or deleted (an older run's teardown racing this
			// setup), since it was read: read again, and create it if gone.
			last = err
			continue
		}
		if err != nil {
			return nil, false, fmt.Errorf("updating VirtualService %s/%s: %w", want.Namespace, want.Name, err)
		}
		log.Info("VirtualService updated")
		return got, false, nil
	}
	return nil, false, fmt.Errorf("writing VirtualService %s/%s: kept changing under the router: %w", want.Namespace, want.Name, last)
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

// Teardown deletes the VirtualServices darklaunch wrote for exp (this run
// of it: the UID must match), the mirroring one first. Found by label, they
// are removed whatever host the configuration names now.
func (b *Istio) Teardown(ctx context.Context, exp *experiment.Experiment) error {
	ns, _ := exp.TargetNamespaceName()
	if !b.namespaceAllowed(ns) {
		return nil // Setup wrote nothing there
	}
	sel := labels.SelectorFromSet(labels.Set{LabelManagedBy: ManagedBy, LabelExperiment: experimentLabel(exp)}).String()
	items, err := b.vs.List(ctx, ns, sel)
	if err != nil {
		return fmt.Errorf("listing the VirtualServices of %s in %s: %w", exp.Key(), ns, err)
	}
	// The mirroring one sends traffic to the routing one: remove it first
	// so that live requests never lose their route.
	slices.SortStableFunc(items, func(a, c *networkingv1.VirtualService) int {
		return boolInt(!strings.HasSuffix(a.Name, "-mirroring")) - boolInt(!strings.HasSuffix(c.Name, "-mirroring"))
	})
	var errs []error
	for _, vs := range items {
		if err := b.remove(ctx, exp, vs); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
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
	if exp.Metadata.UID != "" {
		m.Annotations = map[string]string{AnnotationExperimentUID: exp.Metadata.UID}
	}
	return m
}

// mirroringVS is the seed's customdomain-mirroring: the host's traffic, from
// the mesh and the ingress gateway, goes to Knative's local gateway with
// its authority kept, and a share of it is mirrored there too.
func (b *Istio) mirroringVS(exp *experiment.Experiment, t *istioTarget) *networkingv1.VirtualService {
	vs := &networkingv1.VirtualService{ObjectMeta: b.meta(exp, t.namespace, t.mirroring)}
	route := &networking.HTTPRoute{
		Rewrite: &networking.HTTPRewrite{Authority: t.host},
		Route:   []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: b.cfg.GatewayHost}}},
		Mirror:  &networking.Destination{Host: b.cfg.GatewayHost},
	}
	if b.cfg.LegacyMirrorPercent {
		route.MirrorPercent = wrapperspb.UInt32(uint32(t.percent))
	} else {
		route.MirrorPercentage = &networking.Percent{Value: t.percent}
	}
	vs.Spec.Gateways = slices.Clone(b.cfg.Gateways)
	vs.Spec.Hosts = []string{t.host}
	vs.Spec.Http = []*networking.HTTPRoute{route}
	return vs
}

// routingVS is the seed's customdomain-routing: on the local gateway, the
// copies (authority "<host>-shadow") go to the dark revision and the host's
// requests to the live one.
func (b *Istio) routingVS(exp *experiment.Experiment, t *istioTarget) *networkingv1.VirtualService {
	vs := &networkingv1.VirtualService{ObjectMeta: b.meta(exp, t.namespace, t.routing)}
	vs.Spec.Gateways = []string{b.cfg.LocalGateway}
	vs.Spec.Hosts = []string{"*"}
	vs.Spec.Http = []*networking.HTTPRoute{
		authorityRoute(t.host+shadowSuffix, t.namespace, t.dark),
		authorityRoute(t.host, t.namespace, t.live),
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
