"""The guarded Deployment (the imperative shell of the rollout guard): reads its ReplicaSets
and applies the guard's decisions (pause, hold, resume, rollback) with annotations saying why."""

from __future__ import annotations

import copy
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from stickyguard.policy import Policy
from stickyguard.rollout import HOLD, PAUSE, RESUME, ROLLBACK, Workload
from stickyguard.status import parse_rfc3339, rfc3339

REVISION = "deployment.kubernetes.io/revision"
PAUSED_BY = "stickyguard.dev/paused-by"
PAUSED_REASON = "stickyguard.dev/paused-reason"
HOLD_REVISION = "stickyguard.dev/hold-revision"
HOLD_STARTED = "stickyguard.dev/hold-started"
HOLD_DONE = "stickyguard.dev/hold-done-revision"


def _owned_replicasets(apps: client.AppsV1Api, dep: Any) -> list[Any]:
    rsets = apps.list_namespaced_replica_set(dep.metadata.namespace).items
    return sorted(
        (
            rs
            for rs in rsets
            if any(o.uid == dep.metadata.uid for o in rs.metadata.owner_references or [])
        ),
        key=lambda rs: int((rs.metadata.annotations or {}).get(REVISION, "0")),
    )


def read_workload(apps: client.AppsV1Api, policy: Policy) -> tuple[Workload, list[Any]] | None:
    """The guarded Deployment and its ReplicaSets (oldest first), or None if it is missing."""
    ref = policy.workload_ref
    if ref is None:
        return None
    try:
        dep = apps.read_namespaced_deployment(ref.name, policy.namespace)
    except ApiException as e:
        if e.status == 404:
            return None
        raise
    rsets = _owned_replicasets(apps, dep)
    if not rsets:
        return None
    newest = rsets[-1]
    ann = dep.metadata.annotations or {}
    revision = (newest.metadata.annotations or {}).get(REVISION, "0")
    held = ann.get(HOLD_REVISION) == revision
    return Workload(
        name=ref.name,
        paused=bool(dep.spec.paused),
        new_hash=(newest.metadata.labels or {}).get("pod-template-hash", ""),
        revision=revision,
        rolling=any((rs.status.replicas or 0) > 0 for rs in rsets[:-1]),
        new_ready=newest.status.ready_replicas or 0,
        hold_started=parse_rfc3339(ann.get(HOLD_STARTED)) if held else None,
        hold_done=ann.get(HOLD_DONE) == revision,
        paused_by_us=ann.get(PAUSED_BY) == policy.name,
    ), rsets


def apply_guard(
    apps: client.AppsV1Api,
    policy: Policy,
    w: Workload,
    rsets: list[Any],
    action: str,
    reason: str,
    now: float,
) -> None:
    ann: dict[str, Any] = {}
    spec: dict[str, Any] = {}
    if action in (PAUSE, HOLD):
        spec["paused"] = True
        ann.update({PAUSED_BY: policy.name, PAUSED_REASON: reason[:500]})
        if action == HOLD:
            ann.update({HOLD_REVISION: w.revision, HOLD_STARTED: rfc3339(now)})
    elif action == RESUME:
        spec["paused"] = False
        ann.update({PAUSED_BY: None, PAUSED_REASON: None, HOLD_DONE: w.revision})
    elif action == ROLLBACK:
        previous = next((rs for rs in reversed(rsets[:-1])), None)
        if previous is None:
            raise ValueError("no previous ReplicaSet to roll back to")
        # As `kubectl rollout undo`: the previous ReplicaSet's template, without the hash label.
        template = copy.deepcopy(apps.api_client.sanitize_for_serialization(previous.spec.template))
        template.get("metadata", {}).get("labels", {}).pop("pod-template-hash", None)
        # A JSON patch replaces the template whole; a merge patch would keep labels the new
        # template added (and so never return to the old one).
        apps.patch_namespaced_deployment(
            w.name,
            policy.namespace,
            [
                {"op": "replace", "path": "/spec/template", "value": template},
                {"op": "replace", "path": "/spec/paused", "value": False},
            ],
        )
        ann.update(
            {
                PAUSED_BY: None,
                PAUSED_REASON: None,
                "stickyguard.dev/rolled-back": f"revision {w.revision}: {reason}"[:500],
            }
        )
    else:
        raise ValueError(f"unknown guard action {action}")
    apps.patch_namespaced_deployment(
        w.name, policy.namespace, {"metadata": {"annotations": ann}, "spec": spec}
    )
