#!/usr/bin/env bash
# Makes the base image the CI image build starts from, without Docker or a registry other than
# Debian's: a debootstrap of this machine's Debian release with its python3 and venv, imported
# into buildah's storage as localhost/stickyguard-base:<release>. The rootfs tarball is cached
# outside the repo keyed by release and package list, so only the first run pays for
# debootstrap. Users' builds keep the official Python image (the Dockerfile's default).
# Prints the image name on its last line. Needs root, debootstrap and buildah (hack/setup.sh image).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=/dev/null
source "$here/image-env.sh"

release=${STICKYGUARD_BASE_RELEASE:-$(. /etc/os-release && echo "${VERSION_CODENAME:-}")}
[[ -n "$release" ]] || { echo "error: no Debian release found in /etc/os-release: set STICKYGUARD_BASE_RELEASE" >&2; exit 2; }
mirror=${STICKYGUARD_DEBIAN_MIRROR:-http://deb.debian.org/debian}
# python3-venv brings ensurepip (the Dockerfile makes a venv); ca-certificates for pip's TLS.
packages=python3,python3-venv,ca-certificates
key=$(printf '%s %s %s' "$release" "$packages" "$(sha256sum "$0" | cut -c1-12)" | sha256sum | cut -c1-12)
tarball="$SG_CACHE/base/$release-$key.tar"
image="localhost/stickyguard-base:$release-$key"

if sg_buildah inspect --type image "$image" >/dev/null 2>&1; then
  echo "base image: cached ($image)" >&2
  echo "$image"
  exit 0
fi
if [[ ! -f "$tarball" ]]; then
  start=$(date +%s)
  echo "base image: debootstrap $release with $packages (once; cached in $tarball)" >&2
  work=$(mktemp -d "$SG_CACHE/base/debootstrap.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  debootstrap --variant=minbase --include="$packages" "$release" "$work/root" "$mirror" \
    >"$work.log" 2>&1 || { echo "error: debootstrap failed, see $work.log" >&2; exit 1; }
  # The image is not a system: no apt lists, docs or man pages (as the official images do).
  rm -rf "$work/root/var/lib/apt/lists/"* "$work/root/var/cache/apt/"*.bin \
    "$work/root/usr/share/doc" "$work/root/usr/share/man" "$work/root/usr/share/locale"
  tar -C "$work/root" --numeric-owner -cf "$tarball.part" .
  mv "$tarball.part" "$tarball"
  rm -f "$work.log"
  echo "base image: debootstrap done in $(( $(date +%s) - start ))s" >&2
fi
ctr=$(sg_buildah from scratch)
mnt=$(sg_buildah mount "$ctr")
tar -C "$mnt" --numeric-owner -xf "$tarball"
sg_buildah umount "$ctr" >/dev/null
sg_buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --cmd /usr/bin/python3 "$ctr"
sg_buildah commit --quiet --rm "$ctr" "$image" >/dev/null
echo "$image"
