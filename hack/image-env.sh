# Sourced by the image scripts: where buildah keeps its images for this project, and how it is
# called. A storage of our own (vfs: works as root with no kernel overlay support and no
# fuse) under the cache keeps these images apart from any other buildah user on the machine.
# shellcheck shell=bash
SG_CACHE=${STICKYGUARD_CACHE:-$HOME/.cache/stickyguard}
SG_STORAGE=${STICKYGUARD_IMAGE_STORE:-$SG_CACHE/containers}
mkdir -p "$SG_CACHE/base" "$SG_STORAGE/root" "$SG_STORAGE/run"

sg_buildah() {
  command -v buildah >/dev/null || {
    echo "error: buildah not found: run 'bash hack/setup.sh image' (installs Debian's buildah)" >&2
    return 2
  }
  buildah --storage-driver vfs --root "$SG_STORAGE/root" --runroot "$SG_STORAGE/run" "$@"
}
