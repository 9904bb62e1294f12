package k8s

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	networking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	istiobackend "github.com/darklaunch/darklaunch/services/router/istio"
	"github.com/darklaunch/darklaunch/services/router/istio/istiotest"
	"github.com/darklaunch/darklaunch/services/router/mirroring"
	"github.com/darklaunch/darklaunch/services/router/routertest"
)

// TestRouterIstioBackendOnRealAPIServer: against a real API server with the
// Istio and Knative CRDs, the router checks the seed's Knative Service,
// creates the seed's two VirtualServices — which the server accepts against
// the CRDs' schemas — and removes them; it refuses to overwrite a
// VirtualService it does not own and fails clearly on an unknown revision.
func TestRouterIstioBackendOnRealAPIServer(t *testing.T) {
	admin := clientsFor(t, cluster(t))
	ctx := context.Background()
	const ns = "router-test"
	admin.createNamespace(t, ns)
	admin.applySeedService(t, ns)

	b, err := istiobackend.New(istiobackend.Config{Namespaces: []string{ns}},
		mirroring.Settings{InitTimeout: 5 * time.Second, InitInterval: 100 * time.Millisecond}, admin.istio, admin.dyn, nil)
	if err != nil {
		t.Fatal(err)
	}
	exp := seedExperiment(t, ns, "uid-1")
	st, err := b.Setup(ctx, exp)
	if err != nil {
		t.Fatalf("setup: %v", err)
	}
	if st.Live != "sample-app-v1" || st.Dark != "sample-app-v2" || st.Host != "customdomain.com" || st.Percent != 40 {
		t.Errorf("routing status %+v", st)
	}

	vss := admin.istio.NetworkingV1().VirtualServices(ns)
	mirroringVS, err := vss.Get(ctx, "customdomain-mirroring", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the mirroring VirtualService is not on the server: %v", err)
	}
	routing, err := vss.Get(ctx, "customdomain-routing", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the routing VirtualService is not on the server: %v", err)
	}
	for _, vs := range []*networkingv1.VirtualService{mirroringVS, routing} {
		if vs.Labels[istiobackend.LabelManagedBy] != istiobackend.ManagedBy {
			t.Errorf("%s labels %v", vs.Name, vs.Labels)
		}
	}
	m := mirroringVS.Spec.GetHttp()
	if len(m) != 1 || m[0].GetMirror().GetHost() != "knative-local-gateway.istio-system.svc.cluster.local" || m[0].GetMirrorPercentage().GetValue() != 40 {
		t.Errorf("mirroring http %v", m)
	}
	if h := mirroringVS.Spec.GetHosts(); len(h) != 1 || h[0] != "customdomain.com" {
		t.Errorf("mirroring hosts %v", h)
	}
	r := routing.Spec.GetHttp()
	if len(r) != 2 || authority(r[0]) != "customdomain.com-shadow" || r[0].GetRoute()[0].GetDestination().GetHost() != "sample-app-v2."+ns+".svc.cluster.local" ||
		authority(r[1]) != "customdomain.com" || r[1].GetRoute()[0].GetDestination().GetHost() != "sample-app-v1."+ns+".svc.cluster.local" {
		t.Errorf("routing http %v", r)
	}

	// A restarted router converges: a second Setup changes nothing.
	if _, err := b.Setup(ctx, exp); err != nil {
		t.Fatalf("second setup: %v", err)
	}
	again, _ := vss.Get(ctx, "customdomain-mirroring", metav1.GetOptions{})
	if again.ResourceVersion != mirroringVS.ResourceVersion {
		t.Errorf("second setup rewrote the VirtualService (%s → %s)", mirroringVS.ResourceVersion, again.ResourceVersion)
	}

	if err := b.Teardown(ctx, exp); err != nil {
		t.Fatalf("teardown: %v", err)
	}
	for _, name := range []string{"customdomain-mirroring", "customdomain-routing"} {
		if _, err := vss.Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("%s after teardown: %v, want not found", name, err)
		}
	}

	// Someone else's VirtualService of the same name is never overwritten.
	foreign := &networkingv1.VirtualService{ObjectMeta: metav1.ObjectMeta{Name: "customdomain-mirroring", Namespace: ns}}
	foreign.Spec.Hosts = []string{"customdomain.com"}
	foreign.Spec.Http = []*networking.HTTPRoute{{Route: []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: "elsewhere." + ns + ".svc.cluster.local"}}}}}
	created, err := vss.Create(ctx, foreign, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Setup(ctx, seedExperiment(t, ns, "uid-2")); err == nil || !strings.Contains(err.Error(), "not managed by darklaunch") {
		t.Errorf("setup over a foreign VirtualService: %v, want a refusal", err)
	}
	after, _ := vss.Get(ctx, "customdomain-mirroring", metav1.GetOptions{})
	if after.ResourceVersion != created.ResourceVersion {
		t.Error("the foreign VirtualService was modified")
	}
	if _, err := vss.Get(ctx, "customdomain-routing", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("a refused setup left a routing VirtualService behind: %v", err)
	}
	if err := vss.Delete(ctx, "customdomain-mirroring", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}

	// The dark revision must be in the service's traffic.
	bad := seedExperiment(t, ns, "uid-3")
	bad.Spec.VersionInfo.Baseline.Variables[0].Value = "sample-app-v3"
	fast, _ := istiobackend.New(istiobackend.Config{}, mirroring.Settings{InitTimeout: 500 * time.Millisecond, InitInterval: 100 * time.Millisecond}, admin.istio, admin.dyn, nil)
	if _, err := fast.Setup(ctx, bad); err == nil || !strings.Contains(err.Error(), "sample-app-v3") {
		t.Errorf("setup with an unknown revision: %v", err)
	}
}

func authority(r interface {
	GetMatch() []*networking.HTTPMatchRequest
}) string {
	if len(r.GetMatch()) == 0 {
		return ""
	}
	return r.GetMatch()[0].GetAuthority().GetPrefix()
}

// TestRouterIstioContractOnRealAPIServer: the istio backend passes the
// contract every router backend passes (services/router/routertest)
// against a real API server too, each case in a namespace of its own that
// holds the seed's Ready Knative Service.
func TestRouterIstioContractOnRealAPIServer(t *testing.T) {
	admin := clientsFor(t, cluster(t))
	cases := 0
	routertest.TestBackend(t, func(t *testing.T) routertest.Harness {
		cases++
		ns := fmt.Sprintf("router-contract-%d", cases)
		admin.createNamespace(t, ns)
		admin.applySeedService(t, ns)
		return istiotest.Harness(admin.istio, admin.dyn, ns, func(t *testing.T) routertest.Backend {
			b, err := istiobackend.New(istiobackend.Config{Namespaces: []string{ns}},
				mirroring.Settings{InitTimeout: time.Second, InitInterval: 100 * time.Millisecond}, admin.istio, admin.dyn, nil)
			if err != nil {
				t.Fatal(err)
			}
			return b
		})
	})
}
