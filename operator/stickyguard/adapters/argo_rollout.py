"""A guarded Argo Rollouts `Rollout` (argoproj.io/v1alpha1), read into the rollout guard's
`Workload` (the imperative shell; the mapping itself is `workload_from_rollout`, on plain
dicts).

A Rollout owns its ReplicaSets like a Deployment does, but labels them and their pods with
`rollouts-pod-template-hash` (not `pod-template-hash`) and numbers them with the
`rollout.argoproj.io/revision` annotation. The new version is `status.currentPodHash` (the
canary while a rollout is in progress), the old one every other selected pod (the stable
ReplicaSet, `status.stableRS`). stickyguard only judges a Rollout: Argo pauses or aborts it on
the gate's verdict (core.rollout.decide never acts on one).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from stickyguard.adapters.deployment import owned_replicasets
from stickyguard.core.names import ROLLOUTS_POD_TEMPLATE_HASH
from stickyguard.core.policy import Policy
from stickyguard.core.rollout import Revision, Workload

GROUP, VERSION, PLURAL = "argoproj.io", "v1alpha1", "rollouts"
REVISION = "rollout.argoproj.io/revision"


def _hash(rs: Mapping[str, Any]) -> str:
    return str(((rs.get("metadata") or {}).get("labels") or {}).get(ROLLOUTS_POD_TEMPLATE_HASH, ""))


def _revision(rs: Mapping[str, Any]) -> Revision:
    status = rs.get("status") or {}
    return Revision(
        hash=_hash(rs),
        revision=int(((rs.get("metadata") or {}).get("annotations") or {}).get(REVISION, "0")),
        replicas=int((rs.get("spec") or {}).get("replicas") or 0),
        available=int(status.get("availableReplicas") or 0),
    )


def workload_from_rollout(
    rollout: Mapping[str, Any], rsets: Sequence[Mapping[str, Any]]
) -> Workload | None:
    """The Workload of a Rollout and its ReplicaSets (oldest revision first, as dicts); None
    before Argo created any ReplicaSet."""
    if not rsets:
        return None
    spec, status = rollout.get("spec") or {}, rollout.get("status") or {}
    current = str(status.get("currentPodHash") or _hash(rsets[-1]))
    new = next((rs for rs in rsets if _hash(rs) == current), rsets[-1])
    others_serving = any(
        int((rs.get("status") or {}).get("replicas") or 0) > 0 for rs in rsets if rs is not new
    )
    desired = spec.get("replicas")
    desired = 1 if desired is None else int(desired)
    new_status = new.get("status") or {}
    return Workload(
        name=str((rollout.get("metadata") or {}).get("name") or ""),
        paused=bool(spec.get("paused")) or bool(status.get("pauseConditions")),
        new_hash=current,
        revision=str(((new.get("metadata") or {}).get("annotations") or {}).get(REVISION, "0")),
        rolling=others_serving,
        new_ready=int(new_status.get("readyReplicas") or 0),
        revisions=tuple(_revision(rs) for rs in rsets),
        complete=(
            status.get("stableRS") == current
            and not others_serving
            and int(new_status.get("availableReplicas") or 0) >= desired
        ),
        kind="Rollout",
        hash_label=ROLLOUTS_POD_TEMPLATE_HASH,
    )


def read_rollout(
    custom: client.CustomObjectsApi, apps: client.AppsV1Api, policy: Policy
) -> tuple[Workload, list[Any]] | None:
    """The guarded Rollout and its ReplicaSets (oldest first), or None if it is missing (or
    Argo Rollouts is not installed)."""
    ref = policy.workload_ref
    if ref is None:
        return None
    try:
        rollout = custom.get_namespaced_custom_object(
            GROUP, VERSION, policy.namespace, PLURAL, ref.name
        )
    except ApiException as e:
        if e.status == 404:
            return None
        raise
    uid = rollout["metadata"]["uid"]
    rsets = owned_replicasets(apps, policy.namespace, uid, REVISION)
    plain = [apps.api_client.sanitize_for_serialization(rs) for rs in rsets]
    w = workload_from_rollout(rollout, plain)
    return None if w is None else (w, rsets)
