#!/usr/bin/env bash
# Builds the operator image from the Dockerfile without Docker: Debian's buildah (chroot
# isolation, vfs storage; needs root) on top of the locally made Debian base of
# hack/image-base.sh, passed as the Dockerfile's PYTHON build-arg. Users' builds (`make image`)
# keep the official Python image. Prints the image name on its last line.
#   bash hack/build-image.sh [TAG]        (default localhost/stickyguard:ci)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=/dev/null
source "$here/image-env.sh"
tag=${1:-localhost/stickyguard:ci}
[[ $(id -u) -eq 0 ]] || { echo "error: the CI image build runs buildah as root (chroot isolation): run it as root, or use 'make image' with Docker" >&2; exit 2; }
base=$(bash "$here/image-base.sh" | tail -1)
start=$(date +%s)
echo "image: building $tag from $base" >&2
# pip in the build stage must trust what this machine trusts (a network may re-sign TLS with
# its own CA): the host's CA bundle is bind-mounted over the image's for the RUN steps only, so
# nothing of the host ends up in the image. (Debian's pip reads the system bundle.)
mounts=()
ca=/etc/ssl/certs/ca-certificates.crt
[[ -f "$ca" ]] && mounts+=(--volume "$ca:$ca:ro")
sg_buildah build --isolation chroot --layers=false --pull=never --build-arg "PYTHON=$base" \
  ${mounts[@]+"${mounts[@]}"} -t "$tag" -f "$here/../Dockerfile" "$here/.." >&2
# A rebuild leaves the previous image of this tag dangling; vfs keeps full copies, so drop them.
sg_buildah rmi --prune >/dev/null 2>&1 || true
size=$(sg_buildah images --format '{{.Size}}' --filter "reference=$tag" | head -1)
echo "image: $tag built in $(( $(date +%s) - start ))s, $size" >&2
echo "$tag"
