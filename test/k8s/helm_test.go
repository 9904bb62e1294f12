package k8s

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	istiobackend "github.com/darklaunch/darklaunch/services/router/istio"
	"github.com/darklaunch/darklaunch/services/router/mirroring"
)

const chartDir = "../../deploy/helm/darklaunch"

// helmBinary finds helm on PATH or where `go install` puts it; without it
// the test is skipped, except in CI.
func helmBinary(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("helm"); err == nil {
		return p
	}
	home, _ := os.UserHomeDir()
	for _, p := range []string{os.Getenv("GOBIN"), filepath.Join(os.Getenv("GOPATH"), "bin"), filepath.Join(home, "go", "bin")} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(filepath.Join(p, "helm")); err == nil {
			return filepath.Join(p, "helm")
		}
	}
	msg := "no helm binary: go install helm.sh/helm/v3/cmd/helm@v3.22.0"
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

func runHelm(t *testing.T, helm string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, helm, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestHelmChartOnRealAPIServer lints the chart, installs it into a real API
// server with two replicas of every service (checkReplicas), and proves its RBAC least-privilege by impersonating the chart's
// ServiceAccounts: the router can do its whole job (the real istio backend,
// run with the router's identity) in an allowed namespace, and is forbidden
// in another namespace, cluster-wide and on Secrets; the other services can
// do nothing at all.
func TestHelmChartOnRealAPIServer(t *testing.T) {
	helm := helmBinary(t)
	cfg := cluster(t)
	admin := clientsFor(t, cfg)
	ctx := context.Background()

	lint := runHelm(t, helm, "lint", "--strict", chartDir, "--set", "nats.url=nats://nats:4222")
	if !strings.Contains(lint, "0 chart(s) failed") || strings.Contains(lint, "[WARNING]") || strings.Contains(lint, "[ERROR]") {
		t.Errorf("helm lint is not clean:\n%s", lint)
	}

	user, err := clusterEnv.AddUser(envtest.User{Name: "helm-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	kcFile := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kcFile, kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	const (
		release = "darklaunch"
		system  = "darklaunch-system"
		allowed = "team-a"
		denied  = "team-b"
	)
	for _, ns := range []string{allowed, denied} {
		admin.createNamespace(t, ns)
	}
	// Two replicas of every service (the instances divide the work over NATS).
	runHelm(t, helm, "install", release, chartDir, "--kubeconfig", kcFile, "--namespace", system, "--create-namespace",
		"--set", "nats.url=nats://nats.nats:4222", "--set", "router.namespaces={"+allowed+"}", "--wait=false", "--timeout", "1m",
		"--set", "router.replicas=2", "--set", "loadgen.replicas=2", "--set", "collector.replicas=2", "--set", "judge.replicas=2")
	t.Cleanup(func() { runHelm(t, helm, "uninstall", release, "--kubeconfig", kcFile, "--namespace", system) })
	checkReplicas(t, admin, system, release, 2)

	// What the server now holds.
	deps, err := admin.core.AppsV1().Deployments(system).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(deps.Items) != 4 {
		t.Errorf("%d Deployments, want 4 (router, loadgen, collector, judge)", len(deps.Items))
	}
	for _, d := range deps.Items {
		pod := d.Spec.Template.Spec
		c := pod.Containers[0]
		if c.SecurityContext == nil || c.SecurityContext.ReadOnlyRootFilesystem == nil || !*c.SecurityContext.ReadOnlyRootFilesystem {
			t.Errorf("%s: root filesystem not read-only", d.Name)
		}
		if pod.SecurityContext == nil || pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot {
			t.Errorf("%s: may run as root", d.Name)
		}
		if c.ReadinessProbe == nil || c.LivenessProbe == nil {
			t.Errorf("%s: no probes", d.Name)
		}
		if len(c.Args) == 0 && len(c.Command) == 0 {
			t.Errorf("%s: no command", d.Name)
		}
	}
	if roles, _ := admin.core.RbacV1().Roles(denied).List(ctx, metav1.ListOptions{}); len(roles.Items) != 0 {
		t.Errorf("the chart created Roles in %s, which router.namespaces does not list", denied)
	}
	crs, _ := admin.core.RbacV1().ClusterRoles().List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/instance=" + release})
	crbs, _ := admin.core.RbacV1().ClusterRoleBindings().List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/instance=" + release})
	if len(crs.Items)+len(crbs.Items) != 0 {
		t.Errorf("the chart created cluster-wide RBAC: %d ClusterRoles, %d bindings", len(crs.Items), len(crbs.Items))
	}

	sa := func(svc string) string { return "system:serviceaccount:" + system + ":" + release + "-" + svc }
	rt := admin.as(t, sa("router"))

	// The router's whole job in the allowed namespace, with its identity:
	// read the Knative Service, create and remove the VirtualServices.
	admin.applySeedService(t, allowed)
	b, err := istiobackend.New(istiobackend.Config{Namespaces: []string{allowed}}, mirroring.Settings{InitTimeout: 5 * time.Second, InitInterval: 100 * time.Millisecond}, rt.istio, rt.dyn, nil)
	if err != nil {
		t.Fatal(err)
	}
	exp := seedExperiment(t, allowed, "rbac-uid")
	if _, err := b.Setup(ctx, exp); err != nil {
		t.Fatalf("as the router's ServiceAccount, setup in %s: %v", allowed, err)
	}
	if err := b.Teardown(ctx, exp); err != nil {
		t.Fatalf("as the router's ServiceAccount, teardown in %s: %v", allowed, err)
	}

	// And nothing more.
	forbidden := func(what string, err error) {
		t.Helper()
		if !apierrors.IsForbidden(err) {
			t.Errorf("router ServiceAccount: %s: %v, want Forbidden", what, err)
		}
	}
	vs := &networkingv1.VirtualService{ObjectMeta: metav1.ObjectMeta{Name: "x"}}
	vs.Spec.Hosts = []string{"x.example.com"}
	_, err = rt.istio.NetworkingV1().VirtualServices(denied).Create(ctx, vs, metav1.CreateOptions{})
	forbidden("create a VirtualService in "+denied, err)
	_, err = rt.istio.NetworkingV1().VirtualServices("").List(ctx, metav1.ListOptions{})
	forbidden("list VirtualServices cluster-wide", err)
	_, err = rt.dyn.Resource(istiobackend.KnativeServices).Namespace(denied).Get(ctx, "sample-app", metav1.GetOptions{})
	forbidden("read Knative Services in "+denied, err)
	_, err = rt.core.CoreV1().Secrets(allowed).List(ctx, metav1.ListOptions{})
	forbidden("list Secrets in "+allowed, err)
	_, err = rt.core.CoreV1().Secrets(system).Get(ctx, "anything", metav1.GetOptions{})
	forbidden("read Secrets in "+system, err)
	err = rt.dyn.Resource(istiobackend.KnativeServices).Namespace(allowed).Delete(ctx, "sample-app", metav1.DeleteOptions{})
	forbidden("delete the Knative Service", err)
	if _, err := b.Setup(ctx, seedExperiment(t, denied, "denied-uid")); err == nil {
		t.Errorf("router setup in %s succeeded", denied)
	}

	// Back to one replica each: the upgrade removes the PodDisruptionBudgets.
	runHelm(t, helm, "upgrade", release, chartDir, "--kubeconfig", kcFile, "--namespace", system, "--reuse-values",
		"--set", "router.replicas=1", "--set", "loadgen.replicas=1", "--set", "collector.replicas=1", "--set", "judge.replicas=1",
		"--wait=false", "--timeout", "1m")
	checkReplicas(t, admin, system, release, 1)

	for _, svc := range []string{"judge", "collector", "loadgen"} {
		other := admin.as(t, sa(svc))
		_, err := other.istio.NetworkingV1().VirtualServices(allowed).List(ctx, metav1.ListOptions{})
		if !apierrors.IsForbidden(err) {
			t.Errorf("%s ServiceAccount lists VirtualServices: %v, want Forbidden", svc, err)
		}
		_, err = other.core.CoreV1().Secrets(system).List(ctx, metav1.ListOptions{})
		if !apierrors.IsForbidden(err) {
			t.Errorf("%s ServiceAccount lists Secrets: %v, want Forbidden", svc, err)
		}
	}
}
