"""Running a container image without a container engine, for the image test: the image is
built by hack/build-image.sh (buildah, no Docker), its root filesystem is mounted by buildah,
and each command runs the way the shipped Deployment runs the operator: that rootfs mounted
read-only, only an empty /tmp writable, the image's own user, environment and command, no new
privileges. Host network (the lab's apiserver and Prometheus are on loopback)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Runs inside a private mount namespace (unshare --mount): the mounts vanish with the process.
_CONTAINER_SH = r"""
set -eu
rootfs=$1 mnt=$2 config=$3; shift 3
mount --bind "$rootfs" "$mnt"
mount -o remount,bind,ro "$mnt"
mount -t proc proc "$mnt/proc"
mount --rbind /dev "$mnt/dev"
mount -t tmpfs -o nosuid,nodev,mode=1777,size=64m tmpfs "$mnt/tmp"
mkdir "$mnt/tmp/config"
mount --bind "$config" "$mnt/tmp/config"
mount -o remount,bind,ro "$mnt/tmp/config"
exec "$@"
"""


@dataclass(frozen=True)
class Image:
    tag: str
    rootfs: Path
    user: str
    env: dict[str, str]
    cmd: list[str]
    size: str  # as buildah reports it, e.g. '371 MB'


def buildah(*args: str) -> str:
    out = subprocess.run(
        ["bash", "-c", f'source {REPO}/hack/image-env.sh && sg_buildah "$@"', "sg", *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def build(tag: str) -> str:
    out = subprocess.run(
        ["bash", str(REPO / "hack" / "build-image.sh"), tag], capture_output=True, text=True
    )
    if out.returncode != 0:
        tail = out.stderr[-4000:]
        raise AssertionError(f"hack/build-image.sh failed ({out.returncode}):\n{tail}")
    return out.stdout.strip().splitlines()[-1]


def mount(tag: str) -> tuple[str, Image]:
    """A working container of the image (to be removed with `unmount`) and the image's facts."""
    ctr = buildah("from", "--pull=never", tag)
    rootfs = Path(buildah("mount", ctr))
    info = json.loads(buildah("inspect", "--type", "image", tag))
    config = info["OCIv1"]["config"]
    env = dict(e.split("=", 1) for e in config.get("Env") or [])
    (listed,) = json.loads(buildah("images", "--json", tag))
    return ctr, Image(
        tag, rootfs, config.get("User", ""), env, list(config.get("Cmd") or []), listed["size"]
    )


def unmount(ctr: str) -> None:
    buildah("rm", ctr)


def argv(image: Image, command: list[str], workdir: Path, env: dict[str, str]) -> list[str]:
    """The host command that runs `command` in the image as described above. `workdir/config`
    is mounted read-only at /tmp/config (for a kubeconfig, as a Secret would be)."""
    mnt = workdir / "mnt"
    mnt.mkdir(exist_ok=True)
    (workdir / "config").mkdir(exist_ok=True)
    uid, _, gid = image.user.partition(":")
    full_env = {**image.env, **env}
    return [
        "unshare",
        "--mount",
        "--fork",
        "--",
        "sh",
        "-c",
        _CONTAINER_SH,
        "container",
        str(image.rootfs),
        str(mnt),
        str(workdir / "config"),
        # no_new_privs first (it survives the chroot and the uid change), then chroot as root
        # and drop to the image's user; env -i so nothing of the host's environment leaks in.
        "setpriv",
        "--no-new-privs",
        "env",
        "-i",
        *(f"{k}={v}" for k, v in full_env.items()),
        shutil.which("chroot") or "/usr/sbin/chroot",  # env -i leaves no PATH to find it
        f"--userspec={uid}:{gid or uid}",
        str(mnt),
        *command,
    ]


def run(
    image: Image, command: list[str], workdir: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv(image, command, workdir, env or {}),
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
    )
