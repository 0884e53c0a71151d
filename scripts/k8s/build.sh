#!/bin/bash
# Builds the Kubernetes v1.34.4 programs the testbed runs (kube-apiserver,
# kube-controller-manager, kube-scheduler, kubelet, kubectl) from the Go
# module proxy, into $K8S_DIR/bin. The build module lives in $K8S_DIR, outside
# the project's module graph: k8s.io/kubernetes is never a dependency of
# cloonix. Quick when already built (go's build cache; binaries kept).
set -euo pipefail
K8S_VERSION=${K8S_VERSION:-v1.34.4}
K8S_DIR=${K8S_DIR:-$HOME/.cache/cloonix-k8s}
PROGS="kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl"
mod=$K8S_DIR/build
mkdir -p "$mod" "$K8S_DIR/bin"
done=1
for p in $PROGS; do
	[ -x "$K8S_DIR/bin/$p" ] && [ "$(cat "$K8S_DIR/bin/.version" 2>/dev/null)" = "$K8S_VERSION" ] || done=0
done
if [ $done = 1 ]; then
	echo "k8s: $K8S_VERSION binaries already in $K8S_DIR/bin"
	exit 0
fi
cd "$mod"
if [ ! -f go.mod ] || ! grep -q "k8s.io/kubernetes $K8S_VERSION" go.mod; then
	# k8s.io/kubernetes replaces its staging modules by local folders that a
	# module download does not have: replace each by the published module
	# of the same release (v1.X.Y -> v0.X.Y). The list is upstream's go.mod.
	gomod=$(cd / && GOFLAGS= go mod download -json "k8s.io/kubernetes@$K8S_VERSION" |
		sed -n 's/^\s*"GoMod": "\(.*\)",$/\1/p')
	cp "$gomod" upstream.mod
	staging=$(sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' upstream.mod)
	[ -n "$staging" ] || { echo "k8s: no staging modules in upstream.mod" >&2; exit 1; }
	v0=v0.${K8S_VERSION#v1.}
	{
		echo "module cloonix-k8s-build"
		echo
		echo "go 1.24.0"
		echo
		echo "require k8s.io/kubernetes $K8S_VERSION"
		echo
		for m in $staging; do echo "replace $m => $m $v0"; done
	} >go.mod
	cat >tools.go <<'EOT'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
EOT
	rm -f go.sum
fi
export CGO_ENABLED=0 GOFLAGS=-mod=mod
pkgs=""
for p in $PROGS; do pkgs+=" k8s.io/kubernetes/cmd/$p"; done
echo "k8s: building $PROGS $K8S_VERSION (nice 19; minutes when cold)"
# One go build for all: their shared packages are compiled once. nice:
# the machine is shared with other builds and tests.
nice -n 19 go build -trimpath -ldflags "-s -w" -o "$K8S_DIR/bin/" $pkgs
echo "$K8S_VERSION" >"$K8S_DIR/bin/.version"
echo "k8s: binaries in $K8S_DIR/bin"
