package k8s

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	istio "istio.io/client-go/pkg/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	istiobackend "github.com/darklaunch/darklaunch/services/router/istio"
	"github.com/darklaunch/darklaunch/shared/experiment"
)

// kube holds the clients of one identity.
type kube struct {
	cfg   *rest.Config
	core  kubernetes.Interface
	dyn   dynamic.Interface
	istio istio.Interface
}

func clientsFor(t *testing.T, cfg *rest.Config) *kube {
	t.Helper()
	k := &kube{cfg: cfg}
	var err error
	if k.core, err = kubernetes.NewForConfig(cfg); err != nil {
		t.Fatal(err)
	}
	if k.dyn, err = dynamic.NewForConfig(cfg); err != nil {
		t.Fatal(err)
	}
	if k.istio, err = istio.NewForConfig(cfg); err != nil {
		t.Fatal(err)
	}
	return k
}

// as returns clients that impersonate user (e.g. a ServiceAccount) with the
// admin's credentials: what the API server then allows is exactly what RBAC
// grants user.
func (k *kube) as(t *testing.T, user string) *kube {
	t.Helper()
	cfg := rest.CopyConfig(k.cfg)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user}
	return clientsFor(t, cfg)
}

func (k *kube) createNamespace(t *testing.T, name string) {
	t.Helper()
	_, err := k.core.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("namespace %s: %v", name, err)
	}
}

func repoFile(t *testing.T, parts ...string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(append([]string{"..", ".."}, parts...)...))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// applySeedService applies the seed's service.yaml into ns as kubectl would
// (the first document creates sample-app-v1, the second adds sample-app-v2
// with the traffic split), then plays Knative's controller, which does not
// run here: it writes the status a Ready service serving v1 and v2 has.
func (k *kube) applySeedService(t *testing.T, ns string) {
	t.Helper()
	ctx := context.Background()
	svcs := k.dyn.Resource(istiobackend.KnativeServices).Namespace(ns)
	for i, doc := range bytes.Split(repoFile(t, "examples", "mirroring", "service.yaml"), []byte("\n---\n")) {
		var obj unstructured.Unstructured
		if err := yaml.Unmarshal(doc, &obj.Object); err != nil {
			t.Fatalf("service.yaml document %d: %v", i, err)
		}
		obj.SetNamespace(ns)
		cur, err := svcs.Get(ctx, obj.GetName(), metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			if _, err := svcs.Create(ctx, &obj, metav1.CreateOptions{}); err != nil {
				t.Fatalf("create the seed's Knative Service (document %d): %v", i, err)
			}
		case err != nil:
			t.Fatal(err)
		default:
			obj.SetResourceVersion(cur.GetResourceVersion())
			if _, err := svcs.Update(ctx, &obj, metav1.UpdateOptions{}); err != nil {
				t.Fatalf("update the seed's Knative Service (document %d): %v", i, err)
			}
		}
	}
	cur, err := svcs.Get(ctx, "sample-app", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Format(time.RFC3339)
	cond := func(typ string) map[string]any {
		return map[string]any{"type": typ, "status": "True", "lastTransitionTime": now}
	}
	cur.Object["status"] = map[string]any{
		"observedGeneration":        cur.GetGeneration(),
		"conditions":                []any{cond("ConfigurationsReady"), cond("Ready"), cond("RoutesReady")},
		"latestCreatedRevisionName": "sample-app-v2",
		"latestReadyRevisionName":   "sample-app-v2",
		"url":                       "http://sample-app." + ns + ".example.com",
		"traffic": []any{
			map[string]any{"revisionName": "sample-app-v1", "percent": int64(100)},
			map[string]any{"revisionName": "sample-app-v2", "percent": int64(0), "latestRevision": true},
		},
	}
	if _, err := svcs.UpdateStatus(ctx, cur, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("write the Knative Service's status: %v", err)
	}
}

// seedExperiment is the seed's experiment.yaml, in namespace ns, with the
// UID the judge would give it.
func seedExperiment(t *testing.T, ns, uid string) *experiment.Experiment {
	t.Helper()
	doc := strings.Replace(string(repoFile(t, "examples", "mirroring", "experiment.yaml")), "target: default/sample-app", "target: "+ns+"/sample-app", 1)
	e, err := experiment.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	e.Metadata.UID = uid
	return e
}
