"""`make demo` / `stickyguard demo`: the incident replayed twice on a real local cluster.

Everything is real and local: the control plane and node agent (one demo-app process per pod, in
the lab's pod network), Prometheus scraping the pods, Traefik v3 in front (its Kubernetes Ingress
provider, sticky cookies from the Service's annotations), users with cookie jars, and the
operator. Two copies of the shop run side by side, each with six pods behind its own host name:
one without a policy (unmitigated), one with a StickyPolicy (mitigated). The same users (the
same seeded plan of arrivals) visit both at once, and at the same moment a quality bug (HTTP
200, wrong answer) hits one pod of each. Writes demo-report.json with the keys of
`stickyguard simulate`.
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
from stickyguard_lab.loadgen import LoadResult, run_load
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

APP, REPLICAS = "shop", 6
SUMMARY_KEYS = ("users_affected_pct", "requests_bad_pct", "detection_seconds", "pods_drained")
STICKY = "traefik.ingress.kubernetes.io/service.sticky.cookie"
ANSWERS = 'app_answers_total{namespace="{namespace}",{selector}'


@dataclass(frozen=True)
class Shop:
    """One copy of the shop: its report key, namespace, host name and whether a policy guards it."""

    run: str
    namespace: str
    host: str
    guarded: bool


SHOPS = (
    Shop("unmitigated", "demo-off", "off.demo.localhost", guarded=False),
    Shop("mitigated", "demo-on", "on.demo.localhost", guarded=True),
)


@dataclass(frozen=True)
class DemoSettings:
    # Seconds of load. A sticky fault keeps hurting new users for as long as it lasts, while a
    # drained one stops: what stickyguard saves grows with the incident's length (the report's
    # timeline gives the shares at every 5 s).
    duration: float = 600.0
    fault_at: float = 10.0  # seconds into the load
    fault_rate: float = 0.05  # share of the bad pod's answers that are degraded
    # 3 sessions each over the duration: about 18 requests/s per pod, still a quiet shop. The
    # detector needs about eight of the bad pod's bad answers, so detection time scales with
    # the pod's traffic: at 900 users (9 requests/s) a drain took a median 26 s, not 21 s
    # (bench/results/demo-seeds-900users.md).
    users: int = 1800
    seed: int = 1  # the users' plan of arrivals (the same in both shops)
    sessions: int = 3
    requests: int = 12
    interval: float = 1.0


def _workload(shop: Shop) -> list[dict[str, Any]]:
    labels = {"app": APP}
    ns = shop.namespace
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": APP, "namespace": ns},
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
                "namespace": ns,
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
            "metadata": {"name": APP, "namespace": ns},
            "spec": {
                "ingressClassName": "traefik",
                "rules": [
                    {
                        "host": shop.host,
                        "http": {
                            "paths": [
                                {
                                    "path": "/",
                                    "pathType": "Prefix",
                                    "backend": {"service": {"name": APP, "port": {"number": 8080}}},
                                }
                            ]
                        },
                    }
                ],
            },
        },
    ]


def _policy(namespace: str) -> dict[str, Any]:
    q = ANSWERS
    return {
        "apiVersion": API_VERSION,
        "kind": "StickyPolicy",
        "metadata": {"name": APP, "namespace": namespace},
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
                    "freshness": f"max by ({{pod_label}}) (timestamp({q}}}))",
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

    def pods(self, core: client.CoreV1Api, shop: Shop) -> list[Any]:
        return [
            p
            for p in core.list_namespaced_pod(shop.namespace, label_selector=f"app={APP}").items
            if not p.metadata.deletion_timestamp
        ]

    def wait_serving(self, core: client.CoreV1Api, traefik: Traefik, shop: Shop) -> list[Any]:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            pods = self.pods(core, shop)
            ready = [
                p
                for p in pods
                if p.status.pod_ip
                and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
            ]
            if len(ready) == REPLICAS and len(traefik.servers(shop.namespace, APP)) == REPLICAS:
                return sorted(ready, key=lambda p: p.metadata.name)
            time.sleep(0.5)
        raise LabError(
            f"the demo pods of {shop.namespace} did not all become ready behind Traefik within "
            f"120s: see the pod logs in {self.state_dir / 'env' / 'logs' / 'pods'} and "
            f"{self.state_dir / 'logs'}"
        )

    def set_fault(self, pod: Any, rate: float) -> None:
        _get(f"http://{loopback_for(pod.status.pod_ip)}:8080/fault?rate={rate}")

    def incident(self, core: client.CoreV1Api, traefik: Traefik) -> dict[str, dict[str, Any]]:
        """Both shops under the same users at once; the same fault on one pod of each at the
        same moment. Returns each shop's report, by its run's name."""
        victims = {}
        for shop in SHOPS:
            pods = self.wait_serving(core, traefik, shop)
            for p in pods:
                self.set_fault(p, 0.0)
            victims[shop.run] = pods[0]
        self.log(
            f"{len(SHOPS)} shops of {REPLICAS} pods serving; a quality bug on "
            + ", ".join(f"{v.metadata.namespace}/{v.metadata.name}" for v in victims.values())
            + f" ({self.s.fault_rate:.0%} of its answers) from t={self.s.fault_at:.0f}s"
        )
        onset: dict[str, float] = {}

        def inject() -> None:
            time.sleep(self.s.fault_at)
            for v in victims.values():
                self.set_fault(v, self.s.fault_rate)
            onset["t"] = time.time()

        results: dict[str, LoadResult] = {}

        def load(shop: Shop) -> None:
            results[shop.run] = run_load(
                "127.0.0.1",
                traefik.port,
                users=self.s.users,
                duration=self.s.duration,
                sessions=self.s.sessions,
                requests=self.s.requests,
                interval=self.s.interval,
                seed=self.s.seed,
                vhost=shop.host,
                label=shop.run,
            )

        threads = [threading.Thread(target=load, args=(shop,), daemon=True) for shop in SHOPS]
        load_start = time.time()
        threading.Thread(target=inject, daemon=True).start()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        load_seconds = time.time() - load_start
        missing = [shop.run for shop in SHOPS if shop.run not in results]
        if missing:
            raise LabError(f"the load of {', '.join(missing)} stopped early: see the output above")
        reports = {}
        for shop in SHOPS:
            reports[shop.run] = self.report(
                core,
                shop,
                results[shop.run],
                victims[shop.run].metadata.name,
                onset.get("t"),
                load_start,
                load_seconds,
            )
            self.log(
                f"{shop.run}: " + ", ".join(f"{k} {reports[shop.run][k]}" for k in SUMMARY_KEYS)
            )
        return reports

    def report(
        self,
        core: client.CoreV1Api,
        shop: Shop,
        result: LoadResult,
        victim: str,
        onset: float | None,
        load_start: float,
        load_seconds: float,
    ) -> dict[str, Any]:
        drained_at = None
        healthy_drained = set()
        drained = set()
        for e in core.list_namespaced_event(shop.namespace).items:
            if e.reason == "Drained" and e.involved_object.kind == "Pod":
                drained.add(e.involved_object.name)
                when = e.last_timestamp or e.event_time or e.first_timestamp
                if e.involved_object.name == victim and when is not None:
                    drained_at = when.timestamp()
                elif e.involved_object.name != victim:
                    healthy_drained.add(e.involved_object.name)
        detection = None if drained_at is None or onset is None else max(0.0, drained_at - onset)
        return {
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
            "fault_at_seconds": None if onset is None else round(onset - load_start, 1),
            "drained_at_seconds": None if drained_at is None else round(drained_at - load_start, 1),
            "load_seconds": round(load_seconds, 1),
            "users_hurt_timeline": hurt_timeline(result.first_hurt, result.users, load_seconds),
        }

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
            for shop in SHOPS:
                _apply(env, _workload(shop))
            api = config.new_client_from_config(config_file=str(env.kubeconfig))
            core = client.CoreV1Api(api)
            traefik = start_traefik(env, sup)
            write_targets(
                env.prometheus.targets_dir, "traefik", {f"127.0.0.1:{traefik.admin_port}": {}}
            )
            self.log(
                f"Traefik on {traefik.url} (cookie SRV; hosts "
                + ", ".join(f"{s.host} = {s.run}" for s in SHOPS)
                + f"), metrics on :{traefik.admin_port}"
            )
            self.log("starting stickyguard (as its ServiceAccount) with a policy on demo-on only")
            sa = service_account_kubeconfig(env, self.state_dir / "sa.kubeconfig")
            OperatorProcess(sup, sa, env.prometheus.url).start()
            _apply(env, [_policy(s.namespace) for s in SHOPS if s.guarded])
            time.sleep(15)  # a few evaluations on healthy traffic first
            runs = self.incident(core, traefik)
            return {
                **runs,
                "settings": self.s.__dict__,
                "elapsed_seconds": round(time.monotonic() - t0, 1),
            }
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
