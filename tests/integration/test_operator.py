"""The operator end to end: real control plane, real Prometheus scraping a synthetic exporter,
the operator running as its shipped ServiceAccount."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from operator_support import (
    GVR,
    Fleet,
    Story,
    condition,
    cordon_policy,
    create_policy,
    events,
    get_policy,
    policy_body,
    two_pods_on_one_node,
)
from stickyguard.core.names import (
    CORDONED_BY,
    DRAINED_AT,
    DRAINED_BY,
    ISOLATED_AT,
    SERVING,
    UNDRAIN,
)
from stickyguard_lab import testenv
from stickyguard_lab.exporter import SyntheticExporter
from stickyguard_lab.operatorproc import (
    OperatorProcess,
)
from stickyguard_lab.procs import Supervisor
from stickyguard_lab.prom import start_prometheus
from support import gated_deployment, service, wait_for, wait_record_cleared

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("crd_installed")]


def gate(pod: Any) -> str | None:
    return next((c.status for c in pod.status.conditions or [] if c.type == SERVING), None)


def test_bad_pod_is_drained_then_evicted_and_replaced(
    story: Story,
    operator: OperatorProcess,
    fleet: Fleet,
    custom: client.CustomObjectsApi,
    api_client: client.ApiClient,
    namespace: str,
) -> None:
    story.given_policy()
    pods = story.given_pods_serving()  # the operator marks gated pods serving
    bad = pods[0]
    story.when_pod_turns_bad(bad)
    discovery = client.DiscoveryV1Api(api_client)

    def endpoint_ready(pod: str) -> bool | None:
        for s in discovery.list_namespaced_endpoint_slice(namespace).items:
            for ep in s.endpoints or []:
                if ep.target_ref and ep.target_ref.name == pod:
                    return bool(ep.conditions.ready)
        return None

    wait_for(
        lambda: endpoint_ready(bad) is False, timeout=60, what=f"{bad} drained\n{operator.log()}"
    )
    # The status is patched when the cycle that drained ends: wait for it.
    obj = wait_for(
        lambda: (
            (o := get_policy(custom, namespace, "web"))
            and [d["pod"] for d in (o.get("status") or {}).get("drained") or []] == [bad]
            and o
        ),
        timeout=15,
        what="drained in status",
        detail=operator.log,
    )
    assert [d["pod"] for d in obj["status"]["drained"]] == [bad]
    assert " bad vs " in obj["status"]["drained"][0]["reason"]
    assert condition(obj, "Concentrated")["status"] == "True"  # type: ignore[index]
    story.then_event("Drained")
    # Only the bad pod was touched.
    assert sorted(fleet.ready()) == sorted(p for p in pods if p != bad)

    story.then_gone(bad)
    after = fleet.wait_all_ready()
    assert bad not in after
    assert len(story.then_event("Evicted")) == 1


def test_dry_run_changes_nothing_and_reports_the_plan(
    story: Story, fleet: Fleet, core: client.CoreV1Api, namespace: str
) -> None:
    story.given_policy(actions={"mode": "DryRun"})
    pods = story.given_pods_serving()
    story.when_pod_turns_bad(pods[0])

    def would() -> list[dict[str, Any]]:
        st = story.policy().get("status") or {}
        return [d for d in st.get("drained") or [] if d["phase"] == "WouldDrain"]

    planned = wait_for(would, timeout=60, what="WouldDrain in status", detail=story.operator.log)
    assert [d["pod"] for d in planned] == [pods[0]]
    story.then_event("WouldDrain")
    # Nothing changed: every pod still serves, none carries a drain record.
    assert fleet.ready() == pods
    for p in fleet.pods():
        assert gate(p) == "True"
        assert DRAINED_BY not in (p.metadata.annotations or {})
    assert not events(core, namespace, "Drained")


def test_prometheus_unreachable_fails_static_and_recovers(
    operator: OperatorProcess,
    fleet: Fleet,
    custom: client.CustomObjectsApi,
    lab: testenv.LabEnv,
    namespace: str,
    tmp_path: Path,
) -> None:
    sup = Supervisor(tmp_path)
    own = start_prometheus(sup, lab.binaries, tmp_path / "prom")
    fleet.exporter.register(own.targets_dir, namespace)
    try:
        create_policy(custom, policy_body("web", namespace, prometheus={"url": own.url}))
        pods = fleet.wait_all_ready()
        wait_for(
            lambda: (
                (condition(get_policy(custom, namespace, "web"), "MetricsAvailable") or {}).get(
                    "status"
                )
                == "True"
            ),
            timeout=60,
            what="metrics available",
        )
        port = int(own.url.rsplit(":", 1)[1])
        sup.stop(own.child)
        fleet.exporter.set_ratio(pods[0], 0.3)  # a real fault while blind: must not act
        c = wait_for(
            lambda: (
                (m := condition(get_policy(custom, namespace, "web"), "MetricsAvailable"))
                and m["status"] == "False"
                and m
            ),
            timeout=30,
            what="MetricsAvailable=False",
        )
        assert c["reason"] == "MetricsUnavailable"
        assert "unreachable" in c["message"]
        assert all(gate(p) == "True" for p in fleet.pods()), "nothing drained while blind"
        start_prometheus(sup, lab.binaries, tmp_path / "prom", port=port)
        wait_for(
            lambda: (
                (condition(get_policy(custom, namespace, "web"), "MetricsAvailable") or {}).get(
                    "status"
                )
                == "True"
            ),
            timeout=60,
            what="recovered",
        )
    finally:
        sup.stop_all()


def test_budget_allows_exactly_one_of_four_bad_pods(story: Story, fleet: Fleet) -> None:
    story.given_policy(
        detection={"relativeThreshold": 1.5, "fleetWideFraction": 0.9},
        actions={"drain": {"method": "ReadinessGate", "evict": False}},
    )
    pods = story.given_pods_serving()
    for p in pods[:4]:
        story.when_pod_turns_bad(p)

    def status() -> dict[str, Any]:
        return story.policy().get("status") or {}

    wait_for(
        lambda: len(status().get("drained") or []) == 1 and status().get("blocked"),
        timeout=60,
        what="one drained, the rest blocked",
        detail=story.operator.log,
    )
    time.sleep(12)  # two more cycles change nothing
    st = status()
    assert st["pods"]["drained"] == 1
    assert any("maxDrainedPercent 25 allows 1 of 6" in b for b in st["blocked"])
    assert len([p for p in fleet.pods() if gate(p) == "False"]) == 1
    story.then_event("BudgetBlocked")


def test_fleet_wide_degradation_drains_nothing(
    operator: OperatorProcess,
    lab: testenv.LabEnv,
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
    custom: client.CustomObjectsApi,
    namespace: str,
) -> None:
    f = Fleet(lab, core, apps, namespace, default_ratio=0.05)
    try:
        create_policy(custom, policy_body("web", namespace))
        f.wait_all_ready()
        wait_for(
            lambda: (
                (get_policy(custom, namespace, "web").get("status") or {}).get("classification")
                == "fleet_wide"
            ),
            timeout=60,
            what=f"fleet_wide\n{operator.log()}",
        )
        st = get_policy(custom, namespace, "web")["status"]
        assert st["drained"] == [] and st["pods"]["drained"] == 0
        assert len(f.ready()) == 6
    finally:
        f.close()


def test_pdb_blocks_eviction_without_an_error_storm(
    story: Story,
    fleet: Fleet,
    core: client.CoreV1Api,
    api_client: client.ApiClient,
    namespace: str,
) -> None:
    policy_api = client.PolicyV1Api(api_client)
    policy_api.create_namespaced_pod_disruption_budget(
        namespace,
        {
            "metadata": {"name": "web"},
            "spec": {"minAvailable": 6, "selector": {"matchLabels": {"app": "web"}}},
        },
    )
    story.given_policy()
    pods = story.given_pods_serving()
    bad = pods[0]
    story.when_pod_turns_bad(bad)

    def blocked() -> list[str]:
        st = story.policy().get("status") or {}
        return [b for b in st.get("blocked") or [] if "PodDisruptionBudget" in b]

    wait_for(blocked, timeout=90, what="eviction refused by the PDB", detail=story.operator.log)
    time.sleep(12)  # two more cycles: still refused, still one event
    assert bad in {p.metadata.name for p in fleet.pods()}
    refused = [e for e in events(core, namespace) if "PodDisruptionBudget" in (e.message or "")]
    assert len(refused) <= 1, "one event for the refusal, not one per cycle"
    policy_api.patch_namespaced_pod_disruption_budget(
        "web", namespace, {"spec": {"minAvailable": 5}}
    )
    story.then_gone(bad)  # evicted once the PDB allows


def test_policy_deleted_restores_drained_pod(
    story: Story, fleet: Fleet, custom: client.CustomObjectsApi, namespace: str
) -> None:
    story.given_policy(actions={"drain": {"method": "ReadinessGate", "evict": False}})
    pods = story.given_pods_serving()
    story.when_pod_turns_bad(pods[0])
    story.then_drained(pods[0])
    custom.delete_namespaced_custom_object(GVR[0], GVR[1], namespace, GVR[2], "web")
    story.then_serving(pods[0])  # restored
    # The gate turns True before the drain record is cleared (the restore's last write).
    wait_for(
        lambda: all(
            DRAINED_BY not in (p.metadata.annotations or {})
            for p in fleet.pods()
            if p.metadata.name == pods[0]
        ),
        timeout=15,
        what="drain record cleared",
        detail=story.operator.log,
    )

    def gone() -> bool:
        try:
            get_policy(custom, namespace, "web")
        except ApiException as e:
            return e.status == 404
        return False

    # kopf releases the finalizer just after the handler returns, so shortly after the restore.
    wait_for(gone, timeout=30, what="the finalizer released and the policy gone")


def test_a_drained_pod_the_edited_selector_leaves_out_is_put_back(
    story: Story,
    fleet: Fleet,
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
    namespace: str,
) -> None:
    # A drained pod outside the selection would be out of the policy's budgets and restore
    # rules for good: the edit of the spec makes the operator look for it and put it back.
    story.given_policy(actions={"drain": {"method": "ReadinessGate", "evict": False}})
    pods = story.given_pods_serving()
    story.when_pod_turns_bad(pods[0])
    story.then_drained(pods[0])
    core.patch_namespaced_pod(pods[0], namespace, {"metadata": {"labels": {"lane": "b"}}})
    custom.patch_namespaced_custom_object(
        GVR[0],
        GVR[1],
        namespace,
        GVR[2],
        "web",
        {
            "spec": {
                "selector": {
                    "matchLabels": {"app": "web"},
                    "matchExpressions": [{"key": "lane", "operator": "NotIn", "values": ["b"]}],
                }
            }
        },
    )
    story.then_serving(pods[0])
    wait_record_cleared(core, namespace, pods[0], story.operator.log)


def test_operator_killed_between_drain_and_evict_carries_on(
    story: Story,
    operator: OperatorProcess,
    fleet: Fleet,
    core: client.CoreV1Api,
    namespace: str,
) -> None:
    story.given_policy(
        actions={"drain": {"method": "ReadinessGate", "evict": True, "drainTimeoutSeconds": 15}}
    )
    pods = story.given_pods_serving()
    bad = pods[0]
    story.when_pod_turns_bad(bad)
    story.then_drained(bad)
    operator.kill()  # Events still queued in the killed process are lost: they are best effort
    drained_at = core.read_namespaced_pod(bad, namespace).metadata.annotations[DRAINED_AT]
    operator.start()
    time.sleep(6)  # a cycle of the restarted operator before the drain timeout ends
    try:
        pod = core.read_namespaced_pod(bad, namespace)
    except ApiException as e:
        # A slow restart can outlast the drain timeout: evicted already, which the Event
        # counts below judge.
        assert e.status == 404, e
    else:
        assert pod.metadata.annotations[DRAINED_AT] == drained_at, (
            "the restarted operator recognised the drain instead of draining again"
        )
    story.then_gone(bad)  # evicted after the restart
    fleet.wait_all_ready()
    assert len(story.then_event("Evicted")) == 1, "evicted once"
    assert len(events(core, namespace, "Drained")) <= 1, "no second drain after the restart"
    for p in fleet.pods():
        assert gate(p) == "True"


def test_service_account_cannot_step_outside_its_role(sa_kubeconfig: Path) -> None:
    sa = client.CoreV1Api(config.new_client_from_config(config_file=str(sa_kubeconfig)))
    sa.list_namespaced_pod("default")  # inside its role
    with pytest.raises(ApiException) as info:
        sa.list_namespaced_secret("default")
    assert info.value.status == 403
    with pytest.raises(ApiException) as info:
        sa.delete_namespaced_pod("anything", "default")
    assert info.value.status == 403


def test_webhook_injects_the_gate_into_selected_pods_only(
    operator: OperatorProcess,
    lab: testenv.LabEnv,
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
    custom: client.CustomObjectsApi,
    namespace: str,
) -> None:
    create_policy(custom, policy_body("web", namespace))
    plain = gated_deployment("web", 2)
    del plain["spec"]["template"]["spec"]["readinessGates"]
    other = gated_deployment("other", 1)
    del other["spec"]["template"]["spec"]["readinessGates"]

    # Once the policy has a status, the operator has seen it (and indexed it).
    wait_for(
        lambda: get_policy(custom, namespace, "web").get("status"),
        timeout=30,
        what="policy seen by the operator",
    )
    apps.create_namespaced_deployment(namespace, plain)
    apps.create_namespaced_deployment(namespace, other)

    def gates(app: str) -> list[list[str]]:
        return [
            [g.condition_type for g in p.spec.readiness_gates or []]
            for p in core.list_namespaced_pod(namespace, label_selector=f"app={app}").items
        ]

    wait_for(lambda: len(gates("web")) == 2 and len(gates("other")) == 1, what="pods created")
    assert gates("web") == [[SERVING], [SERVING]], operator.log()
    assert gates("other") == [[]]
    # ...and the operator marks the injected gates serving, so the pods become Ready.
    wait_for(
        lambda: all(
            any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
            for p in core.list_namespaced_pod(namespace, label_selector="app=web").items
        ),
        timeout=30,
        what="gated pods Ready",
    )


def test_service_label_drain_takes_the_pod_out_of_the_slice(
    operator: OperatorProcess,
    lab: testenv.LabEnv,
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
    custom: client.CustomObjectsApi,
    api_client: client.ApiClient,
    namespace: str,
) -> None:
    dep = gated_deployment("web", 6)
    tmpl = dep["spec"]["template"]
    del tmpl["spec"]["readinessGates"]
    tmpl["metadata"]["labels"][SERVING] = "true"  # in the template, not in the selector
    apps.create_namespaced_deployment(namespace, dep)
    core.create_namespaced_service(namespace, service("web", {"app": "web", SERVING: "true"}))
    exporter = SyntheticExporter(namespace, "web")
    exporter.register(lab.prometheus.targets_dir, namespace)
    exporter.follow(core, "app=web")
    try:
        create_policy(
            custom,
            policy_body(
                "web", namespace, actions={"drain": {"method": "ServiceLabel", "evict": False}}
            ),
        )
        discovery = client.DiscoveryV1Api(api_client)

        def in_slice() -> set[str]:
            return {
                ep.target_ref.name
                for s in discovery.list_namespaced_endpoint_slice(namespace).items
                for ep in s.endpoints or []
                if ep.target_ref
            }

        pods = wait_for(
            lambda: len(r := in_slice()) == 6 and sorted(r), timeout=30, what="6 endpoints"
        )
        exporter.set_ratio(pods[0], 0.2)
        wait_for(
            lambda: pods[0] not in in_slice(),
            timeout=60,
            what=f"drained out of the slice\n{operator.log()}",
        )
        pod = core.read_namespaced_pod(pods[0], namespace)
        assert SERVING not in (pod.metadata.labels or {})
        assert pod.metadata.annotations[DRAINED_BY] == "web"
        assert len(in_slice()) == 5
        assert pod.metadata.owner_references, "still owned by its ReplicaSet: no replacement"
        # the fault is fixed and a person asks for the pod back
        exporter.set_ratio(pods[0], 0.001)
        core.patch_namespaced_pod(
            pods[0], namespace, {"metadata": {"annotations": {UNDRAIN: "true"}}}
        )
        wait_for(lambda: pods[0] in in_slice(), timeout=30, what="restored on request")
    finally:
        exporter.stop()


def test_two_replicas_only_the_lease_holder_acts(
    operator: OperatorProcess,
    fleet: Fleet,
    custom: client.CustomObjectsApi,
    core: client.CoreV1Api,
    api_client: client.ApiClient,
    namespace: str,
    tmp_path: Path,
) -> None:
    leases = client.CoordinationV1Api(api_client)

    def holder() -> str:
        return str(
            leases.read_namespaced_lease(
                "stickyguard-leader", "stickyguard-system"
            ).spec.holder_identity
        )

    assert holder() == operator.name
    sup = Supervisor(tmp_path)
    second = OperatorProcess(sup, operator.kubeconfig, operator.url, name="operator-2")
    second.start()
    try:
        create_policy(
            custom,
            policy_body(
                "web", namespace, actions={"drain": {"method": "ReadinessGate", "evict": False}}
            ),
        )
        pods = fleet.wait_all_ready()
        fleet.exporter.set_ratio(pods[0], 0.2)
        wait_for(lambda: pods[0] not in fleet.ready(), timeout=60, what="drained")
        # kopf posts Events from a queue of its own: wait for the first, then for a second
        # that must never come.
        wait_for(lambda: events(core, namespace, "Drained"), timeout=15, what="Drained Event")
        time.sleep(6)
        assert holder() == operator.name
        assert len(events(core, namespace, "Drained")) == 1, "one replica acted, once"
        # Failover: the follower takes over once the leader's lease expires.
        operator.kill()
        wait_for(lambda: holder() == "operator-2", timeout=40, what="failover")
    finally:
        second.stop()
        if operator.child is None:
            operator.start()
        wait_for(lambda: holder() == operator.name, timeout=60, what="leader again")


def test_isolate_starts_a_replacement_at_once_and_deletes_after_ttl(
    story: Story,
    operator: OperatorProcess,
    fleet: Fleet,
    core: client.CoreV1Api,
    namespace: str,
) -> None:
    story.given_policy(
        actions={
            "drain": {"method": "ReadinessGate", "drainTimeoutSeconds": 5, "evict": True},
            "isolate": {"enabled": True, "ttlSeconds": 60},
        }
    )
    pods = story.given_pods_serving()
    bad = pods[0]
    story.when_pod_turns_bad(bad)

    def isolated() -> Any:
        p = core.read_namespaced_pod(bad, namespace)
        return "pod-template-hash" not in (p.metadata.labels or {}) and p

    pod = wait_for(isolated, timeout=90, what=f"isolated\n{operator.log()}")
    assert ISOLATED_AT in pod.metadata.annotations
    # The ReplicaSet let it go and started a replacement at once; the pod is kept.
    wait_for(
        lambda: not core.read_namespaced_pod(bad, namespace).metadata.owner_references,
        timeout=30,
        what="released by its ReplicaSet",
    )
    wait_for(
        lambda: (
            len(
                [
                    p
                    for p in fleet.pods()
                    if p.metadata.name != bad
                    and any(
                        c.type == "Ready" and c.status == "True" for c in p.status.conditions or []
                    )
                ]
            )
            == 6
        ),
        timeout=60,
        what="six serving pods besides the isolated one",
    )
    story.then_event("Isolated")
    wait_for(
        lambda: bad not in {p.metadata.name for p in fleet.pods()},
        timeout=120,
        what="deleted after its TTL",
    )


def test_cordon_the_node_the_damage_concentrates_on(
    operator: OperatorProcess,
    fleet: Fleet,
    custom: client.CustomObjectsApi,
    core: client.CoreV1Api,
    namespace: str,
) -> None:
    create_policy(custom, cordon_policy(namespace))
    fleet.wait_all_ready()
    node, bad = two_pods_on_one_node(fleet)
    for p in bad:
        fleet.exporter.set_ratio(p, 0.2)
    try:
        wait_for(
            lambda: core.read_node(node).spec.unschedulable,
            timeout=90,
            what=f"{node} cordoned\n{operator.log()}",
        )
        n = core.read_node(node)
        assert n.metadata.annotations[CORDONED_BY] == f"{namespace}/web"
        others = [x.metadata.name for x in core.list_node().items if x.metadata.name != node]
        assert not any(core.read_node(o).spec.unschedulable for o in others)
        wait_for(lambda: events(core, namespace, "Cordoned"), timeout=15, what="Cordoned event")
        custom.delete_namespaced_custom_object(GVR[0], GVR[1], namespace, GVR[2], "web")
        wait_for(
            lambda: not core.read_node(node).spec.unschedulable,
            timeout=30,
            what="uncordoned when the policy is deleted",
        )
    finally:
        core.patch_node(node, {"spec": {"unschedulable": False}})
