"""Argo Rollouts, the real canary controller, next to the lab's cluster.

`rollouts-controller` v1.10 (built by hack/build-peers.sh) runs out of cluster with the lab's
kubeconfig after its CRDs (Rollout, AnalysisTemplate, AnalysisRun, ...) are applied from the
pinned module's `manifests/crds/`. Without a traffic router it shapes a canary by ReplicaSet
replica counts, which the lab's kube-controller-manager and node agent serve as a cluster
would. Its Web metrics are plain HTTP GETs from this process, so a loopback URL reaches
stickyguard's gate.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from kubernetes import client

from stickyguard_lab.binaries import find_peer, peer_source
from stickyguard_lab.peerproc import install_crds, start_controller
from stickyguard_lab.procs import Child, Supervisor, free_port
from stickyguard_lab.testenv import LabEnv

GROUP, VERSION = "argoproj.io", "v1alpha1"


@dataclass
class ArgoRollouts:
    child: Child
    healthz_port: int
    metrics_port: int

    def log(self, lines: int = 40) -> str:
        return self.child.log_tail(lines)


def start_argo_rollouts(env: LabEnv, sup: Supervisor) -> ArgoRollouts:
    """Installs the CRDs and starts the controller (free ports, no leader election)."""
    binary = find_peer("argo-rollouts")
    install_crds(
        env, sorted((peer_source("argo-rollouts") / "manifests" / "crds").glob("*-crd.yaml"))
    )
    healthz, metrics = free_port(), free_port()
    child = start_controller(
        env,
        sup,
        "argo-rollouts",
        [
            binary,
            f"--kubeconfig={env.kubeconfig}",
            "--leader-elect=false",
            f"--healthzPort={healthz}",
            f"--metricsPort={metrics}",
            "--loglevel=info",
        ],
        f"http://127.0.0.1:{healthz}/healthz",
    )
    return ArgoRollouts(child, healthz, metrics)


def get_rollout(custom: client.CustomObjectsApi, ns: str, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = custom.get_namespaced_custom_object(GROUP, VERSION, ns, "rollouts", name)
    return obj


def analysis_runs(custom: client.CustomObjectsApi, ns: str) -> list[dict[str, Any]]:
    """The namespace's AnalysisRuns, oldest first."""
    items: list[dict[str, Any]] = custom.list_namespaced_custom_object(
        GROUP, VERSION, ns, "analysisruns"
    )["items"]
    return sorted(items, key=lambda r: r["metadata"]["creationTimestamp"])


def _value(raw: str) -> str:
    # Argo stores a measurement's value as the JSON of what jsonPath found: "\"fail\"".
    try:
        decoded = json.loads(raw)
    except ValueError:
        return raw
    return decoded if isinstance(decoded, str) else raw


def measurements(run: dict[str, Any]) -> list[tuple[str, str]]:
    """(phase, value) of every measurement of the run's metrics, in order."""
    return [
        (str(m.get("phase")), _value(str(m.get("value", ""))))
        for result in (run.get("status") or {}).get("metricResults") or []
        for m in result.get("measurements") or []
    ]
