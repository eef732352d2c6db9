"""`make demo` / `stickyguard demo`: the incident replayed twice on a real local cluster.

Everything is real and local: the control plane and node agent (one demo-app process per pod, in
the lab's pod network), Prometheus scraping the pods, Traefik v3 in front (its Kubernetes Ingress
provider, sticky cookies from the Service's annotations), users with cookie jars, and the
operator. A quality bug (HTTP 200,
wrong answer) hits one pod of six; the first run has no operator (unmitigated), the second
runs stickyguard (mitigated). Writes demo-report.json with the keys of `stickyguard simulate`.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client, config

from stickyguard.core.names import API_VERSION, SERVING
from stickyguard_lab import testenv
from stickyguard_lab.binaries import LabError, find_tool
from stickyguard_lab.demoruntime import APP_PORT
from stickyguard_lab.kubectl import apply
from stickyguard_lab.loadgen import run_load
from stickyguard_lab.netns import require_privilege
from stickyguard_lab.nodeagent import loopback_for
from stickyguard_lab.operatorproc import (
    OperatorProcess,
    install_crd,
    install_rbac,
    service_account_kubeconfig,
)
from stickyguard_lab.procs import Supervisor
from stickyguard_lab.prom import write_targets
from stickyguard_lab.traefik import Traefik, start_traefik

NS, APP, REPLICAS = "demo", "shop", 6
SUMMARY_KEYS = ("users_affected_pct", "requests_bad_pct", "detection_seconds", "pods_drained")
STICKY = "traefik.ingress.kubernetes.io/service.sticky.cookie"
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
            "metadata": {
                "name": APP,
                "namespace": NS,
                # Traefik v3 takes stickiness from the Service (examples/traefik/).
                "annotations": {
                    f"{STICKY}": "true",
                    f"{STICKY}.name": "SRV",
                    f"{STICKY}.httponly": "true",
                },
            },
            "spec": {"selector": {**labels, SERVING: "true"}, "ports": [{"port": 8080}]},
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {"name": APP, "namespace": NS},
            "spec": {
                "ingressClassName": "traefik",
                "rules": [
                    {
                        "http": {
                            "paths": [
                                {
                                    "path": "/",
                                    "pathType": "Prefix",
                                    "backend": {"service": {"name": APP, "port": {"number": 8080}}},
                                }
                            ]
                        }
                    }
                ],
            },
        },
    ]


def _policy() -> dict[str, Any]:
    q = ANSWERS
    return {
        "apiVersion": API_VERSION,
        "kind": "StickyPolicy",
        "metadata": {"name": APP, "namespace": NS},
        "spec": {
            "selector": {"matchLabels": {"app": APP}},
            "affinity": {"mode": "Cookie", "cookieName": "SRV"},
            "prometheus": {
                "preset": "custom",
                # Eight evaluations per window, as the defaults (2m, 15 s): a 20 s window of
                # four intervals flickers below the thresholds once its largest pair is set aside.
                "window": "40s",
                "queries": {
                    "total": f"sum by ({{pod_label}}) (rate({q}}}[{{window}}]))",
                    "bad": f'sum by ({{pod_label}}) (rate({q},quality="degraded"}}[{{window}}]))',
                    "totalCounter": f"sum by ({{pod_label}}) ({q}}})",
                    "badCounter": f'sum by ({{pod_label}}) ({q},quality="degraded"}})',
                    "activeSessions": "sum by ({pod_label}) (app_sessions_active{namespace="
                    '"{namespace}",{selector}})',
                    "degradedSessions": "sum by ({pod_label}) (app_sessions_degraded{namespace="
                    '"{namespace}",{selector}})',
                },
            },
            "detection": {"intervalSeconds": 5, "minRequests": 30},
            "actions": {
                "mode": "Enforce",
                "drain": {"method": "ServiceLabel", "drainTimeoutSeconds": 30, "evict": True},
            },
            "safety": {"maxDrainedPercent": 25, "minReadyPods": 3, "cooldownSeconds": 30},
        },
    }


def check_app_port(probe: str = "127.18.255.254") -> None:
    """The demo's pods listen on 127.18.x.y:APP_PORT; a process holding that port on every
    address would answer in their place (the readiness probe would even believe it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((probe, APP_PORT))
        except OSError as e:
            raise LabError(
                f"port {APP_PORT} is taken on this machine ({e.strerror}); the demo's pods listen "
                f"on 127.18.x.y:{APP_PORT}: stop the process listening on it "
                f"(ss -ltnp 'sport = :{APP_PORT}' shows it) and run make demo again"
            ) from None


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

    def wait_serving(self, core: client.CoreV1Api, traefik: Traefik) -> list[Any]:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            pods = self.pods(core)
            ready = [
                p
                for p in pods
                if p.status.pod_ip
                and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
            ]
            if len(ready) == REPLICAS and len(traefik.servers(NS, APP)) == REPLICAS:
                return sorted(ready, key=lambda p: p.metadata.name)
            time.sleep(0.5)
        raise LabError(
            "the demo pods did not all become ready behind Traefik within 120s: see the pod "
            f"logs in {self.state_dir / 'env' / 'logs' / 'pods'} and {self.state_dir / 'logs'}"
        )

    def set_fault(self, pod: Any, rate: float) -> None:
        _get(f"http://{loopback_for(pod.status.pod_ip)}:8080/fault?rate={rate}")

    def phase(
        self, name: str, core: client.CoreV1Api, traefik: Traefik, port: int
    ) -> tuple[dict[str, Any], str]:
        pods = self.wait_serving(core, traefik)
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
        load_start = time.time()
        result = run_load(
            "127.0.0.1",
            port,
            users=self.s.users,
            duration=self.s.duration,
            sessions=self.s.sessions,
            requests=self.s.requests,
            interval=self.s.interval,
        )
        load_seconds = time.time() - load_start
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
            # Share of users hurt over share of requests bad: what stickiness multiplies.
            "amplification": (
                round(result.users_affected_pct / result.requests_bad_pct, 1)
                if result.requests_bad_pct
                else None
            ),
            "healthy_pods_drained": len(healthy_drained),
            "pods_drained": len(drained),
            "users": result.users,
            "requests": result.requests,
            # For the HTML report's chart, in seconds after the load started.
            "fault_at_seconds": round(onset["t"] - load_start, 1) if "t" in onset else None,
            "drained_at_seconds": None if drained_at is None else round(drained_at - load_start, 1),
            "load_seconds": round(load_seconds, 1),
            "users_hurt_timeline": hurt_timeline(result.first_hurt, result.users, load_seconds),
        }
        self.log(f"{name}: " + ", ".join(f"{k} {report[k]}" for k in SUMMARY_KEYS))
        return report, victim.metadata.name

    def run(self) -> dict[str, Any]:
        require_privilege()  # before minutes of set-up, not after
        find_tool("prometheus", "prometheus")
        check_app_port()
        if self.state_dir.exists():
            shutil.rmtree(self.state_dir)
        t0 = time.monotonic()
        self.log("starting the local control plane, node agent (demo runtime) and Prometheus")
        env = self.env = testenv.up(self.state_dir / "env", runtime="demo")
        sup = Supervisor(self.state_dir)
        try:
            install_crd(env)
            install_rbac(env)
            _apply(env, _workload())
            api = config.new_client_from_config(config_file=str(env.kubeconfig))
            core = client.CoreV1Api(api)
            traefik = start_traefik(env, sup)
            write_targets(
                env.prometheus.targets_dir, "traefik", {f"127.0.0.1:{traefik.admin_port}": {}}
            )
            self.log(f"Traefik on {traefik.url} (cookie SRV), metrics on :{traefik.admin_port}")

            unmitigated, _ = self.phase(
                "run 1/2, operator off (unmitigated)", core, traefik, traefik.port
            )
            self.log("run 2/2: starting stickyguard (as its ServiceAccount) with the policy")
            sa = service_account_kubeconfig(env, self.state_dir / "sa.kubeconfig")
            op = OperatorProcess(sup, sa, env.prometheus.url)
            op.start()
            _apply(env, [_policy()])
            time.sleep(15)  # a few evaluations on healthy traffic first
            mitigated, _ = self.phase(
                "run 2/2, stickyguard on (mitigated)", core, traefik, traefik.port
            )
            report = {
                "unmitigated": unmitigated,
                "mitigated": mitigated,
                "settings": self.s.__dict__,
                "elapsed_seconds": round(time.monotonic() - t0, 1),
            }
            return report
        finally:
            sup.stop_all()
            env.down()


def hurt_timeline(
    first_hurt: list[float], users: int, end: float, step: float = 5.0
) -> list[list[float]]:
    """[[t, % of users hurt so far], ...] every `step` seconds until `end`: a small, plottable
    summary of when each user first got a bad answer."""
    times = sorted(first_hurt)
    out: list[list[float]] = []
    i, t = 0, 0.0
    while True:
        while i < len(times) and times[i] <= t:
            i += 1
        out.append([round(t, 1), round(100.0 * i / max(1, users), 2)])
        if t >= end:
            return out
        t = min(end, t + step)
