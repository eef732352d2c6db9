"""Kubernetes reads for a policy (the imperative shell): the selected pods and their metadata."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from kubernetes import client

from stickyguard.core.analysis import PodMeta
from stickyguard.core.drain_methods import PodView, method_named, recorded_method
from stickyguard.core.names import (
    CONTAINED,
    CORDONED_BY,
    DRAIN_METHOD,
    DRAIN_REASON,
    DRAINED_AT,
    DRAINED_BY,
    ISOLATED_AT,
    POD_TEMPLATE_HASH,
    SERVING,
    UNDRAIN,
    VERSION_LABELS,
    ZONE_LABEL,
    parse_rfc3339,
)
from stickyguard.core.planner import PodState
from stickyguard.core.policy import Policy


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


def strays(core: client.CoreV1Api, policy: Policy, selected: Collection[str]) -> list[Any]:
    """Pods this policy drained that its selector no longer matches (an edited selector, a
    relabelled pod): nothing else would ever restore them. One list of the namespace, so the
    caller asks once per spec generation, and again while some are left."""
    return [
        p
        for p in core.list_namespaced_pod(policy.namespace).items
        if (p.metadata.annotations or {}).get(DRAINED_BY) == policy.name
        and p.metadata.name not in selected
    ]


def read_pod_meta(core: client.CoreV1Api, policy: Policy) -> dict[str, PodMeta]:
    zones = node_zones(core)
    return {p.metadata.name: pod_meta(p, zones) for p in selected_pods(core, policy)}


def pod_view(pod: Any) -> PodView:
    """What a drain method reads of a V1Pod."""
    conditions = {c.type: c.status for c in (pod.status.conditions or [])} if pod.status else {}
    return PodView(
        labels=dict(pod.metadata.labels or {}),
        conditions=conditions,
        readiness_gates=tuple(g.condition_type for g in pod.spec.readiness_gates or []),
    )


def pod_state(pod: Any, policy: Policy) -> PodState:
    """The planner's view of a V1Pod."""
    view = pod_view(pod)
    annotations = pod.metadata.annotations or {}
    drained_by = annotations.get(DRAINED_BY)
    # A drained pod is judged by the method it was drained with, whatever the policy says now.
    method = (
        recorded_method(annotations.get(DRAIN_METHOD), view)
        if drained_by
        else method_named(policy.actions.drain.method)
    )
    return PodState(
        name=pod.metadata.name,
        node=pod.spec.node_name or "",
        ready=view.conditions.get("Ready") == "True",
        serving=method.serving(view),
        has_gate=SERVING in view.readiness_gates,
        drained_by=drained_by,
        drained_at=parse_rfc3339(annotations.get(DRAINED_AT)),
        drain_reason=annotations.get(DRAIN_REASON, ""),
        undrain=UNDRAIN in annotations,
        deleting=pod.metadata.deletion_timestamp is not None,
        isolated_at=parse_rfc3339(annotations.get(ISOLATED_AT)),
        drain_method=method.name if drained_by else None,
        version=(pod.metadata.labels or {}).get(POD_TEMPLATE_HASH, ""),
        contained=annotations.get(CONTAINED) if drained_by else None,
    )


def cordoned_nodes(core: client.CoreV1Api, policy: Policy) -> frozenset[str]:
    """Nodes this policy cordoned and that are still unschedulable."""
    owner = f"{policy.namespace}/{policy.name}"
    return frozenset(
        n.metadata.name
        for n in core.list_node().items
        if (n.metadata.annotations or {}).get(CORDONED_BY) == owner and n.spec.unschedulable
    )
