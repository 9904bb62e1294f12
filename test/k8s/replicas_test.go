package k8s

import (
	"context"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

var chartServices = []string{"router", "loadgen", "collector", "judge"}

// checkReplicas checks what the API server holds of the chart installed with n replicas of
// every service: the Deployments' replicas and rolling update (maxUnavailable 0, maxSurge
// 1), each pod's instance name from its own (DARKLAUNCH_INSTANCE from metadata.name), the soft
// anti-affinity spreading a service's pods over nodes, and a PodDisruptionBudget per service
// selecting exactly its pods, from 2 replicas (none for 1).
func checkReplicas(t *testing.T, admin *kube, ns, release string, n int32) {
	t.Helper()
	ctx := context.Background()
	pdbs, err := admin.core.PolicyV1().PodDisruptionBudgets(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/instance=" + release})
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]int{}
	for i, p := range pdbs.Items {
		byName[p.Name] = i
	}
	wantPDBs := 0
	if n > 1 {
		wantPDBs = len(chartServices)
	}
	if len(pdbs.Items) != wantPDBs {
		t.Errorf("%d PodDisruptionBudgets with %d replicas, want %d", len(pdbs.Items), n, wantPDBs)
	}
	for _, svc := range chartServices {
		name := release + "-" + svc
		d, err := admin.core.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Errorf("Deployment %s: %v", name, err)
			continue
		}
		if d.Spec.Replicas == nil || *d.Spec.Replicas != n {
			t.Errorf("%s: replicas %v, want %d", name, d.Spec.Replicas, n)
		}
		checkStrategy(t, d)
		checkInstanceEnv(t, d)
		checkAntiAffinity(t, d)
		if n < 2 {
			continue
		}
		i, ok := byName[name]
		if !ok {
			t.Errorf("no PodDisruptionBudget %s", name)
			continue
		}
		p := pdbs.Items[i]
		if p.Spec.MaxUnavailable == nil || *p.Spec.MaxUnavailable != intstr.FromInt32(1) || p.Spec.MinAvailable != nil {
			t.Errorf("%s: PodDisruptionBudget maxUnavailable %v minAvailable %v, want maxUnavailable 1", name, p.Spec.MaxUnavailable, p.Spec.MinAvailable)
		}
		if p.Spec.UnhealthyPodEvictionPolicy == nil || *p.Spec.UnhealthyPodEvictionPolicy != "AlwaysAllow" {
			t.Errorf("%s: unhealthyPodEvictionPolicy %v, want AlwaysAllow", name, p.Spec.UnhealthyPodEvictionPolicy)
		}
		sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
		if err != nil {
			t.Fatal(err)
		}
		if !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			t.Errorf("%s: the PodDisruptionBudget's selector %s misses the Deployment's pods %v", name, sel, d.Spec.Template.Labels)
		}
		for _, other := range chartServices {
			if other != svc && sel.Matches(labels.Set{"app.kubernetes.io/name": "darklaunch", "app.kubernetes.io/instance": release, "app.kubernetes.io/component": other}) {
				t.Errorf("%s: the PodDisruptionBudget's selector %s also takes the %s's pods", name, sel, other)
			}
		}
	}
}

func checkStrategy(t *testing.T, d *appsv1.Deployment) {
	t.Helper()
	s := d.Spec.Strategy
	if s.Type != appsv1.RollingUpdateDeploymentStrategyType || s.RollingUpdate == nil ||
		s.RollingUpdate.MaxUnavailable == nil || *s.RollingUpdate.MaxUnavailable != intstr.FromInt32(0) ||
		s.RollingUpdate.MaxSurge == nil || *s.RollingUpdate.MaxSurge != intstr.FromInt32(1) {
		t.Errorf("%s: strategy %+v, want RollingUpdate with maxUnavailable 0, maxSurge 1", d.Name, s)
	}
}

func checkInstanceEnv(t *testing.T, d *appsv1.Deployment) {
	t.Helper()
	for _, e := range d.Spec.Template.Spec.Containers[0].Env {
		if e.Name == "DARKLAUNCH_INSTANCE" {
			if e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "metadata.name" {
				t.Errorf("%s: DARKLAUNCH_INSTANCE %+v, want the pod's name (fieldRef metadata.name)", d.Name, e)
			}
			return
		}
	}
	t.Errorf("%s: no DARKLAUNCH_INSTANCE in the environment", d.Name)
}

// checkAntiAffinity: the pods prefer a node without another pod of the same service.
func checkAntiAffinity(t *testing.T, d *appsv1.Deployment) {
	t.Helper()
	a := d.Spec.Template.Spec.Affinity
	if a == nil || a.PodAntiAffinity == nil || len(a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution) != 1 ||
		len(a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution) != 0 {
		t.Errorf("%s: affinity %+v, want one preferred pod anti-affinity term", d.Name, a)
		return
	}
	w := a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution[0]
	term := w.PodAffinityTerm
	if w.Weight != 100 || term.TopologyKey != corev1.LabelHostname {
		t.Errorf("%s: anti-affinity weight %d over %q, want 100 over %s", d.Name, w.Weight, term.TopologyKey, corev1.LabelHostname)
	}
	sel, err := metav1.LabelSelectorAsSelector(term.LabelSelector)
	if err != nil {
		t.Fatal(err)
	}
	if !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Errorf("%s: the anti-affinity's selector %s misses the Deployment's own pods", d.Name, sel)
	}
	if term.LabelSelector.MatchLabels["app.kubernetes.io/component"] != d.Spec.Template.Labels["app.kubernetes.io/component"] {
		t.Errorf("%s: the anti-affinity's selector %s is not the service's own", d.Name, sel)
	}
}
