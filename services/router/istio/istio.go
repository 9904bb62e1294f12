// Package istio is the router's Kubernetes backend, the seed's mirroring
// done by Istio: it checks the target Knative Service like Iter8's
// knative/init-experiment, then writes the seed's two VirtualServices
// (routing-rules.yaml).
package istio

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"time"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	"istio.io/client-go/pkg/clientset/versioned"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/dynamic"

	"github.com/darklaunch/darklaunch/services/router/mirroring"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

// Name is the backend's name, in router.Config.Backend and in the routing
// status it reports.
const Name = "istio"

// RevisionVariable is the baseline's variable that names the dark Knative
// revision, as in Iter8's knative experiments.
const RevisionVariable = "revision"

// cleanupTimeout bounds the removal of a half-written setup, which runs
// even when Setup's own context has ended.
const cleanupTimeout = 10 * time.Second

// Istio is the Kubernetes backend. The mirroring VirtualService sends the
// host's traffic to Knative's local gateway and mirrors a share of it
// there; Envoy gives the copies the authority "<host>-shadow", and the
// routing one sends those to the dark revision and the rest to the live
// one. It needs get/list/create/update/delete on VirtualServices and get on
// Knative Services, in the target's namespace.
type Istio struct {
	cfg     Config
	set     mirroring.Settings
	vs      virtualServices
	dyn     dynamic.Interface
	log     *slog.Logger
	allowed map[string]bool // nil: any namespace
}

// New returns the istio backend on the given clients (tests pass fake or
// real ones). Zero values of cfg and set take their defaults.
func New(cfg Config, set mirroring.Settings, ic versioned.Interface, dyn dynamic.Interface, log *slog.Logger) (*Istio, error) {
	if ic == nil || dyn == nil {
		return nil, errors.New("istio backend: no kubernetes clients")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg.Default()
	set.Default()
	if err := errors.Join(set.Validate(), cfg.Validate()); err != nil {
		return nil, err
	}
	b := &Istio{cfg: cfg, set: set, vs: newVirtualServices(ic, cfg.LegacyMirrorPercent), dyn: dyn, log: log}
	if len(cfg.Namespaces) > 0 {
		b.allowed = map[string]bool{}
		for _, ns := range cfg.Namespaces {
			b.allowed[ns] = true
		}
	}
	return b, nil
}

// NewFromKubeconfig builds the clients from cfg.Kubeconfig (see Config)
// and the backend on them.
func NewFromKubeconfig(cfg Config, set mirroring.Settings, log *slog.Logger) (*Istio, error) {
	ic, dyn, err := kubeClients(cfg.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("istio backend: %w", err)
	}
	return New(cfg, set, ic, dyn, log)
}

// target is what an experiment asks of the istio backend, defaults
// applied.
type target struct {
	mirroring.Spec
	namespace, service string // the Knative Service, and where the VirtualServices go
	dark               string // the baseline's revision
	live               string // the live revision, once known
	mirroring, routing string // the VirtualServices' names
}

func (t *target) status(objects []string) experiment.RoutingStatus {
	st := t.Status(Name)
	st.Live, st.Dark, st.Objects = t.live, t.dark, objects
	return st
}

// objects names the VirtualServices as RoutingStatus lists them.
func (t *target) objects() []string {
	return []string{
		"VirtualService " + t.namespace + "/" + t.mirroring,
		"VirtualService " + t.namespace + "/" + t.routing,
	}
}

// resolve reads the experiment, falling back on the router's settings.
func (b *Istio) resolve(exp *experiment.Experiment) (*target, error) {
	ns, svc := exp.TargetNamespaceName()
	m, percentErr := b.set.Resolve(exp)
	t := &target{Spec: m, namespace: ns, service: svc}
	t.dark, _ = exp.BaselineVariable(RevisionVariable)
	label, _, _ := strings.Cut(t.Host, ".")
	t.mirroring, t.routing = label+"-mirroring", label+"-routing"

	if !b.namespaceAllowed(ns) {
		return t, fmt.Errorf("target namespace %s is not one the router may act in (allowed: %s)", ns, strings.Join(b.cfg.Namespaces, ", "))
	}
	if m.KeepHost {
		return t, fmt.Errorf("spec.mirroring.keepHost needs the proxy backend: Istio's mirror always sends the copies with the authority %s%s, which the mirroring VirtualService routes to the dark revision", t.Host, shadowSuffix)
	}
	if percentErr != nil {
		return t, percentErr
	}
	if b.cfg.LegacyMirrorPercent && t.Percent != math.Trunc(t.Percent) {
		return t, fmt.Errorf("mirror percent %v is not a whole number, and the router writes the integer mirrorPercent of old Istio (legacy mirror percent)", t.Percent)
	}
	if t.dark == "" {
		return t, fmt.Errorf("no dark revision: spec.versionInfo.baseline needs the variable %q naming the Knative revision under test", RevisionVariable)
	}
	for _, name := range []string{t.mirroring, t.routing} {
		if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
			return t, fmt.Errorf("host %s gives the VirtualService name %q: %s", t.Host, name, strings.Join(errs, "; "))
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
	case mirroring.NeedsInitCheck(exp):
		if t.live, err = b.waitKnative(ctx, t); err != nil {
			return t.status(nil), err
		}
	case r != nil && r.Backend == Name && r.Live != "":
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
	log.Info("mirroring set up", "host", t.Host, "percent", t.Percent, "live", t.live, "dark", t.dark,
		"virtualservices", []string{t.mirroring, t.routing}, "namespace", t.namespace)
	return t.status(t.objects()), nil
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
