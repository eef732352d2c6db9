"""Kubernetes reads for a policy (the imperative shell): the selected pods and their metadata."""

from __future__ import annotations

from typing import Any

from kubernetes import client

from stickyguard.analysis import PodMeta
from stickyguard.policy import Policy

ZONE_LABEL = "topology.kubernetes.io/zone"
VERSION_LABELS = ("version", "app.kubernetes.io/version")


def pod_meta(pod: Any, zones: dict[str, str]) -> PodMeta:
    """PodMeta of a V1Pod: node, zone (from its Node), version label, owning ReplicaSet."""
    labels = dict(pod.metadata.labels or {})
    owner = next(
        (o.name for o in pod.metadata.owner_references or [] if o.kind == "ReplicaSet"), ""
    )
    node = pod.spec.node_name or ""
    version = next((labels[k] for k in VERSION_LABELS if k in labels), "")
    return PodMeta(
        pod.metadata.name,
        node=node,
        zone=zones.get(node, ""),
        version=version,
        replicaset=owner,
        labels=labels,
    )


def node_zones(core: client.CoreV1Api) -> dict[str, str]:
    return {
        n.metadata.name: (n.metadata.labels or {}).get(ZONE_LABEL, "")
        for n in core.list_node().items
    }


def selected_pods(core: client.CoreV1Api, policy: Policy) -> list[Any]:
    """The policy's pods that exist and are not being deleted."""
    pods = core.list_namespaced_pod(
        policy.namespace, label_selector=policy.selector.to_label_selector()
    ).items
    return [p for p in pods if not p.metadata.deletion_timestamp]


def read_pod_meta(core: client.CoreV1Api, policy: Policy) -> dict[str, PodMeta]:
    zones = node_zones(core)
    return {p.metadata.name: pod_meta(p, zones) for p in selected_pods(core, policy)}
