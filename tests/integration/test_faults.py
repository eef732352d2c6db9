"""Faults against the real components: a misbehaving Prometheus (through a fault-injecting proxy
in front of the real one), the apiserver restarted mid-cycle, concurrent writers causing 409
conflicts, and the operator SIGKILLed at seeded random points of drain -> evict -> restore."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from operator_support import GVR, Fleet, condition, create_policy, events, get_policy, policy_body
from stickyguard.core.names import DRAINED_BY, SERVING, UNDRAIN
from stickyguard_lab import testenv
from stickyguard_lab.faultproxy import FaultProxy
from stickyguard_lab.operatorproc import OperatorProcess
from support import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("crd_installed")]


def gate(pod: Any) -> str | None:
    return next((c.status for c in pod.status.conditions or [] if c.type == SERVING), None)


def metrics_available(custom: client.CustomObjectsApi, ns: str) -> dict[str, Any] | None:
    return condition(get_policy(custom, ns, "web"), "MetricsAvailable")


def wait_metrics(custom: client.CustomObjectsApi, ns: str, status: str, timeout: float = 60) -> Any:
    return wait_for(
        lambda: (c := metrics_available(custom, ns)) and c["status"] == status and c,
        timeout=timeout,
        what=f"MetricsAvailable={status}",
        detail=lambda: metrics_available(custom, ns),
    )


@pytest.fixture
def proxy(lab: testenv.LabEnv) -> Iterator[FaultProxy]:
    p = FaultProxy(lab.prometheus.url, delay=4.0)
    yield p
    p.close()


# mode -> words the MetricsAvailable message must contain
FAULTS = {
    "hang": "timed out",
    "slow": "timed out",  # 4 s answers against timeoutSeconds 2
    "error": "answered an error",
    "malformed": "malformed answer",
    "wrong_shape": "malformed sample",
    "refuse": "unreachable",
    "stale": "fresh series",
}


@pytest.mark.parametrize("mode", list(FAULTS))
def test_prometheus_fault_holds_every_action_then_recovers(
    operator: OperatorProcess,
    fleet: Fleet,
    proxy: FaultProxy,
    custom: client.CustomObjectsApi,
    core: client.CoreV1Api,
    namespace: str,
    mode: str,
) -> None:
    create_policy(
        custom,
        policy_body(
            "web",
            namespace,
            prometheus={"url": proxy.url, "timeoutSeconds": 2, "maxStalenessSeconds": 15},
            actions={"drain": {"method": "ReadinessGate", "evict": False}},
        ),
    )
    pods = fleet.wait_all_ready()
    wait_metrics(custom, namespace, "True")
    if mode == "stale":
        # Answers as of 20 s ago (data existed then): every newest sample is older than
        # maxStalenessSeconds (15), as from a Prometheus that stopped ingesting.
        time.sleep(25)
        proxy.lag = 20.0
    proxy.set(mode)
    fleet.exporter.set_ratio(pods[0], 0.3)  # a real fault while blind: must not act on it
    c = wait_metrics(custom, namespace, "False", timeout=60)
    assert c["reason"] == "MetricsUnavailable"
    assert FAULTS[mode] in c["message"], c["message"]
    seen = proxy.requests
    time.sleep(12)  # two more evaluations while blind
    assert proxy.requests > seen, "the operator kept evaluating"
    assert all(gate(p) == "True" for p in fleet.pods()), "nothing drained while blind"
    assert not events(core, namespace, "Drained")
    proxy.set("pass")
    wait_metrics(custom, namespace, "True")
    wait_for(
        lambda: pods[0] not in fleet.ready(), timeout=60, what="the bad pod drained after recovery"
    )
    assert sorted(fleet.ready()) == sorted(pods[1:])


def test_apiserver_restart_mid_cycle(
    lab: testenv.LabEnv,
    operator: OperatorProcess,
    fleet: Fleet,
    custom: client.CustomObjectsApi,
    core: client.CoreV1Api,
    namespace: str,
) -> None:
    create_policy(custom, policy_body("web", namespace))
    pods = fleet.wait_all_ready()
    wait_metrics(custom, namespace, "True")
    fleet.exporter.set_ratio(pods[0], 0.3)
    time.sleep(4)  # the operator is between its first failing evaluation and its drain
    down = lab.restart_apiserver(downtime=3.0)
    assert down >= 3.0
    # The operator outlives the outage, then drains, evicts and replaces the bad pod.
    wait_for(
        lambda: pods[0] not in {p.metadata.name for p in fleet.pods()},
        timeout=120,
        what="the bad pod evicted after the restart",
        detail=operator.log,
    )
    assert operator.child is not None and operator.child.alive(), operator.log()
    ready = fleet.wait_all_ready(timeout=120)
    assert set(pods[1:]) <= set(ready), "no healthy pod was touched"
    stamp = get_policy(custom, namespace, "web")["status"]["lastEvaluationTime"]
    wait_for(
        lambda: get_policy(custom, namespace, "web")["status"]["lastEvaluationTime"] != stamp,
        timeout=90,
        what="evaluations continuing",
    )


def test_concurrent_writers_conflict_and_lose_nothing(
    api_client: client.ApiClient,
    operator: OperatorProcess,
    fleet: Fleet,
    custom: client.CustomObjectsApi,
    core: client.CoreV1Api,
    namespace: str,
) -> None:
    """A naive controller read-modify-writes the same pods (PUT with resourceVersion) and the
    leader Lease. Its 409s are its own; the operator's pod writes are patches that cannot
    conflict, and its Lease renewals that hit 409 are retried without losing leadership."""
    leases = client.CoordinationV1Api(api_client)
    stop = threading.Event()
    stats = {"pod_conflicts": 0, "pod_writes": 0, "lease_conflicts": 0, "lease_writes": 0}

    def pod_writer() -> None:
        while not stop.is_set():
            for name in [p.metadata.name for p in fleet.pods()]:
                try:
                    pod = core.read_namespaced_pod(name, namespace)
                    ann = pod.metadata.annotations or {}
                    ann["writer/count"] = str(int(ann.get("writer/count", "0")) + 1)
                    pod.metadata.annotations = ann
                    core.replace_namespaced_pod(name, namespace, pod)
                    stats["pod_writes"] += 1
                except ApiException as e:
                    if e.status == 409:
                        stats["pod_conflicts"] += 1
                    elif e.status != 404:
                        raise

    def lease_writer() -> None:
        while not stop.is_set():
            try:
                lease = leases.read_namespaced_lease("stickyguard-leader", "stickyguard-system")
                ann = lease.metadata.annotations or {}
                ann["writer/count"] = str(int(ann.get("writer/count", "0")) + 1)
                lease.metadata.annotations = ann
                leases.replace_namespaced_lease("stickyguard-leader", "stickyguard-system", lease)
                stats["lease_writes"] += 1
            except ApiException as e:
                if e.status != 409:
                    raise
                stats["lease_conflicts"] += 1

    create_policy(
        custom,
        policy_body(
            "web", namespace, actions={"drain": {"method": "ReadinessGate", "evict": False}}
        ),
    )
    pods = fleet.wait_all_ready()
    threads = [threading.Thread(target=f, daemon=True) for f in (pod_writer, lease_writer)]
    for t in threads:
        t.start()
    try:
        fleet.exporter.set_ratio(pods[0], 0.3)
        wait_for(lambda: pods[0] not in fleet.ready(), timeout=60, what="drained under contention")
        fleet.exporter.set_ratio(pods[0], 0.001)
        # A drained pod gets no traffic to prove itself healthy; a person restores it.
        core.patch_namespaced_pod(
            pods[0], namespace, {"metadata": {"annotations": {UNDRAIN: "true"}}}
        )
        wait_for(lambda: pods[0] in fleet.ready(), timeout=60, what="restored under contention")
        time.sleep(6)  # at least one more Lease renewal under contention
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
    assert stats["pod_writes"] > 0 and stats["lease_writes"] > 0
    assert stats["lease_conflicts"] + stats["pod_conflicts"] > 0, stats
    pod = core.read_namespaced_pod(pods[0], namespace)
    assert int(pod.metadata.annotations["writer/count"]) > 0, "the writer's own updates landed"
    assert DRAINED_BY not in (pod.metadata.annotations or {}), "restored cleanly"
    assert len(events(core, namespace, "Drained")) == 1
    holder = leases.read_namespaced_lease("stickyguard-leader", "stickyguard-system")
    assert holder.spec.holder_identity == operator.name


TRIALS = 20


def test_sigkill_at_random_points_converges(
    operator: OperatorProcess,
    lab: testenv.LabEnv,
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
    custom: client.CustomObjectsApi,
    namespace: str,
) -> None:
    """20 seeded trials. In each, one pod goes bad and the operator is SIGKILLed at a random
    moment of drain -> evict (or, every fourth trial, of the restores a policy deletion does),
    then restarted. The cluster must converge: exactly the bad pod evicted (none twice, no
    healthy one), no pod left marked drained, every pod serving."""
    fleet = Fleet(lab, core, apps, namespace, replicas=4)
    body = policy_body("web", namespace, safety={"maxDrainedPercent": 25, "minReadyPods": 2})
    log = []
    try:
        create_policy(custom, body)
        fleet.wait_all_ready(timeout=90)
        for trial in range(TRIALS):
            rng = random.Random(trial)
            before = sorted(fleet.ready())
            bad = before[rng.randrange(len(before))]
            restore_path = trial % 4 == 3
            fleet.exporter.set_ratio(bad, 0.3)
            if restore_path:
                wait_for(lambda b=bad: b not in fleet.ready(), timeout=60, what="drained")
                custom.delete_namespaced_custom_object(GVR[0], GVR[1], namespace, GVR[2], "web")
            kill_at = rng.uniform(0.0, 6.0 if restore_path else 20.0)
            time.sleep(kill_at)
            operator.kill()
            time.sleep(rng.uniform(0.0, 2.0))
            operator.start()
            log.append((trial, bad, "restore" if restore_path else "evict", round(kill_at, 1)))

            def converged(bad: str = bad, restore_path: bool = restore_path) -> bool:
                pods = fleet.pods()
                names = {p.metadata.name for p in pods}
                marked = [p for p in pods if DRAINED_BY in (p.metadata.annotations or {})]
                if restore_path:
                    gone = not any(
                        o["metadata"]["name"] == "web"
                        for o in custom.list_namespaced_custom_object(
                            GVR[0], GVR[1], namespace, GVR[2]
                        )["items"]
                    )
                    return gone and not marked and bad in names
                return bad not in names and not marked and len(fleet.ready()) == 4

            wait_for(
                converged,
                timeout=150,
                what=f"trial {trial} converged",
                detail=lambda: f"{log[-1]}\n{operator.log()}",
            )
            now = {p.metadata.name for p in fleet.pods()}
            lost = set(before) - now
            assert lost == (set() if restore_path else {bad}), (trial, lost)
            if restore_path:
                fleet.exporter.set_ratio(bad, 0.001)
                assert all(gate(p) == "True" for p in fleet.pods())
                create_policy(custom, body)
            fleet.wait_all_ready(timeout=90)
    finally:
        fleet.close()
