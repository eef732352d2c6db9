#!/usr/bin/env bash
# Builds the real neighbours stickyguard is proven against (Traefik, Argo Rollouts, Flagger, Flux's
# source-controller and kustomize-controller) from the
# Go module proxy at the versions pinned in hack/versions.env, with the caching scheme of
# hack/build-binaries.sh: one directory per peer and version under $cache/bin, and a `.complete`
# stamp holding a hash of the pin, the peer's wrapper module and its build recipe. A cached peer is
# reused; a stale or missing one is rebuilt.
#
#   hack/build-peers.sh                 # every peer
#   hack/build-peers.sh traefik flagger # a subset
#   hack/build-peers.sh --dir traefik   # print the peer's cache directory, build nothing
#
# Selected peers build in parallel (module downloads are network-bound and each build links one big
# binary at the end, so two builds overlap well even on 2 cores); each build logs to
# $cache/bin/<peer>-<version>.log. Set STICKYGUARD_PEER_JOBS=1 to build one at a time.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=/dev/null
source "$here/versions.env"
cache=${STICKYGUARD_CACHE:-$HOME/.cache/stickyguard}
all_peers=(traefik argo-rollouts flagger flux-source-controller flux-kustomize-controller)

# peer -> pinned version, wrapper module folder, module, main package, binary name, version ldflags.
version_of() {
  case $1 in
    traefik) echo "$TRAEFIK_VERSION" ;;
    argo-rollouts) echo "$ARGO_ROLLOUTS_VERSION" ;;
    flagger) echo "$FLAGGER_VERSION" ;;
    flux-source-controller) echo "$FLUX_SOURCE_CONTROLLER_VERSION" ;;
    flux-kustomize-controller) echo "$FLUX_KUSTOMIZE_CONTROLLER_VERSION" ;;
    *) echo "build-peers: unknown peer '$1' (known: ${all_peers[*]})" >&2; return 1 ;;
  esac
}
# The wrapper module's folder under hack/ (the Flux controllers share hack/flux/).
moddir_of() {
  case $1 in
    flux-*) echo "flux/${1#flux-}" ;;
    *) echo "$1" ;;
  esac
}
module_of() {
  case $1 in
    traefik) echo github.com/traefik/traefik/v3 ;;
    argo-rollouts) echo github.com/argoproj/argo-rollouts ;;
    flagger) echo github.com/fluxcd/flagger ;;
    flux-*) echo "github.com/fluxcd/${1#flux-}" ;;
  esac
}
main_of() {
  case $1 in
    traefik) echo github.com/traefik/traefik/v3/cmd/traefik ;;
    argo-rollouts) echo github.com/argoproj/argo-rollouts/cmd/rollouts-controller ;;
    flagger) echo github.com/fluxcd/flagger/cmd/flagger ;;
    flux-*) echo "github.com/fluxcd/${1#flux-}" ;;
  esac
}
binary_of() {
  case $1 in
    traefik) echo traefik ;;
    argo-rollouts) echo rollouts-controller ;;
    flagger) echo flagger ;;
    flux-*) echo "${1#flux-}" ;;
  esac
}
ldflags_of() {
  local v
  v=$(version_of "$1")
  case $1 in
    traefik) echo "-s -w -X github.com/traefik/traefik/v3/pkg/version.Version=$v" ;;
    argo-rollouts) echo "-s -w -X github.com/argoproj/argo-rollouts/utils/version.version=${v#v}" ;;
    # Flagger's version is a constant in its source; nothing to stamp.
    flagger) echo "-s -w" ;;
    # The Flux controllers take their version from the module's build info.
    flux-*) echo "-s -w" ;;
  esac
}
dir_of() { echo "$cache/bin/$1-$(version_of "$1")"; }
# Comments do not change what gets built, so they do not count; nor do the other pins in
# versions.env (a Kubernetes bump does not rebuild Traefik).
# The stamp covers what the build reads (the pin, the wrapper module, the build recipe below), not
# this whole script: adding a peer or fixing a message must not rebuild the others (~15 min).
# Bump RECIPE when build_one changes how a peer is built.
RECIPE=1
hash_of() {
  (echo "$1 $(version_of "$1") recipe $RECIPE $(module_of "$1") $(main_of "$1") $(binary_of "$1")"
   echo "ldflags $(ldflags_of "$1") CGO_ENABLED=0 GOTOOLCHAIN=local -trimpath"
   cat "$here/$(moddir_of "$1")/go.mod" "$here/$(moddir_of "$1")/go.sum") \
    | grep -v -e "^//" -e "^#" | sha256sum | cut -c1-16
}

if [[ ${1:-} == --dir ]]; then
  dir_of "$2"
  exit 0
fi
peers=("$@")
((${#peers[@]})) || peers=("${all_peers[@]}")
for p in "${peers[@]}"; do version_of "$p" >/dev/null; done

export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=readonly
# One build at a time per cache: a second caller (another test worker) waits for the first and then
# finds the peer cached, instead of building into the same directory at once.
mkdir -p "$cache/bin"
exec 9>"$cache/bin/.build-peers.lock"
flock 9

build_one() {
  local peer=$1 version out want start
  version=$(version_of "$peer")
  out=$(dir_of "$peer")
  want=$(hash_of "$peer")
  # The wrapper module must require the pinned release, or the stamp would lie about what was built.
  if ! grep -q "$(module_of "$peer") $version" "$here/$(moddir_of "$peer")/go.mod"; then
    echo "build-peers: hack/$(moddir_of "$peer")/go.mod does not require $(module_of "$peer") $version" >&2
    return 1
  fi
  rm -f "$out/.complete"
  mkdir -p "$out"
  start=$(date +%s)
  echo "build-peers: $peer $version: downloading modules ($(date -u +%T))"
  (cd "$here/$(moddir_of "$peer")" && go mod download)
  echo "build-peers: $peer $version: modules in $(($(date +%s) - start))s; building ($(date -u +%T))"
  (cd "$here/$(moddir_of "$peer")" && go build -trimpath -ldflags "$(ldflags_of "$peer")" \
    -o "$out/$(binary_of "$peer")" "$(main_of "$peer")")
  if [[ $peer == flux-* ]]; then
    # The controllers exit without their CRDs; keep the pinned release's next to the binary.
    local src
    src=$(cd "$here/$(moddir_of "$peer")" && go list -m -f '{{.Dir}}' "$(module_of "$peer")")
    mkdir -p "$out/crds"
    cp "$src"/config/crd/bases/*.yaml "$out/crds/"
    chmod u+w "$out"/crds/*.yaml
  fi
  echo "$want" >"$out/.complete"
  echo "build-peers: $peer $version: done in $(($(date +%s) - start))s -> $out/$(binary_of "$peer")"
}

jobs=${STICKYGUARD_PEER_JOBS:-${#peers[@]}}
pids=() names=()
for p in "${peers[@]}"; do
  out=$(dir_of "$p")
  if [[ -f "$out/.complete" && "$(cat "$out/.complete")" == "$(hash_of "$p")" ]]; then
    echo "build-peers: $p cached in $out"
    continue
  fi
  mkdir -p "$cache/bin"
  log="$out.log"
  echo "build-peers: building $p $(version_of "$p") (log: $log); Traefik takes ~10 min cold on 2 cores"
  build_one "$p" >"$log" 2>&1 &
  pids+=($!) names+=("$p")
  if ((${#pids[@]} >= jobs)); then
    # Throttled: wait for this build before starting the next.
    wait "${pids[-1]}" || { tail -20 "$log" >&2; exit 1; }
    cat "$log"
    unset 'pids[-1]' 'names[-1]'
  fi
done
failed=0
for i in "${!pids[@]}"; do
  log="$(dir_of "${names[$i]}").log"
  if wait "${pids[$i]}"; then
    cat "$log"
  else
    echo "build-peers: ${names[$i]} failed; last lines of $log:" >&2
    tail -20 "$log" >&2
    failed=1
  fi
done
exit $failed
