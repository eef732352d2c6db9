"""Control-loop safety against the real control plane (issue #14): one actor (a leader paused
mid-cycle writes nothing after a standby took over), finished actions (the N-th write of each
action fails and the cluster still converges), a gate every replica answers alike, deletion
by the recorded method, overlapping policies, and a clear start-up."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from operator_support import (
    GVR,
    Fleet,
    condition,
    cordon_policy,
    create_policy,
    get_policy,
    policy_body,
    two_pods_on_one_node,
)
from stickyguard.core.names import CORDONED_BY, DRAINED_BY, ISOLATED_AT, SERVING, UNDRAIN
from stickyguard_lab import testenv
from stickyguard_lab.apiproxy import ApiProxy, describe
from stickyguard_lab.controlplane import write_kubeconfig
from stickyguard_lab.faultproxy import FaultProxy
from stickyguard_lab.operatorproc import OperatorProcess, service_account_kubeconfig
from stickyguard_lab.procs import Supervisor, free_port
from support import wait_for, wait_record_cleared

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("crd_installed")]
LEASE = ("stickyguard-leader", "stickyguard-system")


def gate(pod: Any) -> str | None:
    return next((c.status for c in pod.status.conditions or [] if c.type == SERVING), None)


def holder(api_client: client.ApiClient) -> str:
    lease = client.CoordinationV1Api(api_client).read_namespaced_lease(*LEASE)
    return str(lease.spec.holder_identity or "")


@pytest.fixture
def api_proxy(lab: testenv.LabEnv) -> Iterator[ApiProxy]:
    p = ApiProxy(lab.control_plane.server, lab.control_plane.pki.ca_cert)
    yield p
    p.close()


@pytest.fixture
def without_session_operator(
    operator: OperatorProcess, api_client: client.ApiClient
) -> Iterator[None]:
    """Stops the session's operator (it releases the Lease) for a test that runs its own, and
    brings it back, leading again, afterwards."""
    operator.stop()
    yield
    operator.start()
    wait_for(lambda: holder(api_client) == operator.name, timeout=60, what="session leader back")


def proxied_operator(
    lab: testenv.LabEnv, proxy: ApiProxy, tmp: Path, sup: Supervisor, name: str, **kw: Any
) -> OperatorProcess:
    kubeconfig = service_account_kubeconfig(lab, tmp / f"{name}.kubeconfig", server=proxy.url)
    return OperatorProcess(sup, kubeconfig, lab.prometheus.url, name=name, **kw)


# --- one actor ----------------------------------------------------------------------------------


def test_a_leader_paused_mid_cycle_writes_nothing_after_the_takeover(
    lab: testenv.LabEnv,
    without_session_operator: None,
    operator: OperatorProcess,
    api_proxy: ApiProxy,
    fleet: Fleet,
    custom: client.CustomObjectsApi,
    core: client.CoreV1Api,
    api_client: client.ApiClient,
    namespace: str,
    tmp_path: Path,
) -> None:
    prom = FaultProxy(lab.prometheus.url, delay=5.0)
    sup = Supervisor(tmp_path)
    a = proxied_operator(lab, api_proxy, tmp_path, sup, "fence-a")
    b = OperatorProcess(sup, operator.kubeconfig, lab.prometheus.url, name="fence-b")
    try:
        a.start()
        wait_for(lambda: holder(api_client) == "fence-a", timeout=60, what="fence-a leads")
        b.start()
        create_policy(
            custom,
            policy_body(
                "web",
                namespace,
                prometheus={"url": prom.url, "timeoutSeconds": 10},
                detection={"consecutive": 1},
                actions={"mode": "DryRun", "drain": {"method": "ReadinessGate", "evict": False}},
            ),
        )
        pods = fleet.wait_all_ready()
        fleet.exporter.set_ratio(pods[0], 0.3)
        # A drain rests on several intervals of evidence: gather it in DryRun until the leader
        # would drain, then slow Prometheus (every query takes 5 s: a cycle lasts over 15 s) and
        # switch to Enforce. Five queries after the switch, the leader is inside a cycle that
        # started with the Enforce spec, and that cycle plans the drain.
        wait_for(
            lambda: any(
                d["pod"] == pods[0] and d["phase"] == "WouldDrain"
                for d in get_policy(custom, namespace, "web").get("status", {}).get("drained", [])
            ),
            timeout=120,
            what="the leader would drain the bad pod",
            detail=a.log,
        )
        prom.set("slow")
        custom.patch_namespaced_custom_object(
            *GVR[:2], namespace, GVR[2], "web", {"spec": {"actions": {"mode": "Enforce"}}}
        )
        seen = prom.requests
        wait_for(
            lambda: prom.requests > seen + 5, timeout=60, what="the leader in an Enforce cycle"
        )
        a.signal(signal.SIGSTOP)
        wait_for(lambda: holder(api_client) == "fence-b", timeout=60, what="fence-b takes over")
        takeover = time.time()
        time.sleep(2)
        a.signal(signal.SIGCONT)
        # The old leader finishes its queries (5 s each), plans the drain, and must stop at
        # its first write: its log says so, and the proxy in front of it saw no write land.
        wait_for(
            lambda: "stopped: fence-a does not hold lease" in a.log(),
            timeout=90,
            what="the old leader reached a write and stopped",
            detail=a.log,
        )
        time.sleep(3)
        late = [w for w in api_proxy.writes_since(takeover) if 200 <= w.status < 300]
        assert late == [], describe(late)
        # The new leader does the job.
        prom.set("pass")
        wait_for(lambda: pods[0] not in fleet.ready(), timeout=90, what="drained by fence-b")
        pod = core.read_namespaced_pod(pods[0], namespace)
        assert pod.metadata.annotations[DRAINED_BY] == "web"
    finally:
        a.signal(signal.SIGCONT)
        sup.stop_all()
        prom.close()


# --- finished actions ---------------------------------------------------------------------------


def _pod_rule(ns: str, pod: str) -> Any:
    prefix = f"/api/v1/namespaces/{ns}/pods/{pod}"
    return lambda method, path: path == prefix or path.startswith(prefix + "/")


# (flow, N): the N-th write to the bad pod fails. drain = [record, condition False];
# evict = drain + [eviction]; restore = drain + [undrain intent, condition True, forget];
# isolate = drain + [relabel: the label taken over (placeholder) with the record, then removed].
TRIALS = [
    ("evict", 1),
    ("evict", 2),
    ("evict", 3),
    ("restore", 3),
    ("restore", 4),
    ("restore", 5),
    ("isolate", 3),
    ("isolate", 4),
]


def test_a_failed_nth_write_of_every_action_converges(
    lab: testenv.LabEnv,
    without_session_operator: None,
    api_proxy: ApiProxy,
    fleet: Fleet,
    custom: client.CustomObjectsApi,
    core: client.CoreV1Api,
    namespace: str,
    tmp_path: Path,
) -> None:
    sup = Supervisor(tmp_path)
    op = proxied_operator(lab, api_proxy, tmp_path, sup, "converge")
    log: list[str] = []

    def spec(flow: str) -> dict[str, Any]:
        return policy_body(
            "web",
            namespace,
            detection={"consecutive": 1},
            actions={
                "deletionCost": False,  # its writes would touch the pod too
                "drain": {
                    "method": "ReadinessGate",
                    "evict": flow in ("evict", "isolate"),
                    "drainTimeoutSeconds": 5,
                },
                "isolate": {"enabled": flow == "isolate", "ttlSeconds": 3600},
            },
            # seven trials drain and evict more than the default hourly budget allows
            safety={"maxActionsPerHour": 100},
        )["spec"]

    def run_trial(flow: str, n: int) -> None:
        custom.patch_namespaced_custom_object(
            GVR[0], GVR[1], namespace, GVR[2], "web", {"spec": spec(flow)}
        )
        ready = fleet.wait_all_ready(timeout=90)
        bad = ready[0]
        failed_before = len(api_proxy.failed)
        api_proxy.fail_nth(n, _pod_rule(namespace, bad))
        fleet.exporter.set_ratio(bad, 0.3)
        log.append(f"{flow} N={n} pod={bad}")

        def pod() -> Any:
            return core.read_namespaced_pod(bad, namespace)

        def detail() -> str:
            return f"{log[-1]}\n{describe(api_proxy.writes[-12:])}\n{op.log()}"

        if flow == "evict":
            wait_for(
                lambda: bad not in {p.metadata.name for p in fleet.pods()},
                timeout=120,
                what="drained and evicted",
                detail=detail,
            )
        elif flow == "isolate":
            wait_for(
                lambda: (
                    ISOLATED_AT in (pod().metadata.annotations or {})
                    and "pod-template-hash" not in (pod().metadata.labels or {})
                    and gate(pod()) == "False"
                ),
                timeout=120,
                what="drained and isolated",
                detail=detail,
            )
        else:
            wait_for(
                lambda: DRAINED_BY in (pod().metadata.annotations or {}) and gate(pod()) == "False",
                timeout=120,
                what="drained",
                detail=detail,
            )
            fleet.exporter.set_ratio(bad, 0.001)
            time.sleep(11)  # the bad window passes, so it is not drained again at once
            core.patch_namespaced_pod(
                bad, namespace, {"metadata": {"annotations": {UNDRAIN: "true"}}}
            )
            wait_for(
                lambda: (
                    gate(pod()) == "True"
                    and not {DRAINED_BY, UNDRAIN} & set(pod().metadata.annotations or {})
                ),
                timeout=90,
                what="restored",
                detail=detail,
            )
        assert len(api_proxy.failed) == failed_before + 1, f"the fault was injected: {log[-1]}"
        api_proxy.clear_faults()
        fleet.exporter.set_ratio(bad, 0.001)
        if flow == "isolate":
            core.delete_namespaced_pod(bad, namespace)  # done with the forensics
        if flow == "isolate":
            wait_for(lambda: bad not in {p.metadata.name for p in fleet.pods()}, timeout=60)
        else:
            # the status agrees: the pod is no longer listed as drained
            wait_for(
                lambda: (
                    bad
                    not in {
                        d["pod"]
                        for d in get_policy(custom, namespace, "web")["status"].get("drained") or []
                    }
                ),
                timeout=30,
                what="status without the pod",
                detail=detail,
            )
        time.sleep(11)  # its bad window passes before the next trial

    try:
        op.start()
        create_policy(custom, {**policy_body("web", namespace), "spec": spec("evict")})
        for flow, n in TRIALS:
            run_trial(flow, n)
    finally:
        sup.stop_all()


def test_a_failed_cordon_write_converges(
    lab: testenv.LabEnv,
    without_session_operator: None,
    api_proxy: ApiProxy,
    fleet: Fleet,
    custom: client.CustomObjectsApi,
    core: client.CoreV1Api,
    namespace: str,
    tmp_path: Path,
) -> None:
    """A cordon is one apply (unschedulable and the record together): when it fails, nothing
    is recorded, so the next cycle plans it again and the node ends up cordoned once."""
    sup = Supervisor(tmp_path)
    op = proxied_operator(lab, api_proxy, tmp_path, sup, "cordon")
    node = ""
    try:
        op.start()
        create_policy(custom, cordon_policy(namespace))
        fleet.wait_all_ready(timeout=90)
        node, bad_pods = two_pods_on_one_node(fleet)
        failed_before = len(api_proxy.failed)
        api_proxy.fail_nth(1, lambda method, path: path == f"/api/v1/nodes/{node}")
        for bad in bad_pods:
            fleet.exporter.set_ratio(bad, 0.2)
        wait_for(
            lambda: core.read_node(node).spec.unschedulable,
            timeout=120,
            what=f"{node} cordoned after its first cordon write failed",
            detail=lambda: f"{describe(api_proxy.writes[-12:])}\n{op.log()}",
        )
        assert len(api_proxy.failed) == failed_before + 1, "the fault was injected"
        assert core.read_node(node).metadata.annotations[CORDONED_BY] == f"{namespace}/web"
    finally:
        api_proxy.clear_faults()
        sup.stop_all()
        if node:
            core.patch_node(node, {"spec": {"unschedulable": False}})


# --- deletion -----------------------------------------------------------------------------------


def test_deleting_a_policy_restores_by_the_recorded_method(
    operator: OperatorProcess,
    fleet: Fleet,
    custom: client.CustomObjectsApi,
    core: client.CoreV1Api,
    namespace: str,
) -> None:
    create_policy(
        custom,
        policy_body(
            "web", namespace, actions={"drain": {"method": "ReadinessGate", "evict": False}}
        ),
    )
    pods = fleet.wait_all_ready()
    fleet.exporter.set_ratio(pods[0], 0.3)
    wait_for(lambda: pods[0] not in fleet.ready(), timeout=60, what="drained by the gate")
    custom.patch_namespaced_custom_object(
        GVR[0],
        GVR[1],
        namespace,
        GVR[2],
        "web",
        {"spec": {"actions": {"drain": {"method": "ServiceLabel"}}}},
    )
    time.sleep(6)  # an evaluation under the new method: the drained pod stays drained
    assert pods[0] not in fleet.ready()
    custom.delete_namespaced_custom_object(GVR[0], GVR[1], namespace, GVR[2], "web")
    wait_for(lambda: pods[0] in fleet.ready(), timeout=60, what="Ready again", detail=operator.log)
    assert gate(core.read_namespaced_pod(pods[0], namespace)) == "True"
    # The drain record is cleared after the gate turns True (the restore's last write).
    wait_record_cleared(core, namespace, pods[0], operator.log)


def test_deleting_a_policy_leaves_isolated_pods_isolated(
    operator: OperatorProcess,
    fleet: Fleet,
    custom: client.CustomObjectsApi,
    core: client.CoreV1Api,
    namespace: str,
) -> None:
    create_policy(
        custom,
        policy_body(
            "web",
            namespace,
            actions={
                "drain": {"method": "ReadinessGate", "evict": True, "drainTimeoutSeconds": 5},
                "isolate": {"enabled": True, "ttlSeconds": 3600},
            },
        ),
    )
    pods = fleet.wait_all_ready()
    bad = pods[0]
    fleet.exporter.set_ratio(bad, 0.3)
    wait_for(
        lambda: (
            ISOLATED_AT in (core.read_namespaced_pod(bad, namespace).metadata.annotations or {})
        ),
        timeout=90,
        what="isolated",
        detail=operator.log,
    )
    custom.delete_namespaced_custom_object(GVR[0], GVR[1], namespace, GVR[2], "web")

    def gone() -> bool:
        return not custom.list_namespaced_custom_object(GVR[0], GVR[1], namespace, GVR[2])["items"]

    wait_for(gone, timeout=60, what="the policy deleted")
    pod = core.read_namespaced_pod(bad, namespace)
    assert gate(pod) == "False", "an isolated bad pod does not return to service"
    assert ISOLATED_AT in (pod.metadata.annotations or {})


# --- overlapping policies -----------------------------------------------------------------------


def test_two_policies_over_the_same_pods_act_once(
    operator: OperatorProcess,
    fleet: Fleet,
    custom: client.CustomObjectsApi,
    core: client.CoreV1Api,
    namespace: str,
) -> None:
    actions = {"drain": {"method": "ReadinessGate", "evict": False}}
    detection = {"relativeThreshold": 1.5, "fleetWideFraction": 0.9}
    create_policy(custom, policy_body("first", namespace, actions=actions, detection=detection))
    time.sleep(1.1)  # creationTimestamp has one-second resolution
    create_policy(custom, policy_body("second", namespace, actions=actions, detection=detection))
    pods = fleet.wait_all_ready()
    fleet.exporter.set_ratio(pods[0], 0.3)

    def conflict() -> dict[str, Any] | None:
        c = condition(get_policy(custom, namespace, "second"), "Conflict")
        return c if c and c["status"] == "True" else None

    c = wait_for(conflict, timeout=60, what="Conflict on the newer policy", detail=operator.log)
    assert "first" in c["message"]
    wait_for(lambda: len(fleet.ready()) == 5, timeout=60, what="one drain")
    time.sleep(12)  # more cycles of both policies
    drained = [p for p in fleet.pods() if DRAINED_BY in (p.metadata.annotations or {})]
    assert [p.metadata.annotations[DRAINED_BY] for p in drained] == ["first"]
    first = condition(get_policy(custom, namespace, "first"), "Conflict")
    assert first is not None and first["status"] == "False"


# --- the gate on every replica ------------------------------------------------------------------


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


def test_leader_and_standby_answer_the_same_latched_verdict(
    operator: OperatorProcess,
    fleet: Fleet,
    custom: client.CustomObjectsApi,
    apps: client.AppsV1Api,
    api_client: client.ApiClient,
    namespace: str,
    tmp_path: Path,
) -> None:
    sup = Supervisor(tmp_path)
    standby = OperatorProcess(
        sup, operator.kubeconfig, operator.url, name="standby", gate_port=free_port()
    )
    standby.start()
    bases = [f"http://127.0.0.1:{p}" for p in (operator.gate_port, standby.gate_port)]
    body = policy_body(
        "web",
        namespace,
        workloadRef={"kind": "Deployment", "name": "web"},
        actions={
            "deletionCost": False,
            "drain": {"method": "ReadinessGate", "evict": False},
            "rollout": {"onCanaryDegraded": "None"},
        },
    )
    flagger = {"name": "web", "namespace": namespace, "phase": "Progressing", "metadata": {}}
    try:
        assert holder(api_client) == operator.name
        create_policy(custom, body)
        fleet.wait_all_ready()
        for base in bases:  # no rollout: inconclusive; a rollout check passes, promotion waits
            wait_for(
                lambda b=base: (
                    _http(f"{b}/gate/argo/{namespace}/web")[1]["verdict"] == "inconclusive"
                ),
                timeout=60,
                what=f"inconclusive at {base}",
                detail=lambda b=base: _http(f"{b}/gate/argo/{namespace}/web"),
            )
            assert _http(f"{base}/gate/flagger", flagger)[0] == 200
            assert _http(f"{base}/gate/flagger/confirm-promotion", flagger)[0] == 412
        fleet.exporter.set_label_ratio("version", "v2", 0.3)
        apps.patch_namespaced_deployment(
            "web",
            namespace,
            {
                "spec": {
                    # The pace of real pods: a `fail` rests on four evaluations of evidence,
                    # and the lab's pods are Ready at once (test_rollout_guard.roll_out).
                    "minReadySeconds": 8,
                    "strategy": {
                        "type": "RollingUpdate",
                        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
                    },
                    "template": {"metadata": {"labels": {"version": "v2"}}},
                }
            },
        )
        for base in bases:
            wait_for(
                lambda b=base: _http(f"{b}/gate/flagger", flagger)[0] == 412,
                timeout=90,
                what=f"fail at {base}",
            )
        # The bad new pods are drained (no traffic left: the judge alone would say
        # inconclusive); the verdict stays fail on both replicas.
        time.sleep(15)
        for base in bases:
            status, answer = _http(f"{base}/gate/argo/{namespace}/web")
            assert status == 200 and answer["verdict"] == "fail", (base, answer)
            assert _http(f"{base}/gate/flagger", flagger)[0] == 412
        custom.delete_namespaced_custom_object(GVR[0], GVR[1], namespace, GVR[2], "web")
        for base in bases:
            wait_for(
                lambda b=base: _http(f"{b}/gate/argo/{namespace}/web")[0] == 404,
                timeout=60,
                what=f"forgotten at {base}",
            )
    finally:
        sup.stop_all()


# --- start-up -----------------------------------------------------------------------------------


def test_run_exits_at_once_when_the_lease_namespace_is_missing(
    lab: testenv.LabEnv, tmp_path: Path
) -> None:
    kubeconfig = write_kubeconfig(
        tmp_path / "kubeconfig",
        lab.control_plane.server,
        lab.control_plane.pki,
        namespace="no-such-namespace",
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "stickyguard", "run", f"--kubeconfig={kubeconfig}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert time.monotonic() - started < 20
    assert "no-such-namespace" in done.stderr and "--lease-namespace" in done.stderr


# --- the right rollback -------------------------------------------------------------------------


def _roll(apps: client.AppsV1Api, ns: str, version: str, **spec: Any) -> None:
    apps.patch_namespaced_deployment(
        "web",
        ns,
        {
            "spec": {
                "strategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
                },
                "template": {"metadata": {"labels": {"version": version}}},
                **spec,
            }
        },
    )


def test_rollback_skips_a_failed_revision_for_the_last_known_good(
    operator: OperatorProcess,
    fleet: Fleet,
    custom: client.CustomObjectsApi,
    apps: client.AppsV1Api,
    namespace: str,
) -> None:
    """good v1 -> bad v2 (paused) -> resumed with bad v3: back to v1, never to v2."""
    body = policy_body(
        "web",
        namespace,
        workloadRef={"kind": "Deployment", "name": "web"},
        actions={
            "deletionCost": False,
            "drain": {"method": "ReadinessGate", "evict": False},
            "rollout": {"onCanaryDegraded": "Pause"},
        },
    )
    create_policy(custom, body)
    fleet.wait_all_ready()

    def section() -> dict[str, Any]:
        return dict((get_policy(custom, namespace, "web").get("status") or {}).get("rollout") or {})

    v1 = wait_for(lambda: section().get("knownGoodHashes"), timeout=60, what="v1 known good")
    fleet.exporter.set_label_ratio("version", "v2", 0.3)
    fleet.exporter.set_label_ratio("version", "v3", 0.3)
    _roll(apps, namespace, "v2", minReadySeconds=8)  # as test_rollout_guard.roll_out
    wait_for(
        lambda: apps.read_namespaced_deployment("web", namespace).spec.paused,
        timeout=90,
        what="v2 paused",
        detail=section,
    )
    # The pause and the status are two writes of one cycle: wait for the status.
    latched = wait_for(
        lambda: (s := section()).get("newHash") in s.get("failedHashes", []) and s,
        timeout=30,
        what="v2 latched failed",
        detail=section,
    )
    v2 = latched["newHash"]
    # v2's pods recover: the judge alone would now call v2 fine, but v2 stays failed (latched),
    # and the old cohort v3 is compared with is healthy again.
    fleet.exporter.set_label_ratio("version", "v2", 0.001)
    time.sleep(12)
    assert v2 in section()["failedHashes"]
    custom.patch_namespaced_custom_object(
        GVR[0],
        GVR[1],
        namespace,
        GVR[2],
        "web",
        {"spec": {"actions": {"rollout": {"onCanaryDegraded": "Rollback"}}}},
    )
    # A person pushes v3 on top and resumes. minReadySeconds keeps the rollout going long
    # enough for the guard to judge v3 before it completes (the lab's pods are Ready at once).
    _roll(apps, namespace, "v3", paused=False, minReadySeconds=30)

    def back_to_v1() -> bool:
        label = apps.read_namespaced_deployment("web", namespace).spec.template.metadata.labels
        assert (label or {}).get("version") != "v2", "rolled back to the failed v2"
        return "version" not in (label or {})

    wait_for(back_to_v1, timeout=120, what="rolled back to v1", detail=section)
    time.sleep(12)  # more evaluations: no flip to v2
    label = apps.read_namespaced_deployment("web", namespace).spec.template.metadata.labels or {}
    assert "version" not in label, f"rolled back to {label}, not to v1 {v1}"
    assert v2 not in section().get("knownGoodHashes", [])
