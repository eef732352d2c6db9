"""`make demo` / `stickyguard demo`: the incident replayed twice on a real local cluster.

Everything is real and local: the control plane and node agent (one demo-app process per pod),
Prometheus scraping the pods, HAProxy with cookie persistence in front (its servers follow the
Service's EndpointSlices), users with cookie jars, and the operator. A quality bug (HTTP 200,
wrong answer) hits one pod of six; the first run has no operator (unmitigated), the second
runs stickyguard (mitigated). Writes demo-report.json with the keys of `stickyguard simulate`.
"""

from __future__ import annotations

import shutil
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client, config

from stickyguard.lab import testenv
from stickyguard.lab.haproxy import EndpointSync, start_haproxy
from stickyguard.lab.kubectl import apply
from stickyguard.lab.loadgen import run_load
from stickyguard.lab.nodeagent import loopback_for
from stickyguard.lab.operatorproc import (
    OperatorProcess,
    install_crd,
    install_rbac,
    service_account_kubeconfig,
)
from stickyguard.lab.procs import Supervisor
from stickyguard.lab.prom import write_targets

NS, APP, REPLICAS = "demo", "shop", 6
SERVING = "stickyguard.dev/serving"
ANSWERS = 'app_answers_total{namespace="{namespace}",{selector}'


@dataclass(frozen=True)
class DemoSettings:
    duration: float = 200.0  # seconds of load per run
    fault_at: float = 10.0  # seconds into each run
    fault_rate: float = 0.05  # share of the bad pod's answers that are degraded
    users: int = 300
    sessions: int = 3
    requests: int = 12
    interval: float = 1.0


def _workload() -> list[dict[str, Any]]:
    labels = {"app": APP}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}},
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": APP, "namespace": NS},
            "spec": {
                "replicas": REPLICAS,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": {**labels, SERVING: "true"}},
                    "spec": {"containers": [{"name": "app", "image": "stickyguard/demo-app"}]},
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": APP, "namespace": NS},
            "spec": {"selector": {**labels, SERVING: "true"}, "ports": [{"port": 8080}]},
        },
    ]


def _policy() -> dict[str, Any]:
    q = ANSWERS
    return {
        "apiVersion": "stickyguard.dev/v1alpha1",
        "kind": "StickyPolicy",
        "metadata": {"name": APP, "namespace": NS},
        "spec": {
            "selector": {"matchLabels": {"app": APP}},
            "affinity": {"mode": "Cookie", "cookieName": "SRV"},
            "prometheus": {
                "preset": "custom",
                "window": "20s",
                "queries": {
                    "total": f"sum by ({{pod_label}}) (rate({q}}}[{{window}}]))",
                    "bad": f'sum by ({{pod_label}}) (rate({q},quality="degraded"}}[{{window}}]))',
                    "activeSessions": "sum by ({pod_label}) (app_sessions_active{namespace="
                    '"{namespace}",{selector}})',
                    "degradedSessions": "sum by ({pod_label}) (app_sessions_degraded{namespace="
                    '"{namespace}",{selector}})',
                },
            },
            "detection": {"intervalSeconds": 5, "consecutive": 2, "minRequests": 30},
            "actions": {
                "mode": "Enforce",
                "drain": {"method": "ServiceLabel", "drainTimeoutSeconds": 30, "evict": True},
            },
            "safety": {"maxDrainedPercent": 25, "minReadyPods": 3, "cooldownSeconds": 30},
        },
    }


def _apply(env: testenv.LabEnv, objs: list[dict[str, Any]]) -> None:
    apply(env.binaries.kubectl, env.kubeconfig, objs)


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as r:
        return str(r.read().decode())


class Demo:
    def __init__(self, state_dir: Path, settings: DemoSettings) -> None:
        self.state_dir, self.s = state_dir.resolve(), settings
        self.env: testenv.LabEnv | None = None

    def log(self, msg: str) -> None:
        print(f"[demo {time.strftime('%H:%M:%S')}] {msg}", flush=True)

    def pods(self, core: client.CoreV1Api) -> list[Any]:
        return [
            p
            for p in core.list_namespaced_pod(NS, label_selector=f"app={APP}").items
            if not p.metadata.deletion_timestamp
        ]

    def wait_serving(self, core: client.CoreV1Api, sync: EndpointSync) -> list[Any]:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            pods = self.pods(core)
            ready = [
                p
                for p in pods
                if p.status.pod_ip
                and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
            ]
            if len(ready) == REPLICAS and sum(1 for _, r in sync.state.values() if r) == REPLICAS:
                return sorted(ready, key=lambda p: p.metadata.name)
            time.sleep(0.5)
        raise RuntimeError("the demo pods did not all become ready behind HAProxy")

    def set_fault(self, pod: Any, rate: float) -> None:
        _get(f"http://{loopback_for(pod.status.pod_ip)}:8080/fault?rate={rate}")

    def phase(
        self, name: str, core: client.CoreV1Api, sync: EndpointSync, port: int
    ) -> tuple[dict[str, Any], str]:
        pods = self.wait_serving(core, sync)
        victim = pods[0]
        for p in pods:
            self.set_fault(p, 0.0)
        self.log(
            f"{name}: {len(pods)} pods serving; quality bug on {victim.metadata.name} "
            f"({self.s.fault_rate:.0%} of its answers) from t={self.s.fault_at:.0f}s"
        )
        onset: dict[str, float] = {}

        def inject() -> None:
            time.sleep(self.s.fault_at)
            self.set_fault(victim, self.s.fault_rate)
            onset["t"] = time.time()

        threading.Thread(target=inject, daemon=True).start()
        result = run_load(
            "127.0.0.1",
            port,
            users=self.s.users,
            duration=self.s.duration,
            sessions=self.s.sessions,
            requests=self.s.requests,
            interval=self.s.interval,
        )
        drained_at = None
        healthy_drained = set()
        drained = set()
        for e in core.list_namespaced_event(NS).items:
            if e.reason == "Drained" and e.involved_object.kind == "Pod":
                drained.add(e.involved_object.name)
                when = e.last_timestamp or e.event_time or e.first_timestamp
                if e.involved_object.name == victim.metadata.name and when is not None:
                    drained_at = when.timestamp()
                elif e.involved_object.name != victim.metadata.name:
                    healthy_drained.add(e.involved_object.name)
        detection = (
            None if drained_at is None or "t" not in onset else max(0.0, drained_at - onset["t"])
        )
        report = {
            "users_affected_pct": round(result.users_affected_pct, 3),
            "requests_bad_pct": round(result.requests_bad_pct, 3),
            "detection_seconds": None if detection is None else round(detection, 1),
            "healthy_pods_drained": len(healthy_drained),
            "pods_drained": len(drained),
            "users": result.users,
            "requests": result.requests,
        }
        self.log(f"{name}: {report}")
        return report, victim.metadata.name

    def run(self) -> dict[str, Any]:
        if self.state_dir.exists():
            shutil.rmtree(self.state_dir)
        t0 = time.monotonic()
        self.log("starting the local control plane, node agent (demo runtime) and Prometheus")
        env = self.env = testenv.up(self.state_dir / "env", runtime="demo")
        sup = Supervisor(self.state_dir)
        sync = None
        try:
            install_crd(env)
            install_rbac(env)
            _apply(env, _workload())
            api = config.new_client_from_config(config_file=str(env.kubeconfig))
            core = client.CoreV1Api(api)
            haproxy_bin = shutil.which("haproxy")
            if not haproxy_bin:
                raise RuntimeError("haproxy not found: install Debian's haproxy package")
            proxy = start_haproxy(sup, haproxy_bin, self.state_dir / "haproxy")
            write_targets(
                env.prometheus.targets_dir, "haproxy", {f"127.0.0.1:{proxy.metrics_port}": {}}
            )
            sync = EndpointSync(proxy, client.DiscoveryV1Api(api), NS, APP)
            sync.start()
            self.log(f"HAProxy on {proxy.url} (cookie SRV), metrics on :{proxy.metrics_port}")

            unmitigated, _ = self.phase(
                "run 1/2, operator off (unmitigated)", core, sync, proxy.port
            )
            self.log("run 2/2: starting stickyguard (as its ServiceAccount) with the policy")
            sa = service_account_kubeconfig(env, self.state_dir / "sa.kubeconfig")
            op = OperatorProcess(sup, sa, env.prometheus.url)
            op.start()
            _apply(env, [_policy()])
            time.sleep(15)  # a few evaluations on healthy traffic first
            mitigated, _ = self.phase("run 2/2, stickyguard on (mitigated)", core, sync, proxy.port)
            report = {
                "unmitigated": unmitigated,
                "mitigated": mitigated,
                "settings": self.s.__dict__,
                "elapsed_seconds": round(time.monotonic() - t0, 1),
            }
            return report
        finally:
            if sync:
                sync.stop()
            sup.stop_all()
            env.down()


def table(report: dict[str, Any]) -> str:
    rows = [("", "requests bad %", "users affected %", "detection s", "healthy pods drained")]
    for name in ("unmitigated", "mitigated"):
        r = report[name]
        rows.append(
            (
                name,
                str(r["requests_bad_pct"]),
                str(r["users_affected_pct"]),
                "-" if r["detection_seconds"] is None else str(r["detection_seconds"]),
                str(r["healthy_pods_drained"]),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows)
