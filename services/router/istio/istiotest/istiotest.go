// Package istiotest is the Kubernetes side of the istio backend's tests:
// the seed's experiment and Knative Service, fake Istio and dynamic
// clients holding them, and the istio backend's harness for the router's
// contract suite, which runs on fake clients and on a real API server alike.
package istiotest

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nuid"
	networking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	"istio.io/client-go/pkg/clientset/versioned"
	istiofake "istio.io/client-go/pkg/clientset/versioned/fake"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"sigs.k8s.io/yaml"

	"github.com/darklaunch/darklaunch/services/router/istio"
	"github.com/darklaunch/darklaunch/services/router/routertest"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

// SeedDocuments are the YAML documents of the seed's file name in
// examples/mirroring, found from the module's root whichever package's
// test reads it.
func SeedDocuments(t testing.TB, name string) [][]byte {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
	data, err := os.ReadFile(filepath.Join(dir, "examples", "mirroring", name))
	if err != nil {
		t.Fatal(err)
	}
	var docs [][]byte
	for _, d := range bytes.Split(data, []byte("\n---\n")) {
		if len(bytes.TrimSpace(d)) > 0 {
			docs = append(docs, d)
		}
	}
	return docs
}

// SeedExperiment is the seed's experiment.yaml as the judge stores it: a
// new experiment, with a UID.
func SeedExperiment(t testing.TB) *experiment.Experiment {
	t.Helper()
	e, err := experiment.Parse(SeedDocuments(t, "experiment.yaml")[0])
	if err != nil {
		t.Fatal(err)
	}
	e.Metadata.UID = nuid.Next()
	e.Status.Stage = experiment.StageInitializing
	return e
}

// Traffic is one entry of a Knative Service's status.traffic.
type Traffic struct {
	Revision string
	Percent  int64
	Latest   bool
}

// SeedTraffic is the seed Service's status once both revisions exist: v1
// serves everything, v2 (the latest, the dark one) nothing.
func SeedTraffic() []Traffic {
	return []Traffic{{Revision: "sample-app-v1", Percent: 100}, {Revision: "sample-app-v2", Percent: 0, Latest: true}}
}

// KnativeService is the seed's service.yaml (its second document, which
// adds sample-app-v2) with the status Knative would give it: the conditions
// (all True unless overridden as type → status, "" for absent) and the
// traffic. The conditions are those Knative reports on a Service, which
// Iter8's knative init task wants True.
func KnativeService(t testing.TB, tr []Traffic, conditions map[string]string) *unstructured.Unstructured {
	t.Helper()
	docs := SeedDocuments(t, "service.yaml")
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal(docs[len(docs)-1], &u.Object); err != nil {
		t.Fatal(err)
	}
	var conds []any
	for _, typ := range []string{"Ready", "ConfigurationsReady", "RoutesReady"} {
		st := "True"
		if s, ok := conditions[typ]; ok {
			st = s
		}
		if st == "" {
			continue // absent
		}
		conds = append(conds, condition(typ, st))
	}
	var trs []any
	for _, x := range tr {
		trs = append(trs, map[string]any{"revisionName": x.Revision, "percent": x.Percent, "latestRevision": x.Latest})
	}
	u.Object["status"] = map[string]any{"conditions": conds, "traffic": trs}
	return u
}

func condition(typ, status string) map[string]any {
	c := map[string]any{"type": typ, "status": status}
	if status != "True" {
		c["reason"] = "IngressNotConfigured"
		c["message"] = "Ingress has not yet been reconciled."
	}
	return c
}

// Cluster is fake Istio and dynamic clients, the cluster the istio backend
// talks to in unit tests.
type Cluster struct {
	Istio   *istiofake.Clientset
	Dynamic *dynamicfake.FakeDynamicClient
}

// NewCluster holds objs: Knative Services (unstructured) and Istio objects.
func NewCluster(t testing.TB, objs ...runtime.Object) *Cluster {
	t.Helper()
	c := &Cluster{Istio: istiofake.NewSimpleClientset()}
	var ks []runtime.Object
	for _, o := range objs {
		if u, ok := o.(*unstructured.Unstructured); ok {
			ks = append(ks, u)
		} else if err := c.Istio.Tracker().Add(o); err != nil {
			t.Fatal(err)
		}
	}
	c.Dynamic = dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{istio.KnativeServices: "ServiceList"}, ks...)
	return c
}

// VirtualServices lists the v1 VirtualServices in ns by name.
func (c *Cluster) VirtualServices(t testing.TB, ns string) map[string]*networkingv1.VirtualService {
	t.Helper()
	return VirtualServices(t, c.Istio, ns)
}

// Writes counts the create, update and delete calls on VirtualServices.
func (c *Cluster) Writes() int {
	n := 0
	for _, a := range c.Istio.Actions() {
		switch a.GetVerb() {
		case "create", "update", "delete", "patch":
			n++
		}
	}
	return n
}

// VirtualServices lists the v1 VirtualServices in ns by name.
func VirtualServices(t testing.TB, ic versioned.Interface, ns string) map[string]*networkingv1.VirtualService {
	t.Helper()
	l, err := ic.NetworkingV1().VirtualServices(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]*networkingv1.VirtualService{}
	for _, vs := range l.Items {
		m[vs.Name] = vs
	}
	return m
}

// ForeignVirtualService is a VirtualService for customdomain.com in
// "default" that darklaunch did not write (unless lbls say so).
func ForeignVirtualService(name string, lbls map[string]string) *networkingv1.VirtualService {
	vs := &networkingv1.VirtualService{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: lbls}}
	vs.Spec.Hosts = []string{"customdomain.com"}
	vs.Spec.Http = []*networking.HTTPRoute{{Route: []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: "someone-else"}}}}}
	return vs
}

// Harness is the istio backend's world for routertest.TestBackend: the
// seed's Knative Service sample-app, Ready, in ns (the caller creates it),
// on clients ic and dyn (fake or real). newBackend returns a backend on
// them; a second one is a restarted router on the same cluster.
func Harness(ic versioned.Interface, dyn dynamic.Interface, ns string, newBackend func(t *testing.T) routertest.Backend) routertest.Harness {
	return routertest.Harness{
		New: newBackend,
		Experiment: func(t *testing.T, name, host string) *experiment.Experiment {
			e := SeedExperiment(t)
			e.Metadata.Name = name
			e.Spec.Target = ns + "/sample-app"
			percent := 40.0
			e.Spec.Mirroring = &experiment.Mirroring{Host: host, Percent: &percent}
			return e
		},
		Break: func(t *testing.T) {
			ctx := context.Background()
			svcs := dyn.Resource(istio.KnativeServices).Namespace(ns)
			ks, err := svcs.Get(ctx, "sample-app", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			status, _ := ks.Object["status"].(map[string]any)
			status["conditions"] = []any{condition("Ready", "False"), condition("ConfigurationsReady", "True"), condition("RoutesReady", "False")}
			if _, err := svcs.UpdateStatus(ctx, ks, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		},
		Routes: func(t *testing.T, _ routertest.Backend) map[string]string {
			return routes(t, VirtualServices(t, ic, ns))
		},
	}
}

// routes reads what the backend mirrors off its VirtualServices: each
// mirroring one names a host, and its routing one must be there too, for
// the same run of the same experiment.
func routes(t *testing.T, vss map[string]*networkingv1.VirtualService) map[string]string {
	t.Helper()
	out := map[string]string{}
	for name, vs := range vss {
		if vs.Labels[istio.LabelManagedBy] != istio.ManagedBy {
			continue
		}
		base, isMirroring := strings.CutSuffix(name, "-mirroring")
		if !isMirroring {
			if _, ok := vss[strings.TrimSuffix(name, "-routing")+"-mirroring"]; !ok {
				t.Errorf("VirtualService %s without its mirroring one", name)
			}
			continue
		}
		uid := vs.Annotations[istio.AnnotationExperimentUID]
		routing := vss[base+"-routing"]
		switch {
		case routing == nil:
			t.Errorf("VirtualService %s without its routing one", name)
		case routing.Annotations[istio.AnnotationExperimentUID] != uid || routing.Labels[istio.LabelExperiment] != vs.Labels[istio.LabelExperiment]:
			t.Errorf("VirtualServices %s and %s belong to different experiments", name, routing.Name)
		}
		for _, h := range vs.Spec.Hosts {
			out[h] = uid
		}
	}
	return out
}
