#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager, kubectl and etcd from the Go module proxy at the
# versions pinned in hack/versions.env, into a cache directory outside the repo keyed by version.
# Rebuilds only when the pin (or the wrapper modules) change.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=/dev/null
source "$here/versions.env"
cache=${STICKYGUARD_CACHE:-$HOME/.cache/stickyguard}
out="$cache/bin/k8s-$K8S_VERSION-etcd-$ETCD_VERSION"
stamp="$out/.complete"
# Comments do not change what gets built, so they do not count; nor do other pins in versions.env
# (the peers of hack/build-peers.sh), so bumping one of those does not rebuild Kubernetes.
want=$( (grep -E "^(K8S|ETCD)_VERSION=" "$here/versions.env"; cat "$here/k8s/go.mod" \
  "$here/k8s/go.sum" "$here/etcd/go.mod" "$here/etcd/go.sum" "$0") | grep -v -e "^//" -e "^#" |
  sha256sum | cut -c1-16)
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  echo "binaries: cached in $out"
  exit 0
fi
mkdir -p "$out"
export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=readonly
minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
build_date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
vpkgs=(k8s.io/component-base/version k8s.io/client-go/pkg/version)
ld="-s -w"
for p in "${vpkgs[@]}"; do
  ld+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
  ld+=" -X $p.gitTreeState=clean -X $p.buildDate=$build_date"
done
start=$(date +%s)
echo "binaries: downloading Kubernetes $K8S_VERSION modules ($(date -u +%T))"
(cd "$here/k8s" && go mod download)
echo "binaries: building kube-apiserver, kube-controller-manager, kubectl ($(date -u +%T)); this takes a while on 2 cores"
(cd "$here/k8s" && go build -trimpath -ldflags "$ld" -o "$out/" \
   k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kubectl)
echo "binaries: Kubernetes built in $(( $(date +%s) - start ))s; building etcd $ETCD_VERSION ($(date -u +%T))"
(cd "$here/etcd" && go mod download && go build -trimpath -ldflags "-s -w" -o "$out/etcd" go.etcd.io/etcd/server/v3)
echo "$want" > "$stamp"
echo "binaries: done in $(( $(date +%s) - start ))s -> $out"
"$out/kubectl" version --client
"$out/etcd" --version | head -1
