// Package k8s tests darklaunch's Kubernetes side against a real
// kube-apiserver and etcd (no controller-manager, no kubelet: objects are
// stored and validated, nothing runs): the router's istio backend, the Helm
// chart installed server-side, and the chart's RBAC proven by impersonating
// the router's ServiceAccount. The binaries come from test/k8s/assets.sh.
package k8s

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// The versions test/k8s/assets.sh builds.
const k8sVersion = "1.35.4"

var (
	clusterOnce sync.Once
	clusterEnv  *envtest.Environment
	clusterCfg  *rest.Config
	clusterErr  error
	clusterSkip string
)

// assetsDir finds kube-apiserver and etcd: $KUBEBUILDER_ASSETS, else the
// cache test/k8s/assets.sh fills.
func assetsDir() string {
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		return dir
	}
	if dir := os.Getenv("DARKLAUNCH_K8S_ASSETS"); dir != "" {
		return dir
	}
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache")
	}
	return filepath.Join(cache, "darklaunch", "k8s-assets", "v"+k8sVersion)
}

// cluster starts the API server once for the package. Without the binaries
// the test is skipped, saying how to build them — unless CI is set: there
// .ci/run builds them, and missing ones are a failure.
func cluster(t *testing.T) *rest.Config {
	t.Helper()
	clusterOnce.Do(func() {
		dir := assetsDir()
		for _, bin := range []string{"kube-apiserver", "etcd"} {
			if _, err := os.Stat(filepath.Join(dir, bin)); err != nil {
				clusterSkip = fmt.Sprintf("no %s in %s: build the test binaries with `test/k8s/assets.sh` (about 13 minutes once; cached)", bin, dir)
				return
			}
		}
		clusterEnv = &envtest.Environment{
			BinaryAssetsDirectory:    dir,
			CRDDirectoryPaths:        []string{filepath.Join(dir, "crds")},
			ErrorIfCRDPathMissing:    true,
			ControlPlaneStartTimeout: 3 * time.Minute,
			ControlPlaneStopTimeout:  time.Minute,
		}
		clusterCfg, clusterErr = clusterEnv.Start()
	})
	if clusterSkip != "" {
		if os.Getenv("CI") != "" {
			t.Fatal(clusterSkip)
		}
		t.Skip(clusterSkip)
	}
	if clusterErr != nil {
		t.Fatalf("start kube-apiserver: %v", clusterErr)
	}
	return clusterCfg
}

func TestMain(m *testing.M) {
	code := m.Run()
	if clusterEnv != nil {
		if err := clusterEnv.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stop kube-apiserver:", err)
		}
	}
	os.Exit(code)
}
