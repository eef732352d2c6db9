"""What the canary-tool peers (stickyguard_lab.argo, stickyguard_lab.flagger) share: their
CRDs applied from the pinned module source and established, and the controller started out
of cluster (the lab's kubeconfig, not the in-cluster service variables) and waited for."""

from __future__ import annotations

import os
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from stickyguard_lab.kubectl import apply, kubectl
from stickyguard_lab.procs import Child, Supervisor
from stickyguard_lab.testenv import LabEnv


def out_of_cluster_env(env: LabEnv) -> dict[str, str]:
    """A controller run next to the cluster: the kubeconfig, never KUBERNETES_SERVICE_*."""
    return {
        "KUBECONFIG": str(env.kubeconfig),
        "KUBERNETES_SERVICE_HOST": "",
        "KUBERNETES_SERVICE_PORT": "",
    }


def install_crds(env: LabEnv, files: Sequence[Path], timeout: float = 60.0) -> None:
    """Server-side applies CRD files (big ones too: no last-applied annotation) and waits
    until every CRD they define is Established."""
    for f in files:
        apply(env.binaries.kubectl, env.kubeconfig, f)
    names = kubectl(
        env.binaries.kubectl,
        env.kubeconfig,
        "apply",
        "--server-side",
        "--dry-run=server",
        *(a for f in files for a in ("-f", str(f))),
        "-o",
        "name",
    ).stdout.split()
    kubectl(
        env.binaries.kubectl,
        env.kubeconfig,
        "wait",
        "--for=condition=Established",
        f"--timeout={int(timeout)}s",
        *names,
    )


def http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as r:
        return bool(r.status == 200)


def start_controller(
    env: LabEnv,
    sup: Supervisor,
    name: str,
    argv: Sequence[str | os.PathLike[str]],
    healthz: str,
    timeout: float = 90.0,
) -> Child:
    """Starts a peer controller out of cluster and waits until `healthz` answers 200."""
    child = sup.start(name, argv, env=out_of_cluster_env(env))
    sup.wait_until(child, lambda: http_ok(healthz), f"{name} {healthz}", timeout=timeout)
    return child
