#!/usr/bin/env bash
# Builds the two binaries the Kubernetes tests run — kube-apiserver (from the Go
# module k8s.io/kubernetes) and etcd (from go.etcd.io/etcd/server/v3) — into a
# cache outside the repository, copies the CRDs the tests install (Istio's from
# the istio.io/api module, Knative Serving's from knative.dev/serving) into its
# crds/ folder, and prints that directory. Builds only what is missing: the
# first run takes about 13 minutes on 2 cores, later runs none.
#
#   export KUBEBUILDER_ASSETS=$(test/k8s/assets.sh)
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-1.35.4}
ETCD_VERSION=${ETCD_VERSION:-3.6.16}
ISTIO_API_VERSION=${ISTIO_API_VERSION:-1.32.0}
KNATIVE_SERVING_VERSION=${KNATIVE_SERVING_VERSION:-0.51.0}
ASSETS=${DARKLAUNCH_K8S_ASSETS:-${XDG_CACHE_HOME:-$HOME/.cache}/darklaunch/k8s-assets/v$K8S_VERSION}
mkdir -p "$ASSETS"
log() { echo "assets: $*" >&2; }

# A scratch module per binary keeps their dependency graphs out of ours.
scratch() {
	local dir
	dir=$(mktemp -d)
	(cd "$dir" && go mod init scratch >/dev/null 2>&1)
	echo "$dir"
}

if [ ! -x "$ASSETS/kube-apiserver" ]; then
	log "building kube-apiserver v$K8S_VERSION (about 11 minutes cold)"
	dir=$(scratch)
	staging="v0.${K8S_VERSION#1.}"
	(
		cd "$dir"
		go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" >/dev/null
		gomod=$(go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
		# k8s.io/kubernetes replaces its staging modules with local paths;
		# a module that requires it must replace them with their releases.
		# Read once; grep -q on a here-string, not a pipe: under pipefail
		# its early exit could SIGPIPE the writer and fail the test.
		modjson=$(go mod edit -json "$gomod")
		for m in $(sed -n 's/.*"Path": "\(k8s.io\/[^"]*\)".*/\1/p' <<<"$modjson" | sort -u); do
			case "$m" in k8s.io/kubernetes) continue ;; esac
			if grep -q "\"Path\": \"\./staging/src/$m\"" <<<"$modjson"; then
				go mod edit -replace "$m=$m@$staging"
			fi
		done
		go mod edit -require "k8s.io/kubernetes@v$K8S_VERSION"
		echo 'package main; import _ "k8s.io/kubernetes/cmd/kube-apiserver/app"' > keep.go
		go mod tidy >/dev/null
		# The version the server reports (clients like helm check it).
		v=k8s.io/component-base/version
		minor=${K8S_VERSION#1.}
		minor=${minor%%.*}
		CGO_ENABLED=0 go build -trimpath -o "$ASSETS/kube-apiserver.tmp" \
			-ldflags "-s -w -X $v.gitVersion=v$K8S_VERSION -X $v.gitMajor=1 -X $v.gitMinor=$minor -X $v.gitTreeState=clean" \
			k8s.io/kubernetes/cmd/kube-apiserver
	)
	mv "$ASSETS/kube-apiserver.tmp" "$ASSETS/kube-apiserver"
	rm -rf "$dir"
fi

if [ ! -x "$ASSETS/etcd" ]; then
	log "building etcd v$ETCD_VERSION (about 2 minutes cold)"
	dir=$(scratch)
	(
		cd "$dir"
		echo 'package main; import _ "go.etcd.io/etcd/server/v3/etcdmain"' > keep.go
		go get "go.etcd.io/etcd/server/v3@v$ETCD_VERSION" >/dev/null 2>&1
		go mod tidy >/dev/null
		CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$ASSETS/etcd.tmp" go.etcd.io/etcd/server/v3
	)
	mv "$ASSETS/etcd.tmp" "$ASSETS/etcd"
	rm -rf "$dir"
fi

if [ ! -s "$ASSETS/crds/istio.yaml" ] || [ ! -s "$ASSETS/crds/knative-service.yaml" ]; then
	log "copying CRDs: istio.io/api v$ISTIO_API_VERSION, knative.dev/serving v$KNATIVE_SERVING_VERSION"
	mkdir -p "$ASSETS/crds"
	dir=$(scratch)
	moddir() { (cd "$dir" && go mod download -json "$1" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p'); }
	istio=$(moddir "istio.io/api@v$ISTIO_API_VERSION")
	knative=$(moddir "knative.dev/serving@v$KNATIVE_SERVING_VERSION")
	cp "$istio/kubernetes/customresourcedefinitions.gen.yaml" "$ASSETS/crds/istio.yaml"
	# Knative Serving's own CRDs: services, configurations, revisions, routes.
	for crd in service configuration revision route; do
		cp "$knative/config/core/300-resources/$crd.yaml" "$ASSETS/crds/knative-$crd.yaml"
	done
	chmod u+w "$ASSETS"/crds/*.yaml
	rm -rf "$dir"
fi

"$ASSETS/kube-apiserver" --version >&2
"$ASSETS/etcd" --version | sed -n 1p >&2 # not head: under pipefail, head can SIGPIPE etcd (exit 141)
echo "$ASSETS"
