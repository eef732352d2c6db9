"""Locates the pinned lab binaries (built by hack/build-binaries.sh), the peers stickyguard is
proven against (built on demand by hack/build-peers.sh) and Debian's tools."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
VERSIONS_FILE = REPO_ROOT / "hack" / "versions.env"
BUILD_PEERS = REPO_ROOT / "hack" / "build-peers.sh"

# peer -> (its pin in versions.env, the binary hack/build-peers.sh puts in its cache directory)
PEERS = {
    "traefik": ("TRAEFIK_VERSION", "traefik"),
    "argo-rollouts": ("ARGO_ROLLOUTS_VERSION", "rollouts-controller"),
    "flagger": ("FLAGGER_VERSION", "flagger"),
    "flux-source-controller": ("FLUX_SOURCE_CONTROLLER_VERSION", "source-controller"),
    "flux-kustomize-controller": ("FLUX_KUSTOMIZE_CONTROLLER_VERSION", "kustomize-controller"),
}


class LabError(RuntimeError):
    """An expected failure of the lab (a missing tool, a taken port): `python -m
    stickyguard_lab` prints its message as one line, with the fix, instead of a traceback."""


class MissingBinaryError(LabError):
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


def _cache() -> Path:
    return Path(os.environ.get("STICKYGUARD_CACHE", Path.home() / ".cache" / "stickyguard"))


def bin_dir() -> Path:
    override = os.environ.get("STICKYGUARD_BIN_DIR")
    if override:
        return Path(override)
    pins = read_pins()
    return _cache() / "bin" / f"k8s-{pins['K8S_VERSION']}-etcd-{pins['ETCD_VERSION']}"


def peer_dir(peer: str) -> Path:
    """The cache directory of a peer (hack/build-peers.sh --dir PEER says the same)."""
    pin, _ = PEERS[peer]
    return _cache() / "bin" / f"{peer}-{read_pins()[pin]}"


def find_peers(*peers: str, build: bool = True) -> dict[str, Path]:
    """The pinned binaries of peers ("traefik", "argo-rollouts", "flagger"). With `build`, runs
    hack/build-peers.sh PEER... first (one call, so missing peers build in parallel): instant
    when the cache is current, a cold build otherwise (Traefik: ~10 minutes on 2 cores), so a
    test that needs a peer gets it the same way CI does."""
    unknown = [p for p in peers if p not in PEERS]
    if unknown:
        raise MissingBinaryError(f"unknown peer(s) {unknown}: known are {', '.join(PEERS)}")
    if build:
        proc = subprocess.run(
            ["nice", "-n", "10", "bash", str(BUILD_PEERS), *peers],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise MissingBinaryError(
                f"hack/build-peers.sh {' '.join(peers)} failed:\n"
                f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
            )
    found = {}
    for peer in peers:
        path = peer_dir(peer) / PEERS[peer][1]
        if not (path.is_file() and (path.parent / ".complete").is_file()):
            raise MissingBinaryError(f"{path} is missing: run hack/build-peers.sh {peer}")
        found[peer] = path
    return found


def find_peer(peer: str, build: bool = True) -> Path:
    """The pinned binary of one peer (see find_peers)."""
    return find_peers(peer, build=build)[peer]


# peer -> the Go module hack/build-peers.sh builds it from (its source holds the CRDs)
PEER_MODULES = {
    "traefik": "github.com/traefik/traefik/v3",
    "argo-rollouts": "github.com/argoproj/argo-rollouts",
    "flagger": "github.com/fluxcd/flagger",
}


def peer_source(peer: str) -> Path:
    """The pinned peer's module source in the Go module cache, where hack/build-peers.sh
    downloaded it (its CRDs are applied from there, as they were released). Offline: it
    never fetches anything."""
    proc = subprocess.run(
        ["go", "list", "-m", "-f", "{{.Dir}}", PEER_MODULES[peer]],
        cwd=REPO_ROOT / "hack" / peer,
        env={**os.environ, "GOPROXY": "off", "GOFLAGS": "-mod=readonly", "GOTOOLCHAIN": "local"},
        capture_output=True,
        text=True,
        check=False,
    )
    folder = Path(proc.stdout.strip())
    if proc.returncode != 0 or not folder.is_dir():
        raise MissingBinaryError(
            f"the {peer} module source is not in the Go module cache: run "
            f"hack/build-peers.sh {peer} ({proc.stderr.strip()[-300:]})"
        )
    return folder


def find_tool(name: str, package: str) -> Path:
    """A tool from a Debian package, or MissingBinaryError saying how to install it."""
    # Debian puts some daemons in /usr/sbin, which a non-root PATH lacks;
    # STICKYGUARD_TOOL_PATH replaces the search path (own builds of the tools, tests).
    search = os.environ.get("STICKYGUARD_TOOL_PATH") or os.pathsep.join(
        [os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]
    )
    found = shutil.which(name, path=search)
    if not found:
        raise MissingBinaryError(
            f"{name} not found on PATH: run 'bash hack/setup.sh demo' (installs Debian's "
            f"'{package}' package as root, else prints the apt-get command)"
        )
    return Path(found)


def find_binaries() -> Binaries:
    """Returns every lab binary or raises MissingBinaryError naming what is missing."""
    d = bin_dir()
    built = {}
    for name in ("etcd", "kube-apiserver", "kube-controller-manager", "kubectl"):
        p = d / name
        if not p.is_file():
            raise MissingBinaryError(
                f"{p} is missing: run 'make binaries' first (builds Kubernetes and etcd once)"
            )
        built[name.replace("-", "_")] = p
    return Binaries(
        **built,
        prometheus=find_tool("prometheus", "prometheus"),
        promtool=find_tool("promtool", "prometheus"),
    )
