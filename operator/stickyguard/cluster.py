"""Kubernetes reads for a policy (the imperative shell): the selected pods and their metadata."""

from __future__ import annotations

from typing import Any

from kubernetes import client

from stickyguard.analysis import PodMeta
from stickyguard.planner import PodState
from stickyguard.policy import SERVING, Policy
from stickyguard.status import parse_rfc3339

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


def selected_pods(core: client.CoreV1Api, policy: Policy, *, deleting: bool = False) -> list[Any]:
    """The policy's pods (without those being deleted, unless asked)."""
    pods = core.list_namespaced_pod(
        policy.namespace, label_selector=policy.selector.to_label_selector()
    ).items
    return [p for p in pods if deleting or not p.metadata.deletion_timestamp]


def read_pod_meta(core: client.CoreV1Api, policy: Policy) -> dict[str, PodMeta]:
    zones = node_zones(core)
    return {p.metadata.name: pod_meta(p, zones) for p in selected_pods(core, policy)}


DRAINED_BY = "stickyguard.dev/drained-by"
DRAINED_AT = "stickyguard.dev/drained-at"
DRAIN_REASON = "stickyguard.dev/drain-reason"
UNDRAIN = "stickyguard.dev/undrain"
ISOLATED_AT = "stickyguard.dev/isolated-at"
CORDONED_BY = "stickyguard.dev/cordoned-by"


def pod_state(pod: Any, policy: Policy) -> PodState:
    """The planner's view of a V1Pod."""
    conditions = {c.type: c.status for c in (pod.status.conditions or [])} if pod.status else {}
    annotations = pod.metadata.annotations or {}
    labels = pod.metadata.labels or {}
    gates = [g.condition_type for g in pod.spec.readiness_gates or []]
    if policy.actions.drain.method == "ReadinessGate":
        gate = conditions.get(SERVING)
        serving: bool | None = None if gate is None else gate == "True"
    else:
        serving = labels.get(SERVING) == "true"
    return PodState(
        name=pod.metadata.name,
        node=pod.spec.node_name or "",
        ready=conditions.get("Ready") == "True",
        serving=serving,
        has_gate=SERVING in gates,
        drained_by=annotations.get(DRAINED_BY),
        drained_at=parse_rfc3339(annotations.get(DRAINED_AT)),
        drain_reason=annotations.get(DRAIN_REASON, ""),
        undrain=UNDRAIN in annotations,
        deleting=pod.metadata.deletion_timestamp is not None,
        isolated_at=parse_rfc3339(annotations.get(ISOLATED_AT)),
    )


def cordoned_nodes(core: client.CoreV1Api, policy: Policy) -> frozenset[str]:
    """Nodes this policy cordoned and that are still unschedulable."""
    owner = f"{policy.namespace}/{policy.name}"
    return frozenset(
        n.metadata.name
        for n in core.list_node().items
        if (n.metadata.annotations or {}).get(CORDONED_BY) == owner and n.spec.unschedulable
    )
