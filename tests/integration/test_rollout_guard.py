"""The rollout guard, the gate endpoint and session-aware scale-down, against the real
Deployment and ReplicaSet controllers, a live Prometheus and the operator."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest
from kubernetes import client

from operator_support import Fleet, condition, create_policy, events, get_policy, policy_body
from stickyguard.core.names import (
    DRAINED_BY,
    HOLD_DONE,
    HOLD_REVISION,
    HOLD_STARTED,
    PAUSED_BY,
    PAUSED_REASON,
)
from stickyguard_lab.operatorproc import OperatorProcess
from support import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("crd_installed")]


def guard_policy(ns: str, on_fail: str = "Pause", **spec: Any) -> dict[str, Any]:
    body = policy_body(
        "web",
        ns,
        workloadRef={"kind": "Deployment", "name": "web"},
        actions={
            "mode": "Enforce",
            "deletionCost": False,
            "drain": {"method": "ReadinessGate", "evict": False},
            "rollout": {"onCanaryDegraded": on_fail},
        },
        **spec,
    )
    return body


def roll_out(apps: client.AppsV1Api, ns: str, version: str) -> None:
    """Releases `version`. The lab's pods are Ready within a second or two, so a rollout of six
    would complete before any guard has four evaluations of evidence (the least a `fail` rests
    on, 20 s at the lab's 5 s); `minReadySeconds` gives it the pace of real pods, which start,
    warm up and pass readiness checks for longer than that."""
    apps.patch_namespaced_deployment(
        "web",
        ns,
        {
            "spec": {
                "minReadySeconds": 8,
                "strategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
                },
                "template": {"metadata": {"labels": {"version": version}}},
            }
        },
    )


def deployment(apps: client.AppsV1Api, ns: str) -> Any:
    return apps.read_namespaced_deployment("web", ns)


def rollout_section(custom: client.CustomObjectsApi, ns: str) -> dict[str, Any]:
    return dict((get_policy(custom, ns, "web").get("status") or {}).get("rollout") or {})


def test_bad_new_version_is_paused_before_completion(
    operator: OperatorProcess,
    fleet: Fleet,
    custom: client.CustomObjectsApi,
    apps: client.AppsV1Api,
    core: client.CoreV1Api,
    namespace: str,
) -> None:
    create_policy(custom, guard_policy(namespace))
    old = fleet.wait_all_ready()
    fleet.exporter.set_label_ratio("version", "v2", 0.2)
    roll_out(apps, namespace, "v2")
    wait_for(
        lambda: deployment(apps, namespace).spec.paused,
        timeout=90,
        what=f"rollout paused\n{operator.log()}",
    )
    dep = deployment(apps, namespace)
    assert dep.metadata.annotations[PAUSED_BY] == "web"
    assert (dep.status.updated_replicas or 0) < 6, "paused before it completed"
    assert dep.metadata.annotations[PAUSED_REASON].startswith("new version")
    # Once the bad new pod is also drained the new cohort may have no traffic (inconclusive);
    # the rollout stays paused and reported so.
    # The pause is written before the status of the same cycle, so the status may lag a moment.
    c = wait_for(
        lambda: (
            (c := condition(get_policy(custom, namespace, "web"), "RolloutGuarded")) is not None
            and c["reason"] == "RolloutPaused"
            and c
        ),
        timeout=15,
        what="RolloutGuarded=False/RolloutPaused in the status",
    )
    assert c["status"] == "False"
    section = rollout_section(custom, namespace)
    assert section["verdict"] in ("fail", "inconclusive")
    wait_for(
        lambda: events(core, namespace, "RolloutPaused"), timeout=15, what="RolloutPaused event"
    )
    # Old pods are untouched: those still there serve, none was drained.
    left = [p for p in fleet.pods() if p.metadata.name in old]
    assert left and all(DRAINED_BY not in (p.metadata.annotations or {}) for p in left)


def test_rollback_returns_to_the_previous_template(
    operator: OperatorProcess,
    fleet: Fleet,
    custom: client.CustomObjectsApi,
    apps: client.AppsV1Api,
    namespace: str,
) -> None:
    create_policy(custom, guard_policy(namespace, on_fail="Rollback"))
    fleet.wait_all_ready()
    fleet.exporter.set_label_ratio("version", "v2", 0.2)
    roll_out(apps, namespace, "v2")

    def rolled_back() -> bool:
        d = deployment(apps, namespace)
        return (d.spec.template.metadata.labels or {}).get("version") != "v2"

    wait_for(
        rolled_back,
        timeout=90,
        what="template rolled back",
        detail=lambda: rollout_section(custom, namespace),
    )
    # ...and the rollout completes back to it: every pod is of the old template again.
    wait_for(
        lambda: (
            len(r := fleet.ready()) == 6
            and all((p.metadata.labels or {}).get("version") != "v2" for p in fleet.pods())
            and r
        ),
        timeout=120,
        what="rolled back completely",
    )
    assert not deployment(apps, namespace).spec.paused


def test_healthy_rollout_completes_untouched(
    operator: OperatorProcess,
    fleet: Fleet,
    custom: client.CustomObjectsApi,
    apps: client.AppsV1Api,
    namespace: str,
) -> None:
    create_policy(custom, guard_policy(namespace))
    fleet.wait_all_ready()
    roll_out(apps, namespace, "v2")
    wait_for(
        lambda: (
            len(fleet.ready()) == 6
            and all((p.metadata.labels or {}).get("version") == "v2" for p in fleet.pods())
        ),
        timeout=120,
        what=f"rollout completed\n{operator.log()}",
    )
    assert not deployment(apps, namespace).spec.paused
    wait_for(
        lambda: rollout_section(custom, namespace).get("verdict") in ("pass", "inconclusive"),
        timeout=30,
        what="a passing verdict",
    )


def test_fleet_wide_degradation_is_not_blamed_on_the_new_version(
    operator: OperatorProcess,
    lab: Any,
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
    custom: client.CustomObjectsApi,
    namespace: str,
) -> None:
    f = Fleet(lab, core, apps, namespace, default_ratio=0.05)
    try:
        create_policy(custom, guard_policy(namespace))
        f.wait_all_ready()
        roll_out(apps, namespace, "v2")
        wait_for(
            lambda: rollout_section(custom, namespace).get("verdict") == "fleet_wide",
            timeout=90,
            what=f"fleet_wide verdict\n{operator.log()}",
        )
        assert not deployment(apps, namespace).spec.paused
        wait_for(
            lambda: (
                all((p.metadata.labels or {}).get("version") == "v2" for p in f.pods())
                and len(f.ready()) == 6
            ),
            timeout=120,
            what="the rollout completes",
        )
    finally:
        f.close()


def _http(url: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(
        url,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def test_gate_endpoint_for_flagger_and_argo(
    operator: OperatorProcess,
    fleet: Fleet,
    custom: client.CustomObjectsApi,
    apps: client.AppsV1Api,
    namespace: str,
) -> None:
    base = f"http://127.0.0.1:{operator.gate_port}"
    create_policy(custom, guard_policy(namespace, on_fail="None"))
    fleet.wait_all_ready()
    flagger = {"name": "web", "namespace": namespace, "phase": "Progressing", "metadata": {}}
    wait_for(
        lambda: _http(f"{base}/gate/flagger", flagger)[0] == 200,
        timeout=60,
        what=f"gate passes\n{operator.log()}",
    )
    status, body = _http(f"{base}/gate/argo/{namespace}/web")
    assert status == 200 and body["pass"] is True and body["verdict"] in ("pass", "inconclusive")
    fleet.exporter.set_label_ratio("version", "v2", 0.3)
    roll_out(apps, namespace, "v2")
    wait_for(
        lambda: _http(f"{base}/gate/flagger", flagger)[0] == 412,
        timeout=90,
        what="gate halts the canary",
    )
    status, body = _http(f"{base}/gate/argo/{namespace}/web")
    assert status == 200 and body["verdict"] == "fail" and body["pass"] is False
    assert body["newCohort"]["badRatio"] > 0.1
    assert _http(f"{base}/gate/flagger", {**flagger, "name": "nope"})[0] == 404
    status, body = _http(f"{base}/gate/argo/{namespace}/nope")
    assert status == 404 and body["verdict"] == "unknown"


def test_scale_down_removes_the_pods_the_deletion_costs_say(
    operator: OperatorProcess,
    fleet: Fleet,
    custom: client.CustomObjectsApi,
    apps: client.AppsV1Api,
    namespace: str,
) -> None:
    body = policy_body(
        "web",
        namespace,
        actions={"mode": "Enforce", "deletionCost": True},
        prometheus={
            "window": "10s",
            "queries": {
                "activeSessions": "sum by ({pod_label}) (app_sessions_active{"
                'namespace="{namespace}",{selector}})'
            },
        },
    )
    create_policy(custom, body)
    pods = fleet.wait_all_ready()
    sessions = dict(zip(pods, [63, 1, 31, 3, 15, 7], strict=True))
    fleet.exporter.sessions.update(sessions)

    def costs() -> dict[str, str]:
        return {
            p.metadata.name: (p.metadata.annotations or {}).get(
                "controller.kubernetes.io/pod-deletion-cost", ""
            )
            for p in fleet.pods()
        }

    wait_for(
        lambda: len(set(costs().values()) - {""}) == 6,
        timeout=60,
        what=f"six distinct deletion costs\n{operator.log()}",
    )
    fewest = sorted(pods, key=lambda p: sessions[p])[:3]
    apps.patch_namespaced_deployment_scale("web", namespace, {"spec": {"replicas": 3}})
    wait_for(lambda: len(fleet.pods()) == 3, timeout=60, what="scaled down")
    assert not {p.metadata.name for p in fleet.pods()} & set(fewest), (
        "the real ReplicaSet controller deleted the pods with the fewest sessions"
    )


def test_hold_pauses_then_resumes_a_healthy_rollout(
    operator: OperatorProcess,
    fleet: Fleet,
    custom: client.CustomObjectsApi,
    apps: client.AppsV1Api,
    core: client.CoreV1Api,
    namespace: str,
) -> None:
    body = guard_policy(namespace)
    body["spec"]["actions"]["rollout"]["holdSeconds"] = 20
    create_policy(custom, body)
    fleet.wait_all_ready()
    roll_out(apps, namespace, "v2")

    def held() -> Any:
        d = deployment(apps, namespace)
        return d.spec.paused and HOLD_STARTED in (d.metadata.annotations or {}) and d

    dep = wait_for(held, timeout=60, what=f"rollout held\n{operator.log()}")
    assert (dep.status.updated_replicas or 0) < 6
    wait_for(lambda: events(core, namespace, "RolloutHeld"), timeout=15, what="RolloutHeld event")
    wait_for(
        lambda: not deployment(apps, namespace).spec.paused,
        timeout=60,
        what="resumed after the hold",
        detail=lambda: rollout_section(custom, namespace),
    )
    assert (
        deployment(apps, namespace).metadata.annotations[HOLD_DONE]
        == dep.metadata.annotations[HOLD_REVISION]
    )
    wait_for(
        lambda: (
            len(fleet.ready()) == 6
            and all((p.metadata.labels or {}).get("version") == "v2" for p in fleet.pods())
        ),
        timeout=120,
        what="the rollout completes",
    )
