"""Locates the pinned lab binaries (built by hack/build-binaries.sh) and Debian's tools."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
VERSIONS_FILE = REPO_ROOT / "hack" / "versions.env"


class MissingBinaryError(RuntimeError):
    """A lab binary is not installed; the message says how to get it."""


def read_pins(path: Path = VERSIONS_FILE) -> dict[str, str]:
    """Parses KEY=VALUE lines of hack/versions.env."""
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            pins[key.strip()] = value.strip()
    return pins


@dataclass(frozen=True)
class Binaries:
    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kubectl: Path
    prometheus: Path
    promtool: Path

    @property
    def k8s_version(self) -> str:
        return read_pins()["K8S_VERSION"]


def bin_dir() -> Path:
    override = os.environ.get("STICKYGUARD_BIN_DIR")
    if override:
        return Path(override)
    pins = read_pins()
    cache = Path(os.environ.get("STICKYGUARD_CACHE", Path.home() / ".cache" / "stickyguard"))
    return cache / "bin" / f"k8s-{pins['K8S_VERSION']}-etcd-{pins['ETCD_VERSION']}"


def _system_tool(name: str, package: str) -> Path:
    found = shutil.which(name)
    if not found:
        raise MissingBinaryError(f"{name} not found on PATH: install Debian's '{package}' package")
    return Path(found)


def find_binaries() -> Binaries:
    """Returns every lab binary or raises MissingBinaryError naming what is missing."""
    d = bin_dir()
    built = {}
    for name in ("etcd", "kube-apiserver", "kube-controller-manager", "kubectl"):
        p = d / name
        if not p.is_file():
            raise MissingBinaryError(
                f"{p} is missing: run hack/build-binaries.sh (or make binaries) first"
            )
        built[name.replace("-", "_")] = p
    return Binaries(
        **built,
        prometheus=_system_tool("prometheus", "prometheus"),
        promtool=_system_tool("promtool", "prometheus"),
    )
