package chart_test

import (
	"reflect"
	"slices"
	"strings"
	"testing"
)

// checkRollingUpdate: the default strategy starts a new pod before it stops an old one.
func checkRollingUpdate(t *testing.T, d object) {
	t.Helper()
	want := map[string]any{"type": "RollingUpdate", "rollingUpdate": map[string]any{"maxUnavailable": float64(0), "maxSurge": float64(1)}}
	if got := get(d, "spec", "strategy"); !reflect.DeepEqual(got, want) {
		t.Errorf("%s: strategy %v, want %v", d.name(), got, want)
	}
}

// antiAffinityTerm is the preset's term for svc: its pods, spread over nodes.
func antiAffinityTerm(svc, topologyKey string) map[string]any {
	return map[string]any{
		"topologyKey": topologyKey,
		"labelSelector": map[string]any{"matchLabels": map[string]any{
			"app.kubernetes.io/name": "darklaunch", "app.kubernetes.io/instance": release, "app.kubernetes.io/component": svc,
		}},
	}
}

// checkSoftAntiAffinity: the default prefers a node without another pod of the service.
func checkSoftAntiAffinity(t *testing.T, d object, svc string) {
	t.Helper()
	want := map[string]any{"podAntiAffinity": map[string]any{"preferredDuringSchedulingIgnoredDuringExecution": []any{
		map[string]any{"weight": float64(100), "podAffinityTerm": antiAffinityTerm(svc, "kubernetes.io/hostname")},
	}}}
	if got := get(d, "spec", "template", "spec", "affinity"); !reflect.DeepEqual(got, want) {
		t.Errorf("%s: affinity %v, want %v", svc, got, want)
	}
	// The term selects the Deployment's own pods.
	for k, v := range get(d, "spec", "selector", "matchLabels").(map[string]any) {
		if got := get(want, "podAntiAffinity", "preferredDuringSchedulingIgnoredDuringExecution", 0, "podAffinityTerm", "labelSelector", "matchLabels", k); got != v {
			t.Errorf("%s: anti-affinity selects %s=%v, the Deployment's pods have %v", svc, k, got, v)
		}
	}
}

func pdbNames(objs []object) []string {
	var names []string
	for _, p := range find(objs, "PodDisruptionBudget") {
		names = append(names, p.name())
	}
	slices.Sort(names)
	return names
}

// Two replicas of every service: each gets a PodDisruptionBudget of its own pods, a rolling
// update, the soft anti-affinity, and its instance name from the pod.
func TestReplicas(t *testing.T) {
	objs := mustTemplate(t, "--values", "testdata/replicas.yaml")
	if got, want := pdbNames(objs), []string{prefix + "collector", prefix + "judge", prefix + "loadgen", prefix + "router"}; !slices.Equal(got, want) {
		t.Fatalf("PodDisruptionBudgets %q, want %q", got, want)
	}
	for _, svc := range services {
		d := one(t, objs, "Deployment", prefix+svc)
		if got := get(d, "spec", "replicas"); got != float64(2) {
			t.Errorf("%s: replicas %v, want 2", svc, got)
		}
		checkRollingUpdate(t, d)
		checkSoftAntiAffinity(t, d, svc)
		pdb := one(t, objs, "PodDisruptionBudget", prefix+svc)
		if pdb.namespace() != releaseNS {
			t.Errorf("%s: PodDisruptionBudget in %q", svc, pdb.namespace())
		}
		want := map[string]any{
			"maxUnavailable":             float64(1),
			"unhealthyPodEvictionPolicy": "AlwaysAllow",
			"selector":                   map[string]any{"matchLabels": get(d, "spec", "selector", "matchLabels")},
		}
		if got := get(pdb, "spec"); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: PodDisruptionBudget spec %v, want %v", svc, got, want)
		}
		if got := str(pdb, "metadata", "labels", "app.kubernetes.io/component"); got != svc {
			t.Errorf("%s: PodDisruptionBudget component label %q", svc, got)
		}
	}
}

// replicas is per service; a PodDisruptionBudget only from 2 (one would block every drain).
func TestReplicasPerService(t *testing.T) {
	objs := mustTemplate(t, "--set", "nats.url="+natsURL, "--set", "judge.replicas=3", "--set", "loadgen.replicas=0")
	for svc, want := range map[string]float64{"judge": 3, "loadgen": 0, "router": 1, "collector": 1} {
		if got := get(one(t, objs, "Deployment", prefix+svc), "spec", "replicas"); got != want {
			t.Errorf("%s: replicas %v, want %v", svc, got, want)
		}
	}
	if got := pdbNames(objs); !slices.Equal(got, []string{prefix + "judge"}) {
		t.Errorf("PodDisruptionBudgets %q, want the judge's only", got)
	}
	// A disabled service has no budget either.
	objs = mustTemplate(t, "--values", "testdata/replicas.yaml", "--set", "collector.enabled=false")
	if got := pdbNames(objs); slices.Contains(got, prefix+"collector") || len(got) != 3 {
		t.Errorf("PodDisruptionBudgets %q with the collector disabled", got)
	}
}

func TestPodDisruptionBudgetValues(t *testing.T) {
	objs := mustTemplate(t, "--values", "testdata/replicas.yaml", "--set", "podDisruptionBudget.enabled=false")
	if got := pdbNames(objs); len(got) != 0 {
		t.Errorf("PodDisruptionBudgets %q with podDisruptionBudget.enabled=false", got)
	}
	objs = mustTemplate(t, "--values", "testdata/replicas.yaml", "--set", "podDisruptionBudget.maxUnavailable=",
		"--set", "podDisruptionBudget.minAvailable=1", "--set", "podDisruptionBudget.unhealthyPodEvictionPolicy=")
	spec := get(one(t, objs, "PodDisruptionBudget", prefix+"judge"), "spec").(map[string]any)
	if spec["minAvailable"] != float64(1) || spec["maxUnavailable"] != nil || spec["unhealthyPodEvictionPolicy"] != nil {
		t.Errorf("PodDisruptionBudget spec %v, want minAvailable 1 only", spec)
	}
	objs = mustTemplate(t, "--values", "testdata/replicas.yaml", "--set-string", "podDisruptionBudget.maxUnavailable=50%")
	if got := get(one(t, objs, "PodDisruptionBudget", prefix+"judge"), "spec", "maxUnavailable"); got != "50%" {
		t.Errorf("maxUnavailable %v, want 50%%", got)
	}
}

func TestUpdateStrategy(t *testing.T) {
	// Recreate everywhere: the default's rollingUpdate is left out (the API server refuses it).
	objs := mustTemplate(t, "--set", "nats.url="+natsURL, "--set", "updateStrategy.type=Recreate")
	for _, svc := range services {
		if got := get(one(t, objs, "Deployment", prefix+svc), "spec", "strategy"); !reflect.DeepEqual(got, map[string]any{"type": "Recreate"}) {
			t.Errorf("%s: strategy %v, want Recreate alone", svc, got)
		}
	}
	// One service's replaces the default.
	objs = mustTemplate(t, "--set", "nats.url="+natsURL, "--set", "loadgen.updateStrategy.type=Recreate",
		"--set", "judge.updateStrategy.rollingUpdate.maxUnavailable=1", "--set", "judge.updateStrategy.rollingUpdate.maxSurge=0")
	if got := get(one(t, objs, "Deployment", prefix+"loadgen"), "spec", "strategy"); !reflect.DeepEqual(got, map[string]any{"type": "Recreate"}) {
		t.Errorf("loadgen: strategy %v, want Recreate", got)
	}
	want := map[string]any{"type": "RollingUpdate", "rollingUpdate": map[string]any{"maxUnavailable": float64(1), "maxSurge": float64(0)}}
	if got := get(one(t, objs, "Deployment", prefix+"judge"), "spec", "strategy"); !reflect.DeepEqual(got, want) {
		t.Errorf("judge: strategy %v, want %v", got, want)
	}
	checkRollingUpdate(t, one(t, objs, "Deployment", prefix+"router"))
}

func TestPodAntiAffinity(t *testing.T) {
	affinity := func(objs []object, svc string) any {
		return get(one(t, objs, "Deployment", prefix+svc), "spec", "template", "spec", "affinity")
	}
	// hard, over zones; none for one service.
	objs := mustTemplate(t, "--set", "nats.url="+natsURL, "--set", "podAntiAffinity=hard",
		"--set", "podAntiAffinityTopologyKey=topology.kubernetes.io/zone", "--set", "collector.podAntiAffinity=none")
	want := map[string]any{"podAntiAffinity": map[string]any{"requiredDuringSchedulingIgnoredDuringExecution": []any{antiAffinityTerm("judge", "topology.kubernetes.io/zone")}}}
	if got := affinity(objs, "judge"); !reflect.DeepEqual(got, want) {
		t.Errorf("judge: affinity %v, want %v", got, want)
	}
	if got := affinity(objs, "collector"); got != nil {
		t.Errorf("collector: affinity %v with podAntiAffinity none", got)
	}
	// A service's own soft preset over a top-level none.
	objs = mustTemplate(t, "--set", "nats.url="+natsURL, "--set", "podAntiAffinity=none", "--set", "router.podAntiAffinity=soft")
	checkSoftAntiAffinity(t, one(t, objs, "Deployment", prefix+"router"), "router")
	if got := affinity(objs, "judge"); got != nil {
		t.Errorf("judge: affinity %v with podAntiAffinity none", got)
	}
	// An affinity without podAntiAffinity gets the preset added; one with its own keeps it.
	node := map[string]any{"requiredDuringSchedulingIgnoredDuringExecution": map[string]any{"nodeSelectorTerms": []any{
		map[string]any{"matchExpressions": []any{map[string]any{"key": "pool", "operator": "In", "values": []any{"darklaunch"}}}},
	}}}
	own := map[string]any{"requiredDuringSchedulingIgnoredDuringExecution": []any{antiAffinityTerm("judge", "example.com/rack")}}
	objs = mustTemplate(t, "--set", "nats.url="+natsURL,
		"--set-json", `affinity={"nodeAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":{"nodeSelectorTerms":[{"matchExpressions":[{"key":"pool","operator":"In","values":["darklaunch"]}]}]}}}`,
		"--set-json", `judge.affinity={"podAntiAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":[{"topologyKey":"example.com/rack","labelSelector":{"matchLabels":{"app.kubernetes.io/name":"darklaunch","app.kubernetes.io/instance":"dl","app.kubernetes.io/component":"judge"}}}]}}`)
	router := affinity(objs, "router")
	if !reflect.DeepEqual(get(router, "nodeAffinity"), node) || get(router, "podAntiAffinity", "preferredDuringSchedulingIgnoredDuringExecution") == nil {
		t.Errorf("router: affinity %v, want the nodeAffinity and the soft preset", router)
	}
	if got := affinity(objs, "judge"); !reflect.DeepEqual(got, map[string]any{"podAntiAffinity": own}) {
		t.Errorf("judge: affinity %v, want its own podAntiAffinity only", got)
	}
}

func TestReplicasInvalidValues(t *testing.T) {
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"negative replicas":   {[]string{"--set", "judge.replicas=-1"}, "replicas"},
		"replicas not an int": {[]string{"--set", "judge.replicas=two"}, "replicas"},
		"unknown preset":      {[]string{"--set", "podAntiAffinity=sometimes"}, "podAntiAffinity"},
		"unknown strategy":    {[]string{"--set", "updateStrategy.type=BlueGreen"}, "updateStrategy"},
		"pdb both":            {[]string{"--set", "judge.replicas=2", "--set", "podDisruptionBudget.minAvailable=1"}, "not both"},
		"pdb bad percent":     {[]string{"--set-string", "podDisruptionBudget.maxUnavailable=half"}, "maxUnavailable"},
		"dot in the names":    {[]string{"--set", "fullnameOverride=dl.example"}, "'.'"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := template(t, append([]string{"--set", "nats.url=" + natsURL}, tc.args...)...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("helm template %v: error %v, want one containing %q", tc.args, err, tc.want)
			}
		})
	}
}
