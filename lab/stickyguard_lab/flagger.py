"""Flagger, the real progressive-delivery operator, next to the lab's cluster.

Flagger v1.36 (built by hack/build-peers.sh) runs out of cluster with the lab's kubeconfig and
`-mesh-provider kubernetes` (blue/green with plain Services: `<app>`, `<app>-primary`,
`<app>-canary`, and an `<app>-primary` Deployment), after its CRDs are applied from the pinned
module's `artifacts/flagger/crd.yaml` (it exits without them). `-metrics-server` is the lab's
Prometheus; the canaries stickyguard judges use webhooks only, which Flagger POSTs from this
process, so a loopback URL reaches stickyguard's gate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubernetes import client

from stickyguard_lab.binaries import find_peer, peer_source
from stickyguard_lab.peerproc import install_crds, start_controller
from stickyguard_lab.procs import Child, Supervisor, free_port
from stickyguard_lab.testenv import LabEnv

GROUP, VERSION = "flagger.app", "v1beta1"


@dataclass
class Flagger:
    child: Child
    port: int

    def log(self, lines: int = 40) -> str:
        return self.child.log_tail(lines)


def start_flagger(env: LabEnv, sup: Supervisor) -> Flagger:
    """Installs the CRDs and starts Flagger (a free port, no leader election)."""
    binary = find_peer("flagger")
    install_crds(env, [peer_source("flagger") / "artifacts" / "flagger" / "crd.yaml"])
    port = free_port()
    child = start_controller(
        env,
        sup,
        "flagger",
        [
            binary,
            f"-kubeconfig={env.kubeconfig}",
            "-mesh-provider=kubernetes",
            f"-metrics-server={env.prometheus.url}",
            f"-port={port}",
            "-enable-leader-election=false",
            "-log-level=info",
            "-zap-encoding=console",
        ],
        f"http://127.0.0.1:{port}/healthz",
    )
    return Flagger(child, port)


def get_canary(custom: client.CustomObjectsApi, ns: str, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = custom.get_namespaced_custom_object(GROUP, VERSION, ns, "canaries", name)
    return obj


def phase(custom: client.CustomObjectsApi, ns: str, name: str) -> str:
    """The Canary's status.phase (Initializing, Initialized, Progressing, WaitingPromotion,
    Promoting, Finalising, Succeeded, Failed), "" before Flagger wrote one."""
    return str((get_canary(custom, ns, name).get("status") or {}).get("phase") or "")
