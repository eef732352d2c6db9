"""A synthetic per-pod request exporter for tests and benchmarks.

It follows the pods of a namespace (by label selector) and exports, for each, the counters a
real app behind the `generic` preset would: http_requests_total{namespace, app, pod, code},
plus session gauges. Traffic reaches only pods that serve (Ready, and carrying the
stickyguard.dev/serving label when they have one), as behind a real Service; each pod's bad
ratio (and, by label, its request rate) can be set at any time. Counters are integrated
exactly over time, so they are monotonic and their rates are what was asked.

With `quality=True` bad answers are HTTP 200 with a wrong body, as in the demo app: every
request counts as code="200" and app_answers_total{..., quality="ok"|"degraded"} tells them
apart, so only a quality signal sees them (an HTTP success rate stays at 100%).
`series_labels` copies pod labels onto every series under their sanitized names, as
Prometheus' Kubernetes discovery with a labelmap would (app.kubernetes.io/name ->
app_kubernetes_io_name).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from kubernetes import client

from stickyguard.core.names import SERVING
from stickyguard.core.promql import escape_value, sanitize_label_name
from stickyguard_lab.procs import free_port
from stickyguard_lab.prom import write_targets


@dataclass
class _Pod:
    total: float = 0.0
    bad: float = 0.0
    last: float = 0.0
    serving: bool = False
    labels: dict[str, str] = field(default_factory=dict)


class SyntheticExporter:
    def __init__(
        self,
        namespace: str,
        app: str,
        *,
        rps: float = 20.0,
        default_ratio: float = 0.001,
        sessions_per_pod: float = 50.0,
        quality: bool = False,
        series_labels: Sequence[str] = (),
    ) -> None:
        self.namespace, self.app = namespace, app
        self.rps, self.default_ratio = rps, default_ratio
        self.sessions_per_pod = sessions_per_pod
        self.quality, self.series_labels = quality, tuple(series_labels)
        self.ratios: dict[str, float] = {}
        self.label_ratios: dict[tuple[str, str], float] = {}  # (label, value) -> bad ratio
        self.label_rps: dict[tuple[str, str], float] = {}  # (label, value) -> requests/s
        self.sessions: dict[str, float] = {}
        self.pods: dict[str, _Pod] = {}
        self.lock = threading.Lock()
        self.port = free_port()
        self._stop = threading.Event()
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = exporter.render().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def register(self, targets_dir: Any, name: str) -> None:
        write_targets(targets_dir, name, {self.address: {}})

    def _advance(self, now: float) -> None:
        for name, p in self.pods.items():
            dt = max(0.0, now - p.last)
            if p.serving:
                ratio = self._ratio(name, p)
                rps = next(
                    (r for (k, v), r in self.label_rps.items() if p.labels.get(k) == v), self.rps
                )
                p.total += rps * dt
                p.bad += rps * dt * ratio
            p.last = now

    def _ratio(self, name: str, pod: _Pod) -> float:
        if name in self.ratios:
            return self.ratios[name]
        for (key, value), ratio in self.label_ratios.items():
            if pod.labels.get(key) == value:
                return ratio
        return self.default_ratio

    def set_label_ratio(self, key: str, value: str, ratio: float) -> None:
        """Pods carrying label key=value (a new version, say) answer with this bad ratio."""
        with self.lock:
            self._advance(time.time())
            self.label_ratios[(key, value)] = ratio

    def set_label_rps(self, key: str, value: str, rps: float) -> None:
        """Pods carrying label key=value get this many requests per second (e.g. a canary
        that sticky sessions keep almost empty)."""
        with self.lock:
            self._advance(time.time())
            self.label_rps[(key, value)] = rps

    def set_ratio(self, pod: str, ratio: float) -> None:
        with self.lock:
            self._advance(time.time())
            self.ratios[pod] = ratio

    def set_pods(
        self, serving: Mapping[str, bool], labels: Mapping[str, Mapping[str, str]] | None = None
    ) -> None:
        """The pods that exist now, whether each receives traffic, and their labels."""
        with self.lock:
            now = time.time()
            self._advance(now)
            for name in list(self.pods):
                if name not in serving:
                    del self.pods[name]
            for name, is_serving in serving.items():
                pod = self.pods.setdefault(name, _Pod(last=now))
                pod.serving = is_serving
                pod.labels = dict((labels or {}).get(name, {}))

    def render(self) -> str:
        with self.lock:
            self._advance(time.time())
            lines = ["# TYPE http_requests_total counter", "# TYPE app_sessions_active gauge"]
            if self.quality:
                lines.append("# TYPE app_answers_total counter")
            for name, p in sorted(self.pods.items()):
                base = f'namespace="{self.namespace}",app="{self.app}",pod="{name}"'
                for key in self.series_labels:
                    if key in p.labels:
                        base += f",{sanitize_label_name(key)}={escape_value(p.labels[key])}"
                if self.quality:
                    lines.append(f'http_requests_total{{{base},code="200"}} {p.total:.6f}')
                    ok = p.total - p.bad
                    lines.append(f'app_answers_total{{{base},quality="ok"}} {ok:.6f}')
                    lines.append(f'app_answers_total{{{base},quality="degraded"}} {p.bad:.6f}')
                else:
                    lines.append(f'http_requests_total{{{base},code="200"}} {p.total - p.bad:.6f}')
                    lines.append(f'http_requests_total{{{base},code="503"}} {p.bad:.6f}')
                sessions = self.sessions.get(name, self.sessions_per_pod) if p.serving else 0.0
                lines.append(f"app_sessions_active{{{base}}} {sessions}")
        return "\n".join(lines) + "\n"

    def follow(
        self, core: client.CoreV1Api, label_selector: str, interval: float = 0.5
    ) -> threading.Thread:
        """Tracks the namespace's pods (and whether they serve) until stop()."""

        def loop() -> None:
            while not self._stop.is_set():
                try:
                    pods = core.list_namespaced_pod(
                        self.namespace, label_selector=label_selector
                    ).items
                    live = [p for p in pods if not p.metadata.deletion_timestamp]
                    self.set_pods(
                        {p.metadata.name: serves(p) for p in live},
                        {p.metadata.name: p.metadata.labels or {} for p in live},
                    )
                except Exception:  # the namespace may be going away at the end of a test
                    pass
                self._stop.wait(interval)

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()


def serves(pod: Any) -> bool:
    ready = any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
    labels = pod.metadata.labels or {}
    return ready and labels.get(SERVING, "true") == "true"
