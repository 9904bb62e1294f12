package istio

import (
	"context"
	"errors"
	"fmt"
	"os"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	networkingv1alpha3 "istio.io/client-go/pkg/apis/networking/v1alpha3"
	"istio.io/client-go/pkg/clientset/versioned"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// kubeClients builds the istio and dynamic clients from the kubeconfig
// file, or when it is empty from the in-cluster configuration, else
// $KUBECONFIG or ~/.kube/config.
func kubeClients(kubeconfig string) (versioned.Interface, dynamic.Interface, error) {
	rc, err := restConfig(kubeconfig)
	if err != nil {
		return nil, nil, err
	}
	rc.UserAgent = "darklaunch-router"
	ic, err := versioned.NewForConfig(rc)
	if err != nil {
		return nil, nil, fmt.Errorf("istio client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return ic, dyn, nil
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
		}
		return rc, nil
	}
	rc, err := rest.InClusterConfig()
	if err == nil {
		return rc, nil
	}
	if !errors.Is(err, rest.ErrNotInCluster) && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("in-cluster kubernetes configuration: %w", err)
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rc, err = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("not in a cluster, and no kubeconfig ($KUBECONFIG, ~/.kube/config) either: %w", err)
	}
	return rc, nil
}

// virtualServices is the VirtualService API in the version the backend
// speaks: networking.istio.io/v1, or v1alpha3 for an old Istio
// (LegacyMirrorPercent) that serves nothing newer. Objects cross it as v1
// VirtualServices: both versions carry the same spec.
type virtualServices interface {
	Get(ctx context.Context, ns, name string) (*networkingv1.VirtualService, error)
	List(ctx context.Context, ns, selector string) ([]*networkingv1.VirtualService, error)
	Create(ctx context.Context, vs *networkingv1.VirtualService) (*networkingv1.VirtualService, error)
	Update(ctx context.Context, vs *networkingv1.VirtualService) (*networkingv1.VirtualService, error)
	// Delete deletes ns/name if it still has resourceVersion rv.
	Delete(ctx context.Context, ns, name, rv string) error
}

func newVirtualServices(ic versioned.Interface, legacy bool) virtualServices {
	if legacy {
		return vsV1alpha3{ic}
	}
	return vsV1{ic}
}

// fieldManager names darklaunch in the objects' managedFields.
const fieldManager = "darklaunch-router"

func deleteIfUnchanged(rv string) metav1.DeleteOptions {
	if rv == "" {
		return metav1.DeleteOptions{}
	}
	return metav1.DeleteOptions{Preconditions: &metav1.Preconditions{ResourceVersion: &rv}}
}

type vsV1 struct{ ic versioned.Interface }

func (c vsV1) Get(ctx context.Context, ns, name string) (*networkingv1.VirtualService, error) {
	return c.ic.NetworkingV1().VirtualServices(ns).Get(ctx, name, metav1.GetOptions{})
}

func (c vsV1) List(ctx context.Context, ns, selector string) ([]*networkingv1.VirtualService, error) {
	l, err := c.ic.NetworkingV1().VirtualServices(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return nil, err
	}
	return l.Items, nil
}

func (c vsV1) Create(ctx context.Context, vs *networkingv1.VirtualService) (*networkingv1.VirtualService, error) {
	return c.ic.NetworkingV1().VirtualServices(vs.Namespace).Create(ctx, vs, metav1.CreateOptions{FieldManager: fieldManager})
}

func (c vsV1) Update(ctx context.Context, vs *networkingv1.VirtualService) (*networkingv1.VirtualService, error) {
	return c.ic.NetworkingV1().VirtualServices(vs.Namespace).Update(ctx, vs, metav1.UpdateOptions{FieldManager: fieldManager})
}

func (c vsV1) Delete(ctx context.Context, ns, name, rv string) error {
	return c.ic.NetworkingV1().VirtualServices(ns).Delete(ctx, name, deleteIfUnchanged(rv))
}

type vsV1alpha3 struct{ ic versioned.Interface }

func (c vsV1alpha3) Get(ctx context.Context, ns, name string) (*networkingv1.VirtualService, error) {
	vs, err := c.ic.NetworkingV1alpha3().VirtualServices(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	return fromV1alpha3(vs), nil
}

func (c vsV1alpha3) List(ctx context.Context, ns, selector string) ([]*networkingv1.VirtualService, error) {
	l, err := c.ic.NetworkingV1alpha3().VirtualServices(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return nil, err
	}
	out := make([]*networkingv1.VirtualService, len(l.Items))
	for i, vs := range l.Items {
		out[i] = fromV1alpha3(vs)
	}
	return out, nil
}

func (c vsV1alpha3) Create(ctx context.Context, vs *networkingv1.VirtualService) (*networkingv1.VirtualService, error) {
	got, err := c.ic.NetworkingV1alpha3().VirtualServices(vs.Namespace).Create(ctx, toV1alpha3(vs), metav1.CreateOptions{FieldManager: fieldManager})
	if err != nil {
		return nil, err
	}
	return fromV1alpha3(got), nil
}

func (c vsV1alpha3) Update(ctx context.Context, vs *networkingv1.VirtualService) (*networkingv1.VirtualService, error) {
	got, err := c.ic.NetworkingV1alpha3().VirtualServices(vs.Namespace).Update(ctx, toV1alpha3(vs), metav1.UpdateOptions{FieldManager: fieldManager})
	if err != nil {
		return nil, err
	}
	return fromV1alpha3(got), nil
}

func (c vsV1alpha3) Delete(ctx context.Context, ns, name, rv string) error {
	return c.ic.NetworkingV1alpha3().VirtualServices(ns).Delete(ctx, name, deleteIfUnchanged(rv))
}

func toV1alpha3(vs *networkingv1.VirtualService) *networkingv1alpha3.VirtualService {
	out := &networkingv1alpha3.VirtualService{}
	vs.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	vs.Spec.DeepCopyInto(&out.Spec)
	return out
}

func fromV1alpha3(vs *networkingv1alpha3.VirtualService) *networkingv1.VirtualService {
	out := &networkingv1.VirtualService{}
	vs.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	vs.Spec.DeepCopyInto(&out.Spec)
	return out
}
