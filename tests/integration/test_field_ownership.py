"""Every write stickyguard makes to objects it does not own is a server-side apply as field
manager `stickyguard` on its own fields: another manager applying the same objects again (as a
reconciler does) meets no conflict and undoes nothing. Here on a Deployment that is not
GitOps-managed, so the guard pauses it (spec.paused is stickyguard's then), with a pod drained
by the ReadinessGate method; the other manager re-applies the Deployment, the Service and the
pods' metadata, without --force-conflicts."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client

from operator_support import Fleet, create_policy, get_policy, policy_body
from stickyguard.core.names import DRAINED_BY, GROUP, PAUSED_BY, SERVING
from stickyguard_lab import testenv
from stickyguard_lab.kubectl import kubectl
from stickyguard_lab.operatorproc import OperatorProcess
from support import service, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("crd_installed")]
OTHER = "flux"  # another field manager, not one core/gitops.py takes for a GitOps tool


def reapply(lab: testenv.LabEnv, objects: list[dict[str, Any]], ns: str) -> str:
    """Server-side apply as OTHER, without force; returns stderr ("" when it went through)."""
    body = json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
    proc = kubectl(
        lab.binaries.kubectl,
        lab.kubeconfig,
        "apply",
        "--server-side",
        f"--field-manager={OTHER}",
        "-n",
        ns,
        "-f",
        "-",
        stdin=body,
        check=False,
    )
    return proc.stderr if proc.returncode else ""


def ours(obj: Any, subresource: str = "") -> dict[str, Any]:
    for m in obj.metadata.managed_fields or []:
        if m.manager == "stickyguard" and (m.subresource or "") == subresource:
            assert m.operation == "Apply", m
            return dict(m.fields_v1)
    return {}


def test_another_manager_reapplying_meets_no_conflict_and_undoes_nothing(
    lab: testenv.LabEnv,
    operator: OperatorProcess,
    fleet: Fleet,
    custom: client.CustomObjectsApi,
    apps: client.AppsV1Api,
    core: client.CoreV1Api,
    namespace: str,
) -> None:
    create_policy(
        custom,
        policy_body(
            "web",
            namespace,
            workloadRef={"kind": "Deployment", "name": "web"},
            actions={
                "mode": "Enforce",
                "deletionCost": False,
                "drain": {"method": "ReadinessGate", "evict": False},
                "rollout": {"onCanaryDegraded": "Pause"},
            },
            safety={"maxDrainedPercent": 50, "cooldownSeconds": 0},
        ),
    )
    fleet.wait_all_ready()
    fleet.exporter.set_label_ratio("version", "v2", 0.3)
    apps.patch_namespaced_deployment(
        "web",
        namespace,
        {
            "spec": {
                # The pace of real pods: a `fail` rests on four evaluations of evidence, and
                # the lab's pods are Ready at once (test_rollout_guard.roll_out).
                "minReadySeconds": 8,
                "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                "template": {"metadata": {"labels": {"version": "v2"}}},
            }
        },
    )
    wait_for(
        lambda: apps.read_namespaced_deployment("web", namespace).spec.paused,
        timeout=90,
        what="paused",
        detail=operator.log,
    )
    # An old pod turns bad while the rollout is paused (so the rollout does not remove it);
    # v2 recovers, so the degradation is concentrated on that pod (the pause is latched).
    fleet.exporter.set_label_ratio("version", "v2", 0.001)
    old = [
        p.metadata.name
        for p in fleet.pods()
        if (p.metadata.labels or {}).get("version") != "v2" and p.metadata.name in fleet.ready()
    ]
    bad = old[0]
    fleet.exporter.set_ratio(bad, 0.3)
    wait_for(
        lambda: bad not in fleet.ready(),
        timeout=60,
        what="drained",
        detail=lambda: json.dumps(get_policy(custom, namespace, "web").get("status"), indent=1),
    )

    # The other manager applies what it has for each object again.
    dep = apps.read_namespaced_deployment("web", namespace)
    desired_dep = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app.kubernetes.io/part-of": "shop"}},
        "spec": {
            "replicas": 6,
            "selector": {"matchLabels": {"app": "web"}},
            "template": apps.api_client.sanitize_for_serialization(dep.spec.template),
        },
    }
    pod_meta = [
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": p.metadata.name, "labels": dict(p.metadata.labels)},
        }
        for p in fleet.pods()
    ]
    errors = [
        e
        for e in (
            reapply(lab, [desired_dep], namespace),
            reapply(lab, [service("web", {"app": "web"})], namespace),
            reapply(lab, pod_meta, namespace),
        )
        if e
    ]
    assert errors == [], "conflicts with stickyguard's fields"

    # Nothing stickyguard did is undone: the drain holds, the pause holds.
    drained = core.read_namespaced_pod(bad, namespace)
    assert drained.metadata.annotations[DRAINED_BY] == "web"
    gate = {c.type: c.status for c in drained.status.conditions}
    assert (gate[SERVING], gate["Ready"]) == ("False", "False")
    dep = apps.read_namespaced_deployment("web", namespace)
    assert dep.spec.paused and dep.metadata.annotations[PAUSED_BY] == "web"
    assert bad not in fleet.ready()

    # Who owns what: stickyguard its own fields only, by apply.
    meta = ours(drained)["f:metadata"]
    assert set(meta) == {"f:annotations"}
    assert all(k.startswith(f"f:{GROUP}/") for k in meta["f:annotations"]), meta
    assert list(ours(drained, "status")["f:status"]["f:conditions"]) == [
        f'k:{{"type":"{SERVING}"}}'
    ]
    on_dep = ours(dep)
    assert set(on_dep) == {"f:metadata", "f:spec"}
    assert set(on_dep["f:spec"]) == {"f:paused"}
    assert all(k.startswith(f"f:{GROUP}/") for k in on_dep["f:metadata"]["f:annotations"])
    assert any(m.manager == OTHER for m in dep.metadata.managed_fields)
