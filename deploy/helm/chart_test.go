// Package chart_test checks what the darklaunch Helm chart renders with `helm template`:
// least-privilege RBAC (the router's Roles only in the namespaces it may act in, nothing for the
// other services, nothing cluster-wide), pod security, probes, and the flags each service gets.
// Installing the chart into a real API server, with 2 replicas of every service, is tested in
// test/k8s (helm_test.go, replicas_test.go).
package chart_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"
)

const (
	chartDir  = "darklaunch"
	release   = "dl"
	releaseNS = "darklaunch-system"
	natsURL   = "nats://nats.default:4222"
	prefix    = "dl-darklaunch-"
)

var services = []string{"router", "loadgen", "collector", "judge"}

// helm finds the helm binary: on PATH, else where `go install` puts it. Without it the tests
// skip, except in CI, where a missing helm is a failure.
func helm(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("helm"); err == nil {
		return p
	}
	if home, err := os.UserHomeDir(); err == nil {
		p := filepath.Join(home, "go", "bin", "helm")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	const how = "helm not found on PATH or in ~/go/bin; install it with: go install helm.sh/helm/v3/cmd/helm@v3.22.0"
	if os.Getenv("CI") != "" {
		t.Fatal(how)
	}
	t.Skip(how)
	return ""
}

// object is one rendered manifest.
type object map[string]any

func (o object) kind() string      { return str(o, "kind") }
func (o object) name() string      { return str(o, "metadata", "name") }
func (o object) namespace() string { return str(o, "metadata", "namespace") }

// get walks o along path (map keys, or ints for list indexes) and returns nil when a step is missing.
func get(o any, path ...any) any {
	cur := o
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := asMap(cur)
			if !ok {
				return nil
			}
			cur = m[k]
		case int:
			l, ok := cur.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			cur = l[k]
		}
	}
	return cur
}

func asMap(v any) (map[string]any, bool) {
	switch m := v.(type) {
	case map[string]any:
		return m, true
	case object:
		return m, true
	}
	return nil, false
}

func str(o any, path ...any) string { s, _ := get(o, path...).(string); return s }

func strs(o any, path ...any) []string {
	var out []string
	l, _ := get(o, path...).([]any)
	for _, v := range l {
		s, _ := v.(string)
		out = append(out, s)
	}
	return out
}

var docSep = regexp.MustCompile(`(?m)^---\s*$`)

// template runs `helm template` with args (values files, --set) and returns the objects, or
// helm's error output.
func template(t *testing.T, args ...string) ([]object, error) {
	t.Helper()
	return templateChart(t, chartDir, args...)
}

// templateChart is template for the chart in dir.
func templateChart(t *testing.T, dir string, args ...string) ([]object, error) {
	t.Helper()
	cmd := exec.Command(helm(t), append([]string{"template", release, dir, "--namespace", releaseNS}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, errors.New(stderr.String())
	}
	var objs []object
	for _, doc := range docSep.Split(stdout.String(), -1) {
		var o object
		if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
			t.Fatalf("rendered YAML does not parse: %v\n%s", err, doc)
		}
		if len(o) > 0 {
			objs = append(objs, o)
		}
	}
	return objs, nil
}

func mustTemplate(t *testing.T, args ...string) []object {
	t.Helper()
	objs, err := template(t, args...)
	if err != nil {
		t.Fatalf("helm template %v: %v", args, err)
	}
	return objs
}

func find(objs []object, kind string) []object {
	var out []object
	for _, o := range objs {
		if o.kind() == kind {
			out = append(out, o)
		}
	}
	return out
}

func one(t *testing.T, objs []object, kind, name string) object {
	t.Helper()
	for _, o := range objs {
		if o.kind() == kind && o.name() == name {
			return o
		}
	}
	t.Fatalf("no %s %s rendered", kind, name)
	return nil
}

func container(t *testing.T, d object) map[string]any {
	t.Helper()
	cs, _ := get(d, "spec", "template", "spec", "containers").([]any)
	if len(cs) != 1 {
		t.Fatalf("%s: want one container, got %d", d.name(), len(cs))
	}
	c, _ := cs[0].(map[string]any)
	return c
}

func args(t *testing.T, d object) []string {
	t.Helper()
	return strs(container(t, d), "args")
}

// flag returns the value of --name=value in args, and whether it is there.
func flag(args []string, name string) (string, bool) {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
		if a == "--"+name {
			return "", true
		}
	}
	return "", false
}

func wantFlag(t *testing.T, d object, name, want string) {
	t.Helper()
	got, ok := flag(args(t, d), name)
	if !ok || got != want {
		t.Errorf("%s: --%s = %q (present %v), want %q; args %q", d.name(), name, got, ok, want, args(t, d))
	}
}

func noFlag(t *testing.T, d object, name string) {
	t.Helper()
	if v, ok := flag(args(t, d), name); ok {
		t.Errorf("%s: unexpected --%s=%s", d.name(), name, v)
	}
}

func TestLint(t *testing.T) {
	for _, values := range []string{"", "testdata/two-namespaces.yaml", "testdata/custom-metrics.yaml", "testdata/creds.yaml", "testdata/disabled.yaml", "testdata/every-flag.yaml", "testdata/replicas.yaml"} {
		a := []string{"lint", "--strict", chartDir, "--set", "nats.url=" + natsURL}
		if values != "" {
			a = append(a, "--values", values)
		}
		out, err := exec.Command(helm(t), a...).CombinedOutput()
		if err != nil {
			t.Errorf("helm %s: %v\n%s", strings.Join(a, " "), err, out)
		}
	}
}

// The defaults: four services, the router's Role only in "default", pod security everywhere.
func TestDefaults(t *testing.T) {
	objs := mustTemplate(t, "--set", "nats.url="+natsURL)

	counts := map[string]int{}
	for _, o := range objs {
		counts[o.kind()]++
		if o.kind() != "Role" && o.kind() != "RoleBinding" && o.namespace() != releaseNS {
			t.Errorf("%s %s in namespace %q, want the release's %q", o.kind(), o.name(), o.namespace(), releaseNS)
		}
		labels, _ := get(o, "metadata", "labels").(map[string]any)
		for _, l := range []string{"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version", "app.kubernetes.io/managed-by", "helm.sh/chart"} {
			if labels[l] == nil {
				t.Errorf("%s %s: no label %s", o.kind(), o.name(), l)
			}
		}
	}
	want := map[string]int{"ServiceAccount": 4, "Deployment": 4, "Role": 1, "RoleBinding": 1}
	if !reflect.DeepEqual(counts, want) {
		t.Errorf("rendered kinds %v, want %v (no Secret or ConfigMap without values asking for them)", counts, want)
	}

	for _, svc := range services {
		d := one(t, objs, "Deployment", prefix+svc)
		c := container(t, d)
		pod := get(d, "spec", "template", "spec")
		if got := str(d, "spec", "template", "metadata", "labels", "app.kubernetes.io/component"); got != svc {
			t.Errorf("%s: component label %q", svc, got)
		}
		if got := str(c, "image"); got != "ghcr.io/darklaunch/darklaunch:0.1.0" {
			t.Errorf("%s: image %q, want the appVersion tag", svc, got)
		}
		if got := strs(c, "command"); !slices.Equal(got, []string{"/darklaunch"}) {
			t.Errorf("%s: command %q", svc, got)
		}
		a := args(t, d)
		if len(a) < 2 || a[0] != "serve" || a[1] != svc {
			t.Errorf("%s: args %q, want serve %s ...", svc, a, svc)
		}
		wantFlag(t, d, "server", natsURL)
		wantFlag(t, d, "health-addr", ":8081")
		wantFlag(t, d, "log-format", "json")
		wantFlag(t, d, "stream-replicas", "1")
		noFlag(t, d, "creds")
		// Only the instance's name, from the pod's (no token without one).
		wantEnv := []any{map[string]any{"name": "DARKLAUNCH_INSTANCE", "valueFrom": map[string]any{"fieldRef": map[string]any{"fieldPath": "metadata.name"}}}}
		if got := get(c, "env"); !reflect.DeepEqual(got, wantEnv) {
			t.Errorf("%s: env %v, want only %v", svc, got, wantEnv)
		}

		if got := str(pod, "serviceAccountName"); got != prefix+svc {
			t.Errorf("%s: serviceAccountName %q", svc, got)
		}
		// Only the router talks to the API server.
		wantToken := svc == "router"
		if got := get(pod, "automountServiceAccountToken"); got != wantToken {
			t.Errorf("%s: pod automountServiceAccountToken %v, want %v", svc, got, wantToken)
		}
		if got := get(one(t, objs, "ServiceAccount", prefix+svc), "automountServiceAccountToken"); got != wantToken {
			t.Errorf("%s: ServiceAccount automountServiceAccountToken %v, want %v", svc, got, wantToken)
		}

		for path, want := range map[string]any{
			"securityContext.runAsNonRoot":               true,
			"securityContext.runAsUser":                  float64(65532),
			"securityContext.seccompProfile.type":        "RuntimeDefault",
			"c.securityContext.runAsNonRoot":             true,
			"c.securityContext.runAsUser":                float64(65532),
			"c.securityContext.readOnlyRootFilesystem":   true,
			"c.securityContext.allowPrivilegeEscalation": false,
			"c.securityContext.capabilities.drop":        []any{"ALL"},
			"c.securityContext.seccompProfile.type":      "RuntimeDefault",
			"c.livenessProbe.httpGet.path":               "/healthz",
			"c.livenessProbe.httpGet.port":               "health",
			"c.readinessProbe.httpGet.path":              "/readyz",
			"c.readinessProbe.httpGet.port":              "health",
			"c.ports.0.containerPort":                    float64(8081),
			"c.ports.0.name":                             "health",
			"c.resources.limits.memory":                  nil, // only checked for presence below
		} {
			var from any = pod
			p := path
			if rest, ok := strings.CutPrefix(path, "c."); ok {
				from, p = c, rest
			}
			var steps []any
			for _, s := range strings.Split(p, ".") {
				if s == "0" {
					steps = append(steps, 0)
				} else {
					steps = append(steps, s)
				}
			}
			got := get(from, steps...)
			if want == nil {
				if got == nil {
					t.Errorf("%s: %s is not set", svc, path)
				}
				continue
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%s: %s = %v, want %v", svc, path, got, want)
			}
		}

		ann := get(d, "spec", "template", "metadata", "annotations")
		for k, v := range map[string]string{"prometheus.io/scrape": "true", "prometheus.io/port": "8081", "prometheus.io/path": "/metrics"} {
			if got := str(ann, k); got != v {
				t.Errorf("%s: annotation %s = %q, want %q", svc, k, got, v)
			}
		}
		checkRollingUpdate(t, d)
		if got := get(d, "spec", "replicas"); got != float64(1) {
			t.Errorf("%s: replicas %v, want 1 by default", svc, got)
		}
		checkSoftAntiAffinity(t, d, svc)
	}

	router := one(t, objs, "Deployment", prefix+"router")
	wantFlag(t, router, "backend", "istio")
	wantFlag(t, router, "namespaces", "default")
	wantFlag(t, router, "gateways", "mesh,knative-serving/knative-ingress-gateway")
	wantFlag(t, router, "local-gateway", "knative-serving/knative-local-gateway")
	wantFlag(t, router, "gateway-host", "knative-local-gateway.istio-system.svc.cluster.local")
	wantFlag(t, router, "init-timeout", "90s")
	noFlag(t, router, "legacy-mirror-percent")
	noFlag(t, router, "keep-routing")

	loadgen := one(t, objs, "Deployment", prefix+"loadgen")
	wantFlag(t, loadgen, "url", "http://knative-local-gateway.istio-system.svc.cluster.local")
	noFlag(t, loadgen, "rate")
	if got := str(loadgen, "spec", "template", "metadata", "annotations", "sidecar.istio.io/inject"); got != "true" {
		t.Errorf("loadgen: sidecar.istio.io/inject annotation %q, want \"true\" (it must run in the mesh)", got)
	}
	if got := str(loadgen, "spec", "template", "metadata", "labels", "sidecar.istio.io/inject"); got != "true" {
		t.Errorf("loadgen: sidecar.istio.io/inject label %q, want \"true\"", got)
	}
	checkHoldUntilProxyStarts(t, loadgen)
	for _, svc := range []string{"router", "collector", "judge"} {
		if got := get(one(t, objs, "Deployment", prefix+svc), "spec", "template", "metadata", "annotations", "proxy.istio.io/config"); got != nil {
			t.Errorf("%s: proxy.istio.io/config %v; only loadgen runs in the mesh", svc, got)
		}
	}

	collector := one(t, objs, "Deployment", prefix+"collector")
	wantFlag(t, collector, "source", "prometheus")
	wantFlag(t, collector, "prometheus-url", "http://prometheus.istio-system:9090")
	wantFlag(t, collector, "metrics-provider", "knative")
	noFlag(t, collector, "metrics-file")
	if v := get(collector, "spec", "template", "spec", "volumes"); v != nil {
		t.Errorf("collector: volumes %v without custom metrics", v)
	}

	judge := one(t, objs, "Deployment", prefix+"judge")
	wantFlag(t, judge, "init-timeout", "2m")
	wantFlag(t, judge, "metrics-timeout", "2m")
}

// checkRBAC asserts the router's RBAC is exactly one Role and RoleBinding per namespace in
// namespaces, with exactly the rules it needs (the calls of services/router/istio/api.go and
// knative.go: no watch, no patch, only get on Knative Services), bound to the router's
// ServiceAccount only; and that nothing is cluster-wide.
func checkRBAC(t *testing.T, objs []object, namespaces []string) {
	t.Helper()
	for _, kind := range []string{"ClusterRole", "ClusterRoleBinding"} {
		if got := find(objs, kind); len(got) > 0 {
			t.Errorf("%d %s rendered; the chart must grant nothing cluster-wide", len(got), kind)
		}
	}
	wantRules := []any{
		map[string]any{"apiGroups": []any{"networking.istio.io"}, "resources": []any{"virtualservices"},
			"verbs": []any{"get", "list", "create", "update", "delete"}},
		map[string]any{"apiGroups": []any{"serving.knative.dev"}, "resources": []any{"services"},
			"verbs": []any{"get"}},
	}
	var roleNS, bindingNS []string
	for _, r := range find(objs, "Role") {
		roleNS = append(roleNS, r.namespace())
		if got := get(r, "rules"); !reflect.DeepEqual(got, wantRules) {
			t.Errorf("Role %s/%s rules %v, want exactly %v", r.namespace(), r.name(), got, wantRules)
		}
	}
	for _, b := range find(objs, "RoleBinding") {
		bindingNS = append(bindingNS, b.namespace())
		if got := str(b, "roleRef", "kind") + "/" + str(b, "roleRef", "name"); got != "Role/"+prefix+"router" {
			t.Errorf("RoleBinding %s/%s refers to %s", b.namespace(), b.name(), got)
		}
		want := []any{map[string]any{"kind": "ServiceAccount", "name": prefix + "router", "namespace": releaseNS}}
		if got := get(b, "subjects"); !reflect.DeepEqual(got, want) {
			t.Errorf("RoleBinding %s/%s subjects %v, want only the router's ServiceAccount", b.namespace(), b.name(), got)
		}
	}
	slices.Sort(roleNS)
	slices.Sort(bindingNS)
	want := slices.Sorted(slices.Values(namespaces))
	if !slices.Equal(roleNS, want) || !slices.Equal(bindingNS, want) {
		t.Errorf("Roles in %q and RoleBindings in %q, want one of each in %q", roleNS, bindingNS, want)
	}
}

func TestRBACDefault(t *testing.T) {
	checkRBAC(t, mustTemplate(t, "--set", "nats.url="+natsURL), []string{"default"})
}

func TestRBACTwoNamespaces(t *testing.T) {
	objs := mustTemplate(t, "--values", "testdata/two-namespaces.yaml")
	checkRBAC(t, objs, []string{"team-a", "team-b"})
	wantFlag(t, one(t, objs, "Deployment", prefix+"router"), "namespaces", "team-a,team-b")
}

// With the proxy backend the router never talks to the API server: no RBAC, no token.
func TestRBACProxyBackend(t *testing.T) {
	objs := mustTemplate(t, "--set", "nats.url="+natsURL, "--set", "router.backend=proxy")
	checkRBAC(t, objs, nil)
	r := one(t, objs, "Deployment", prefix+"router")
	if got := get(r, "spec", "template", "spec", "automountServiceAccountToken"); got != false {
		t.Errorf("router with the proxy backend: automountServiceAccountToken %v", got)
	}
	noFlag(t, r, "namespaces")
}

func TestRouterOptions(t *testing.T) {
	objs := mustTemplate(t, "--set", "nats.url="+natsURL, "--set", "router.legacyMirrorPercent=true",
		"--set", "router.keepRouting=true", "--set", "router.gateways={mesh}", "--set", "router.extraArgs={--percent=10}")
	r := one(t, objs, "Deployment", prefix+"router")
	wantFlag(t, r, "legacy-mirror-percent", "")
	wantFlag(t, r, "keep-routing", "")
	wantFlag(t, r, "gateways", "mesh")
	if a := args(t, r); a[len(a)-1] != "--percent=10" {
		t.Errorf("extraArgs not appended last: %q", a)
	}
}

func TestNATSInlineSecrets(t *testing.T) {
	objs := mustTemplate(t, "--values", "testdata/creds.yaml")
	secrets := find(objs, "Secret")
	if len(secrets) != 1 {
		t.Fatalf("%d Secrets, want 1 holding the creds and the token", len(secrets))
	}
	// Not <fullname>-nats: the name an operator would give a Secret of their own.
	if got := secrets[0].name(); got != prefix+"nats-auth" {
		t.Errorf("Secret %q, want %q", got, prefix+"nats-auth")
	}
	data, _ := get(secrets[0], "data").(map[string]any)
	if data["nats.creds"] == nil || data["token"] == nil || len(data) != 2 {
		t.Errorf("Secret data keys %v, want nats.creds and token", data)
	}
	for _, svc := range services {
		d := one(t, objs, "Deployment", prefix+svc)
		checkNATSSecrets(t, d, prefix+"nats-auth", prefix+"nats-auth")
		wantFlag(t, d, "server", "tls://nats.default:4222")
	}
}

func TestNATSExistingSecrets(t *testing.T) {
	objs := mustTemplate(t, "--set", "nats.url="+natsURL,
		"--set", "nats.credentials.existingSecret=my-creds", "--set", "nats.token.existingSecret=my-token")
	if s := find(objs, "Secret"); len(s) != 0 {
		t.Errorf("%d Secrets rendered, want none with existing ones", len(s))
	}
	for _, svc := range services {
		checkNATSSecrets(t, one(t, objs, "Deployment", prefix+svc), "my-creds", "my-token")
	}
}

// TestNATSNkeys: with one NATS user per service, each pod mounts only its
// own service's key from the Secret (the judge also the API's) and signs
// in with it; nkeys with a creds
// file or a token is refused.
func TestNATSNkeys(t *testing.T) {
	objs := mustTemplate(t, "--set", "nats.url="+natsURL, "--set", "nats.nkeys.existingSecret=darklaunch-nkeys")
	for _, svc := range services {
		d := one(t, objs, "Deployment", prefix+svc)
		wantFlag(t, d, "nkey", "/etc/darklaunch/nkey/"+svc+".nk")
		items := get(d, "spec", "template", "spec", "volumes", 0, "secret", "items")
		want := []any{map[string]any{"key": svc + ".nk", "path": svc + ".nk"}}
		if svc == "judge" {
			// The API signs in as its own user.
			wantFlag(t, d, "api-nkey", "/etc/darklaunch/nkey/api.nk")
			want = append(want, map[string]any{"key": "api.nk", "path": "api.nk"})
		}
		if !reflect.DeepEqual(items, want) {
			t.Errorf("%s mounts %v from the nkeys Secret, want only its own key %v", d.name(), items, want)
		}
		if got := str(d, "spec", "template", "spec", "volumes", 0, "secret", "secretName"); got != "darklaunch-nkeys" {
			t.Errorf("%s: nkey volume from Secret %q", d.name(), got)
		}
	}
}

// TestNATSTLS: the TLS Secret is mounted read-only and its files passed
// as --tls-ca, --tls-cert and --tls-key to every service; a CA alone gives
// --tls-ca only; a certificate without its key is refused.
func TestNATSTLS(t *testing.T) {
	objs := mustTemplate(t, "--set", "nats.url=tls://nats.default:4222", "--set", "nats.tls.existingSecret=nats-client-tls")
	for _, svc := range services {
		d := one(t, objs, "Deployment", prefix+svc)
		wantFlag(t, d, "tls-ca", "/etc/darklaunch/nats-tls/ca.crt")
		wantFlag(t, d, "tls-cert", "/etc/darklaunch/nats-tls/tls.crt")
		wantFlag(t, d, "tls-key", "/etc/darklaunch/nats-tls/tls.key")
		if got := get(container(t, d), "volumeMounts"); !reflect.DeepEqual(got, []any{map[string]any{"name": "nats-tls", "mountPath": "/etc/darklaunch/nats-tls", "readOnly": true}}) {
			t.Errorf("%s: volumeMounts %v", d.name(), got)
		}
		if got := str(d, "spec", "template", "spec", "volumes", 0, "secret", "secretName"); got != "nats-client-tls" {
			t.Errorf("%s: TLS volume from Secret %q", d.name(), got)
		}
	}
	caOnly := mustTemplate(t, "--set", "nats.url=tls://nats.default:4222", "--set", "nats.tls.existingSecret=ca", "--set", "nats.tls.cert=", "--set", "nats.tls.key=")
	d := one(t, caOnly, "Deployment", prefix+"judge")
	wantFlag(t, d, "tls-ca", "/etc/darklaunch/nats-tls/ca.crt")
	noFlag(t, d, "tls-cert")
	noFlag(t, d, "tls-key")
	noFlag(t, one(t, mustTemplate(t, "--set", "nats.url="+natsURL), "Deployment", prefix+"judge"), "tls-ca")
}

// checkNATSSecrets: the creds file is mounted read-only from credsSecret and passed as --creds;
// the token comes from tokenSecret in the environment, never in the arguments.
func checkNATSSecrets(t *testing.T, d object, credsSecret, tokenSecret string) {
	t.Helper()
	c := container(t, d)
	wantFlag(t, d, "creds", "/etc/darklaunch/nats/nats.creds")
	noFlag(t, d, "token")
	if got := get(c, "volumeMounts"); !reflect.DeepEqual(got, []any{map[string]any{"name": "nats-credentials", "mountPath": "/etc/darklaunch/nats", "readOnly": true}}) {
		t.Errorf("%s: volumeMounts %v", d.name(), got)
	}
	if got := str(d, "spec", "template", "spec", "volumes", 0, "secret", "secretName"); got != credsSecret {
		t.Errorf("%s: creds volume from Secret %q, want %q", d.name(), got, credsSecret)
	}
	var env any
	for _, e := range get(c, "env").([]any) {
		if str(e, "name") == "DARKLAUNCH_TOKEN" {
			env = e
		}
	}
	if str(env, "name") != "DARKLAUNCH_TOKEN" || str(env, "valueFrom", "secretKeyRef", "name") != tokenSecret || str(env, "valueFrom", "secretKeyRef", "key") != "token" {
		t.Errorf("%s: env %v, want DARKLAUNCH_TOKEN from Secret %s key token", d.name(), get(c, "env"), tokenSecret)
	}
}

func TestCustomMetrics(t *testing.T) {
	objs := mustTemplate(t, "--values", "testdata/custom-metrics.yaml")
	cms := find(objs, "ConfigMap")
	if len(cms) != 1 {
		t.Fatalf("%d ConfigMaps, want 1", len(cms))
	}
	var defs []map[string]any
	if err := yaml.Unmarshal([]byte(str(cms[0], "data", "metrics.yaml")), &defs); err != nil || len(defs) != 1 || defs[0]["name"] != "request-count" {
		t.Errorf("ConfigMap metrics.yaml = %q (%v), want the one custom definition", str(cms[0], "data", "metrics.yaml"), err)
	}
	for _, svc := range services {
		d := one(t, objs, "Deployment", prefix+svc)
		if svc != "collector" {
			noFlag(t, d, "metrics-file")
			if v := get(d, "spec", "template", "spec", "volumes"); v != nil {
				t.Errorf("%s mounts %v; only the collector needs the metrics", svc, v)
			}
			continue
		}
		wantFlag(t, d, "metrics-file", "/etc/darklaunch/metrics/metrics.yaml")
		noFlag(t, d, "metrics-provider")
		if got := str(d, "spec", "template", "spec", "volumes", 0, "configMap", "name"); got != cms[0].name() {
			t.Errorf("collector mounts ConfigMap %q, want %q", got, cms[0].name())
		}
		if got := get(container(t, d), "volumeMounts", 0, "readOnly"); got != true {
			t.Errorf("collector: metrics mount readOnly %v", got)
		}
	}
}

// A metrics file given with --set-file arrives verbatim in the ConfigMap.
func TestCustomMetricsFromFile(t *testing.T) {
	objs := mustTemplate(t, "--set", "nats.url="+natsURL, "--set-file", "metrics.custom="+filepath.Join(chartDir, "files", "metrics-istio.yaml"))
	want, err := os.ReadFile(filepath.Join(chartDir, "files", "metrics-istio.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cm := one(t, objs, "ConfigMap", prefix+"metrics")
	if got := str(cm, "data", "metrics.yaml"); strings.TrimSpace(got) != strings.TrimSpace(string(want)) {
		t.Errorf("ConfigMap metrics.yaml differs from the file:\n%s", got)
	}
}

func TestServicesDisabled(t *testing.T) {
	objs := mustTemplate(t, "--values", "testdata/disabled.yaml")
	var names []string
	for _, o := range objs {
		if o.kind() == "Deployment" || o.kind() == "ServiceAccount" {
			names = append(names, o.kind()+"/"+o.name())
		}
	}
	slices.Sort(names)
	want := []string{"Deployment/" + prefix + "judge", "Deployment/" + prefix + "router", "ServiceAccount/" + prefix + "judge", "ServiceAccount/" + prefix + "router"}
	if !slices.Equal(names, want) {
		t.Errorf("rendered %q, want %q", names, want)
	}
	checkRBAC(t, objs, []string{"default"})

	objs = mustTemplate(t, "--set", "nats.url="+natsURL, "--set", "router.enabled=false")
	checkRBAC(t, objs, nil)
}

// Bad values fail with a message that says what to do.
func TestInvalidValues(t *testing.T) {
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"no nats.url":        {nil, "nats.url is required"},
		"misspelled key":     {[]string{"--set", "nats.url=" + natsURL, "--set", "router.namespace=team-a"}, "namespace"},
		"unknown provider":   {[]string{"--set", "nats.url=" + natsURL, "--set", "metrics.provider=datadog"}, "provider"},
		"bad namespace":      {[]string{"--set", "nats.url=" + natsURL, "--set", "router.namespaces={Team_A}"}, "namespaces"},
		"no namespaces":      {[]string{"--set", "nats.url=" + natsURL, "--set", "router.namespaces=null"}, "router.namespaces is empty"},
		"bad duration":       {[]string{"--set", "nats.url=" + natsURL, "--set", "router.initTimeout=soon"}, "initTimeout"},
		"two creds sources":  {[]string{"--set", "nats.url=" + natsURL, "--set", "nats.credentials.existingSecret=a", "--set", "nats.credentials.content=b"}, "not both"},
		"tls cert, no key":   {[]string{"--set", "nats.url=" + natsURL, "--set", "nats.tls.existingSecret=a", "--set", "nats.tls.key="}, "needs both cert and key"},
		"nkeys and a token":  {[]string{"--set", "nats.url=" + natsURL, "--set", "nats.nkeys.existingSecret=a", "--set", "nats.token.value=b"}, "do not also set"},
		"two token sources":  {[]string{"--set", "nats.url=" + natsURL, "--set", "nats.token.existingSecret=a", "--set", "nats.token.value=b"}, "not both"},
		"two metric sources": {[]string{"--set", "nats.url=" + natsURL, "--set", "metrics.existingConfigMap=a", "--set", "metrics.custom=b"}, "not both"},
		"rate not a number":  {[]string{"--set", "nats.url=" + natsURL, "--set", "loadgen.rate=abc"}, "rate"},
		"negative rate":      {[]string{"--set", "nats.url=" + natsURL, "--set", "loadgen.rate=-5"}, "rate"},
		"zero rate":          {[]string{"--set", "nats.url=" + natsURL, "--set", "loadgen.rate=0"}, "rate"},
		"negative rate text": {[]string{"--set", "nats.url=" + natsURL, "--set-string", "loadgen.rate=-0.5"}, "rate"},
		"numeric image tag":  {[]string{"--set", "nats.url=" + natsURL, "--set-json", "image.tag=1.10"}, "tag"},
		"no stream replicas": {[]string{"--set", "nats.url=" + natsURL, "--set", "nats.streamReplicas=0"}, "streamReplicas"},
		"6 stream replicas":  {[]string{"--set", "nats.url=" + natsURL, "--set", "nats.streamReplicas=6"}, "streamReplicas"},
		"replicas not int":   {[]string{"--set", "nats.url=" + natsURL, "--set", "nats.streamReplicas=three"}, "streamReplicas"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := template(t, tc.args...)
			if err == nil {
				t.Fatalf("helm template %v succeeded, want an error containing %q", tc.args, tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

// checkHoldUntilProxyStarts: loadgen starts only once its Istio sidecar is ready, or its first
// requests fail or leave without the mirroring.
func checkHoldUntilProxyStarts(t *testing.T, loadgen object) {
	t.Helper()
	raw := str(loadgen, "spec", "template", "metadata", "annotations", "proxy.istio.io/config")
	var cfg map[string]any
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil || cfg["holdApplicationUntilProxyStarts"] != true {
		t.Errorf("loadgen: proxy.istio.io/config annotation %q (%v), want holdApplicationUntilProxyStarts: true", raw, err)
	}
}

// An annotation of the operator's is added to loadgen's defaults, which stay.
func TestLoadgenPodAnnotations(t *testing.T) {
	objs := mustTemplate(t, "--set", "nats.url="+natsURL, "--set", "loadgen.podAnnotations.example\\.com/team=a")
	loadgen := one(t, objs, "Deployment", prefix+"loadgen")
	checkHoldUntilProxyStarts(t, loadgen)
	ann := get(loadgen, "spec", "template", "metadata", "annotations")
	for k, v := range map[string]string{"sidecar.istio.io/inject": "true", "example.com/team": "a", "prometheus.io/scrape": "true"} {
		if got := str(ann, k); got != v {
			t.Errorf("loadgen: annotation %s = %q, want %q", k, got, v)
		}
	}
}

// loadgen.rate: a non-negative number, or a string holding one (--set-string), passed as is.
// Bad ones are refused by the schema (TestInvalidValues).
func TestLoadgenRate(t *testing.T) {
	for _, tc := range []struct {
		set  []string
		want string
	}{
		{[]string{"--set", "loadgen.rate=2"}, "2"},
		{[]string{"--set", "loadgen.rate=0.5"}, "0.5"},
		{[]string{"--set-string", "loadgen.rate=2.5"}, "2.5"},
		{[]string{"--set-json", "loadgen.rate=1.25"}, "1.25"},
	} {
		objs := mustTemplate(t, append([]string{"--set", "nats.url=" + natsURL}, tc.set...)...)
		wantFlag(t, one(t, objs, "Deployment", prefix+"loadgen"), "rate", tc.want)
	}
	objs := mustTemplate(t, "--set", "nats.url="+natsURL, "--set-string", "loadgen.rate=")
	noFlag(t, one(t, objs, "Deployment", prefix+"loadgen"), "rate")
}

// image.tag is a string, rendered as given ("1.10" stays 1.10; a number is refused: TestInvalidValues).
func TestImageTag(t *testing.T) {
	objs := mustTemplate(t, "--set", "nats.url="+natsURL, "--set-string", "image.tag=1.10")
	for _, svc := range services {
		if got := str(container(t, one(t, objs, "Deployment", prefix+svc)), "image"); got != "ghcr.io/darklaunch/darklaunch:1.10" {
			t.Errorf("%s: image %q, want tag 1.10", svc, got)
		}
	}
}

// nats.streamReplicas reaches all four services alike: they share the streams and KV bucket.
func TestStreamReplicas(t *testing.T) {
	objs := mustTemplate(t, "--set", "nats.url="+natsURL, "--set", "nats.streamReplicas=3")
	for _, svc := range services {
		wantFlag(t, one(t, objs, "Deployment", prefix+svc), "stream-replicas", "3")
	}
}

// notes renders templates/NOTES.txt with args. `helm template` does not render it, and
// `helm install --dry-run=client` still needs a reachable cluster, so a copy of the chart gets
// a template that holds NOTES.txt's text as a define and prints it into a document.
func notes(t *testing.T, args ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), chartDir)
	if err := os.CopyFS(dir, os.DirFS(chartDir)); err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(filepath.Join(chartDir, "templates", "NOTES.txt"))
	if err != nil {
		t.Fatal(err)
	}
	wrapper := `{{- define "chart-test.notes" }}` + string(src) + `{{- end }}
kind: RenderedNotes
text: {{ include "chart-test.notes" . | toJson }}
`
	if err := os.WriteFile(filepath.Join(dir, "templates", "zz-rendered-notes.yaml"), []byte(wrapper), 0o644); err != nil {
		t.Fatal(err)
	}
	objs, err := templateChart(t, dir, append(args, "--show-only", "templates/zz-rendered-notes.yaml")...)
	if err != nil {
		t.Fatalf("rendering NOTES.txt with %v: %v", args, err)
	}
	if len(objs) != 1 {
		t.Fatalf("rendering NOTES.txt: %d documents", len(objs))
	}
	return str(objs[0], "text")
}

func TestNotes(t *testing.T) {
	urls := filepath.Join(t.TempDir(), "urls.yaml")
	if err := os.WriteFile(urls, []byte("nats:\n  url: nats://s3cret-token@nats.messaging.svc.cluster.local:4333, nats://u:hunter3@nats-1.messaging:4222\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	const anyService = "kubectl port-forward svc/<the NATS Service> 4222:4222 -n <its namespace> &"
	for name, tc := range map[string]struct {
		args          []string
		want, notWant []string
	}{
		"service name": {
			args: []string{"--set", "nats.url=" + natsURL},
			want: []string{"talking over NATS at nats://nats.default:4222:", "kubectl port-forward svc/nats 4222:4222 -n default &",
				"The collector reads the shipped knative metrics from http://prometheus.istio-system:9090."},
		},
		// The password is not printed, and an IP address names no Service.
		"IP with password": {
			args:    []string{"--set", "nats.url=nats://admin:hunter2@10.96.0.15:4222"},
			want:    []string{"talking over NATS at nats://***@10.96.0.15:4222:", anyService},
			notWant: []string{"hunter2", "admin", "svc/10"},
		},
		"bare name, no scheme": {
			args: []string{"--set", "nats.url=nats:4222"},
			want: []string{"kubectl port-forward svc/nats 4222:4222 -n " + releaseNS + " &"},
		},
		"several URLs with userinfo": {
			args:    []string{"--values", urls},
			want:    []string{"at nats://***@nats.messaging.svc.cluster.local:4333,nats://***@nats-1.messaging:4222:", "kubectl port-forward svc/nats 4222:4333 -n messaging &"},
			notWant: []string{"s3cret", "hunter3"},
		},
		"outside name": {
			args:    []string{"--set", "nats.url=tls://nats.example.com:4222"},
			want:    []string{anyService},
			notWant: []string{"svc/nats "},
		},
		"IPv6": {
			args: []string{"--set", "nats.url=nats://[fd00::15]:4222"},
			want: []string{anyService},
		},
		"prometheus userinfo": {
			args:    []string{"--set", "nats.url=" + natsURL, "--set", "prometheus.url=https://reader:pw@prometheus.example.com"},
			want:    []string{"from https://***@prometheus.example.com."},
			notWant: []string{"reader", "pw@"},
		},
		// With the bus source the collector reads no Prometheus.
		"bus source": {
			args:    []string{"--set", "nats.url=" + natsURL, "--set", "collector.source=bus"},
			want:    []string{"collector.source=bus"},
			notWant: []string{"prometheus.istio-system", "metrics from"},
		},
		"custom metrics": {
			args: []string{"--values", "testdata/custom-metrics.yaml"},
			want: []string{"The collector reads your metric definitions (" + prefix + "metrics) from http://prometheus.istio-system:9090."},
		},
	} {
		t.Run(name, func(t *testing.T) {
			out := notes(t, tc.args...)
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("NOTES lack %q:\n%s", w, out)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(out, w) {
					t.Errorf("NOTES contain %q:\n%s", w, out)
				}
			}
		})
	}
}

// The chart's example metric files are copies of the collector's shipped definitions
// (a chart cannot read files outside itself); they must not drift apart.
func TestShippedMetricsInSync(t *testing.T) {
	for _, p := range []string{"knative", "istio"} {
		orig, err := os.ReadFile(filepath.Join("..", "..", "services", "collector", "metrics", p+".yaml"))
		if err != nil {
			t.Fatalf("the collector's shipped %s definitions: %v", p, err)
		}
		cp, err := os.ReadFile(filepath.Join(chartDir, "files", "metrics-"+p+".yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(orig, cp) {
			t.Errorf("%s differs from services/collector/metrics/%s.yaml; copy it again", filepath.Join(chartDir, "files", "metrics-"+p+".yaml"), p)
		}
	}
}

// Every flag the chart passes must exist in `darklaunch serve <service>`: a misspelled or
// removed flag would make the pods crash-loop on start, which no template check sees.
func TestFlagsExistInBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the darklaunch binary")
	}
	var rendered []object
	for _, values := range []string{"testdata/every-flag.yaml", "testdata/custom-metrics.yaml", "testdata/creds.yaml"} {
		rendered = append(rendered, mustTemplate(t, "--values", values)...)
	}
	bin := filepath.Join(t.TempDir(), "darklaunch")
	build := exec.Command("go", "build", "-o", bin, "./cmd/darklaunch")
	build.Dir = filepath.Join("..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/darklaunch: %v\n%s", err, out)
	}
	flagName := regexp.MustCompile(`^--([a-z0-9-]+)`)
	for _, svc := range services {
		help, err := exec.Command(bin, "serve", svc, "--help").CombinedOutput()
		if err != nil {
			t.Fatalf("darklaunch serve %s --help: %v\n%s", svc, err, help)
		}
		known := map[string]bool{}
		for _, m := range regexp.MustCompile(`(?m)^\s+(?:-\w, )?--([a-z0-9-]+)`).FindAllStringSubmatch(string(help), -1) {
			known[m[1]] = true
		}
		seen := 0
		for _, d := range find(rendered, "Deployment") {
			if d.name() != prefix+svc {
				continue
			}
			for _, a := range args(t, d)[2:] {
				m := flagName.FindStringSubmatch(a)
				if m == nil {
					t.Errorf("%s: argument %q is not a flag", svc, a)
					continue
				}
				seen++
				if !known[m[1]] {
					t.Errorf("the chart passes %s to `darklaunch serve %s`, which has no such flag", a, svc)
				}
			}
			// DARKLAUNCH_<FLAG> in the environment sets --<flag>.
			for _, e := range get(container(t, d), "env").([]any) {
				name, ok := strings.CutPrefix(str(e, "name"), "DARKLAUNCH_")
				if !ok {
					continue
				}
				if f := strings.ReplaceAll(strings.ToLower(name), "_", "-"); !known[f] {
					t.Errorf("the chart sets %s for `darklaunch serve %s`, which has no flag --%s", str(e, "name"), svc, f)
				}
			}
		}
		if seen == 0 {
			t.Errorf("no flags rendered for %s", svc)
		}
	}
}

// Every rendered object decodes strictly into its Kubernetes type: a misspelled or misplaced
// field (which an API server would drop or reject) fails here without a server.
func TestObjectsDecodeStrictly(t *testing.T) {
	types := map[string]func() any{
		"Deployment":          func() any { return &appsv1.Deployment{} },
		"ServiceAccount":      func() any { return &corev1.ServiceAccount{} },
		"Secret":              func() any { return &corev1.Secret{} },
		"ConfigMap":           func() any { return &corev1.ConfigMap{} },
		"Role":                func() any { return &rbacv1.Role{} },
		"RoleBinding":         func() any { return &rbacv1.RoleBinding{} },
		"PodDisruptionBudget": func() any { return &policyv1.PodDisruptionBudget{} },
	}
	seen := map[string]bool{}
	for _, values := range []string{"testdata/every-flag.yaml", "testdata/custom-metrics.yaml", "testdata/creds.yaml", "testdata/two-namespaces.yaml", "testdata/replicas.yaml"} {
		for _, o := range mustTemplate(t, "--values", values) {
			newT, ok := types[o.kind()]
			if !ok {
				t.Errorf("%s: rendered kind %s is not expected", values, o.kind())
				continue
			}
			seen[o.kind()] = true
			raw, err := json.Marshal(o)
			if err != nil {
				t.Fatal(err)
			}
			dec := json.NewDecoder(bytes.NewReader(raw))
			dec.DisallowUnknownFields()
			if err := dec.Decode(newT()); err != nil {
				t.Errorf("%s: %s %s does not decode strictly: %v", values, o.kind(), o.name(), err)
			}
		}
	}
	for kind := range types {
		if !seen[kind] {
			t.Errorf("no %s rendered by any of the variations", kind)
		}
	}
}
