"""The lab itself, against the real control plane, node agent and Prometheus."""

from __future__ import annotations

import json
import socket
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from stickyguard.core.names import SERVING
from stickyguard_lab import testenv
from stickyguard_lab.kubectl import kubectl
from stickyguard_lab.procs import Supervisor
from stickyguard_lab.prom import Series, backfill, start_prometheus
from support import gated_deployment, service, wait_for

pytestmark = pytest.mark.integration


def endpoint_readiness(discovery: client.DiscoveryV1Api, ns: str, svc: str) -> dict[str, bool]:
    slices = discovery.list_namespaced_endpoint_slice(
        ns, label_selector=f"kubernetes.io/service-name={svc}"
    )
    return {
        ep.target_ref.name: bool(ep.conditions.ready)
        for s in slices.items
        for ep in (s.endpoints or [])
    }


def set_gate(core: client.CoreV1Api, ns: str, pod: str, value: bool) -> None:
    core.patch_namespaced_pod_status(
        pod,
        ns,
        {
            "status": {
                "conditions": [
                    {"type": SERVING, "status": "True" if value else "False", "reason": "Test"}
                ]
            }
        },
    )


def test_cluster_reports_pinned_version(lab: testenv.LabEnv) -> None:
    out = kubectl(lab.binaries.kubectl, lab.kubeconfig, "version", "-o", "json").stdout
    server = json.loads(out)["serverVersion"]["gitVersion"]
    assert server == lab.binaries.k8s_version


def test_readiness_gate_drives_endpointslice(
    lab: testenv.LabEnv,
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
    api_client: client.ApiClient,
    namespace: str,
) -> None:
    discovery = client.DiscoveryV1Api(api_client)
    apps.create_namespaced_deployment(namespace, gated_deployment("web", 3))
    core.create_namespaced_service(namespace, service("web", {"app": "web"}))

    def running() -> list[Any]:
        return [
            p
            for p in core.list_namespaced_pod(namespace).items
            if p.status.phase == "Running" and p.status.pod_ip
        ]

    pods = wait_for(lambda: len(r := running()) == 3 and r, what="3 running pods")
    assert len({p.status.pod_ip for p in pods}) == 3, (
        "each pod gets its own podIP",
        [(p.metadata.name, p.metadata.uid, p.status.pod_ip) for p in pods],
    )
    assert all(p.spec.node_name.startswith("lab-node-") for p in pods)
    # Gate missing: the node agent must keep the pods NotReady, as kubelet does.
    wait_for(lambda: len(endpoint_readiness(discovery, namespace, "web")) == 3, what="3 endpoints")
    assert not any(endpoint_readiness(discovery, namespace, "web").values())

    for p in pods:
        set_gate(core, namespace, p.metadata.name, True)
    wait_for(
        lambda: all(endpoint_readiness(discovery, namespace, "web").values()),
        timeout=10,
        what="all endpoints ready",
    )

    victim = pods[0].metadata.name
    set_gate(core, namespace, victim, False)

    def victim_out() -> dict[str, bool] | None:
        r = endpoint_readiness(discovery, namespace, "web")
        return r if r.get(victim) is False else None

    ready = wait_for(victim_out, timeout=10, what="victim not ready")
    assert sum(ready.values()) == 2
    set_gate(core, namespace, victim, True)
    wait_for(
        lambda: all(endpoint_readiness(discovery, namespace, "web").values()),
        timeout=10,
        what="victim ready again",
    )


def test_deleted_pod_is_replaced_and_run(
    core: client.CoreV1Api, apps: client.AppsV1Api, namespace: str
) -> None:
    apps.create_namespaced_deployment(namespace, gated_deployment("api", 2))

    def running() -> list[Any]:
        return [
            p
            for p in core.list_namespaced_pod(namespace).items
            if p.status.phase == "Running" and not p.metadata.deletion_timestamp
        ]

    before = wait_for(lambda: len(r := running()) == 2 and r, what="2 running pods")
    gone = before[0].metadata.name
    core.delete_namespaced_pod(gone, namespace)
    after = wait_for(
        lambda: len(r := running()) == 2 and gone not in {p.metadata.name for p in r} and r,
        what="replacement running",
    )
    # The deleted pod is really gone (the agent completes deletions as kubelet would).
    wait_for(
        lambda: gone not in {p.metadata.name for p in core.list_namespaced_pod(namespace).items},
        what="deleted pod removed",
    )
    assert {p.metadata.name for p in after} - {p.metadata.name for p in before}


def _query(url: str, promql: str, at: float) -> list[dict[str, Any]]:
    qs = urllib.parse.urlencode({"query": promql, "time": str(at)})
    with urllib.request.urlopen(f"{url}/api/v1/query?{qs}", timeout=5) as resp:
        body = json.load(resp)
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def test_backfilled_prometheus_answers_ratio_at_fixed_time(
    lab: testenv.LabEnv, tmp_path: Path
) -> None:
    t0 = 1_700_000_000
    rates = {"p-0": (10.0, 0.0), "p-1": (10.0, 1.0), "p-2": (20.0, 0.5)}  # per-second rates
    series = []
    for pod, (total_rate, bad_rate) in rates.items():
        for code, rate in (("200", total_rate - bad_rate), ("500", bad_rate)):
            series.append(
                Series(
                    "http_requests_total",
                    {"pod": pod, "code": code},
                    [(t0 + i * 15, rate * i * 15) for i in range(41)],
                )
            )
    backfill(lab.binaries, series, tmp_path / "tsdb")
    sup = Supervisor(tmp_path)
    prom = start_prometheus(sup, lab.binaries, tmp_path / "prom", tsdb_dir=tmp_path / "tsdb")
    try:
        result = _query(
            prom.url,
            'sum by (pod) (rate(http_requests_total{code=~"5.."}[2m]))'
            " / sum by (pod) (rate(http_requests_total[2m]))",
            t0 + 600,
        )
    finally:
        sup.stop_all()
    got = {r["metric"]["pod"]: float(r["value"][1]) for r in result}
    assert got == pytest.approx({"p-0": 0.0, "p-1": 0.1, "p-2": 0.025})


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_up_and_down_twice_leaves_nothing_behind(tmp_path: Path) -> None:
    for _ in range(2):
        env = testenv.up(tmp_path / "env")
        pids = [c.popen.pid for c in env.supervisor.children]
        ports = [
            urllib.parse.urlsplit(u).port
            for u in (env.control_plane.server, env.control_plane.etcd_url, env.prometheus.url)
        ]
        assert all(p and _listening(p) for p in ports)
        assert testenv.down(env.state_dir)
        for pid in pids:
            assert (
                not Path(f"/proc/{pid}").exists()
                or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
            ), f"process {pid} survived"
        assert not any(p and _listening(p) for p in ports)
