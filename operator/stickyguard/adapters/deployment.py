"""The guarded Deployment (the imperative shell of the rollout guard): reads its ReplicaSets
and its GitOps management, and applies the guard's decisions (pause, hold, resume, rollback)
with annotations saying why, by server-side apply as field manager `stickyguard`
(adapters/ssa.py). A pause or hold is forced (the policy asks for it, and core.containment
refuses it on a GitOps-managed Deployment unless `allowSpecChanges`); a resume removes
`spec.paused` (taken over first if another manager set it too, see adapters/ssa.py). A
rollback replaces `spec.template` whole, fields of other managers included, which an apply
cannot express: it is a JSON patch (as `kubectl rollout undo` does), still as `stickyguard`."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from stickyguard.adapters import ssa
from stickyguard.core.gitops import management
from stickyguard.core.names import (
    HOLD_DONE,
    HOLD_REVISION,
    HOLD_STARTED,
    PAUSED_BY,
    PAUSED_REASON,
    PAUSED_REVISION,
    POD_TEMPLATE_HASH,
    ROLLED_BACK,
    parse_rfc3339,
    rfc3339,
)
from stickyguard.core.policy import Policy
from stickyguard.core.rollout import HOLD, PAUSE, RESUME, ROLLBACK, Revision, Workload

REVISION = "deployment.kubernetes.io/revision"


def owned_replicasets(
    apps: client.AppsV1Api, namespace: str, owner_uid: str, revision_annotation: str = REVISION
) -> list[Any]:
    """The ReplicaSets an owner (Deployment, Rollout) controls, oldest revision first."""
    rsets = apps.list_namespaced_replica_set(namespace).items
    return sorted(
        (rs for rs in rsets if any(o.uid == owner_uid for o in rs.metadata.owner_references or [])),
        key=lambda rs: int((rs.metadata.annotations or {}).get(revision_annotation, "0")),
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
    rsets = owned_replicasets(apps, dep.metadata.namespace, dep.metadata.uid)
    if not rsets:
        return None
    newest = rsets[-1]
    ann = dep.metadata.annotations or {}
    revision = (newest.metadata.annotations or {}).get(REVISION, "0")
    held = ann.get(HOLD_REVISION) == revision
    desired = dep.spec.replicas if dep.spec.replicas is not None else 1
    older_pods = any((rs.status.replicas or 0) > 0 for rs in rsets[:-1])
    complete = (
        not older_pods
        and (dep.status.observed_generation or 0) >= (dep.metadata.generation or 0)
        and (newest.status.available_replicas or 0) >= desired
        and (dep.status.updated_replicas or 0) >= desired
    )
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
        revisions=tuple(_revision(rs) for rs in rsets),
        complete=complete,
        paused_revision=ann.get(PAUSED_REVISION, ""),
        management=management(
            dep.metadata.labels or {},
            ann,
            [m.manager for m in dep.metadata.managed_fields or [] if m.manager],
        ),
    ), rsets


def _revision(rs: Any) -> Revision:
    return Revision(
        hash=(rs.metadata.labels or {}).get(POD_TEMPLATE_HASH, ""),
        revision=int((rs.metadata.annotations or {}).get(REVISION, "0")),
        replicas=rs.spec.replicas or 0,
        available=rs.status.available_replicas or 0,
        images=tuple(c.image or "" for c in rs.spec.template.spec.containers or []),
    )


def apply_guard(
    apps: client.AppsV1Api,
    policy: Policy,
    w: Workload,
    rsets: list[Any],
    action: str,
    reason: str,
    now: float,
    target: Revision | None = None,
    fence: Callable[[], None] = lambda: None,
) -> None:
    """Applies one guard action. `target` is the ReplicaSet a rollback returns to (chosen by
    core.rollout.rollback_target); `fence` is called right before each write."""
    ann: dict[str, Any] = {}
    spec: dict[str, Any] = {}
    force = False
    if action in (PAUSE, HOLD):
        spec["paused"] = True
        force = True
        ann.update(
            {PAUSED_BY: policy.name, PAUSED_REASON: reason[:500], PAUSED_REVISION: w.revision}
        )
        if action == HOLD:
            ann.update({HOLD_REVISION: w.revision, HOLD_STARTED: rfc3339(now)})
    elif action == RESUME:
        spec["paused"] = None
        ann.update(
            {PAUSED_BY: None, PAUSED_REASON: None, PAUSED_REVISION: None, HOLD_DONE: w.revision}
        )
    elif action == ROLLBACK:
        previous = next(
            (
                rs
                for rs in rsets
                if target is not None
                and (rs.metadata.labels or {}).get(POD_TEMPLATE_HASH) == target.hash
            ),
            None,
        )
        if previous is None:
            raise ValueError("no known-good ReplicaSet to roll back to")
        # As `kubectl rollout undo`: the previous ReplicaSet's template, without the hash label.
        template = copy.deepcopy(apps.api_client.sanitize_for_serialization(previous.spec.template))
        template.get("metadata", {}).get("labels", {}).pop("pod-template-hash", None)
        # A JSON patch replaces the template whole; a merge patch would keep labels the new
        # template added (and so never return to the old one).
        fence()
        apps.patch_namespaced_deployment(
            w.name,
            policy.namespace,
            [
                {"op": "replace", "path": "/spec/template", "value": template},
                {"op": "replace", "path": "/spec/paused", "value": False},
            ],
            field_manager=ssa.MANAGER,
        )
        spec["paused"] = None
        ann.update(
            {
                PAUSED_BY: None,
                PAUSED_REASON: None,
                PAUSED_REVISION: None,
                ROLLED_BACK: f"revision {w.revision}: {reason}"[:500],
            }
        )
    else:
        raise ValueError(f"unknown guard action {action}")

    def patch(body: dict[str, Any], forced: bool) -> Any:
        fence()
        return apps.patch_namespaced_deployment(
            w.name,
            policy.namespace,
            body,
            field_manager=ssa.MANAGER,
            force=forced,
            _content_type=ssa.APPLY,
        )

    current = apps.api_client.sanitize_for_serialization(
        apps.read_namespaced_deployment(w.name, policy.namespace)
    )
    ssa.apply_changes(current, {"metadata": {"annotations": ann}, "spec": spec}, patch, force=force)
