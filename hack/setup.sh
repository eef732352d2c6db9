#!/usr/bin/env bash
# Checks and installs what a make target needs from the machine, so that `make demo` and
# `make test` work on a fresh Debian machine with nothing done by hand:
#   bash hack/setup.sh venv|demo|test|image
# Missing Debian packages are installed when running as root with apt-get; otherwise one line
# gives the exact command and the exit code is 2. An unsupported Python, or a missing or too
# old Go while the Kubernetes binaries still have to be built, is one line and exit 2 too.
# Every check is a quick look when everything is already there, so make runs it every time.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
target=${1:-test}
python=${PYTHON:-python3}

fail() { echo "setup: $*" >&2; exit 2; }

# --- Python: the venv is made from it, and the package needs >= 3.11.
command -v "$python" >/dev/null || fail "no $python on PATH: install Python >= 3.11 (Debian: apt-get install python3 python3-venv)"
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
  fail "stickyguard needs Python >= 3.11, $python is $("$python" -c 'import platform; print(platform.python_version())'): install a newer one and run make PYTHON=/path/to/python3.11 $target"

# --- Debian packages: each wanted command and the package that brings it.
declare -A pkg_of=([prometheus]=prometheus [promtool]=prometheus)
case "$target" in
  venv) wanted=() ;;
  demo) wanted=(prometheus promtool) ;;
  # The suite runs the demo's lab pieces, builds and runs the image, and renders the demo's
  # HTML report in a browser.
  test) wanted=(prometheus promtool buildah debootstrap chromium) ;;
  image) wanted=(buildah debootstrap) ;;
  *) fail "unknown target '$target' (use venv, demo, test or image)" ;;
esac
pkg_of+=([buildah]=buildah [debootstrap]=debootstrap [chromium]=chromium)
packages=()
for cmd in ${wanted[@]+"${wanted[@]}"}; do
  # debootstrap lives in /usr/sbin, which a non-root PATH may lack.
  command -v "$cmd" >/dev/null || [[ -x "/usr/sbin/$cmd" ]] || packages+=("${pkg_of[$cmd]}")
done
# venv's ensurepip is a separate Debian package for Debian's own python3.
"$python" -c 'import ensurepip' 2>/dev/null || packages+=("python3-venv")
if ((${#packages[@]})); then
  mapfile -t packages < <(printf '%s\n' "${packages[@]}" | sort -u)
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "setup: installing Debian packages: ${packages[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    # fonts-dejavu-core: the headless browser needs a font to draw the report's text.
    extra=()
    [[ " ${packages[*]} " == *" chromium "* ]] && extra+=(fonts-dejavu-core)
    apt-get install -y -qq --no-install-recommends "${packages[@]}" "${extra[@]}" >/dev/null ||
      fail "apt-get install ${packages[*]} failed (see the lines above)"
  elif command -v apt-get >/dev/null; then
    fail "missing Debian packages; run: sudo apt-get install -y --no-install-recommends ${packages[*]}"
  else
    fail "missing tools (Debian package names: ${packages[*]}): install them with your system's package manager"
  fi
fi

# --- Go: only needed while the pinned Kubernetes binaries are not built and cached yet.
# (hack/build-binaries.sh hashes its own code into the cache stamp, so it is left alone here.)
# shellcheck source=/dev/null
source "$here/versions.env"
bins="${STICKYGUARD_CACHE:-$HOME/.cache/stickyguard}/bin/k8s-$K8S_VERSION-etcd-$ETCD_VERSION"
if [[ "$target" != image && "$target" != venv && ! -f "$bins/.complete" ]]; then
  need=$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$here/k8s/go.mod")
  command -v go >/dev/null ||
    fail "Go >= $need is needed once to build the pinned Kubernetes and etcd (hack/build-binaries.sh): install it and put it on PATH (Debian bookworm's golang-go is too old)"
  have=$(go env GOVERSION 2>/dev/null | sed 's/^go//')
  if [[ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -1)" != "$need" ]]; then
    fail "Go >= $need is needed to build the pinned Kubernetes (found go$have): install a newer Go and put it first on PATH"
  fi
fi
exit 0
