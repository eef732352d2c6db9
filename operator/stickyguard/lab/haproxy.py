"""Debian's HAProxy as the demo's sticky load balancer.

Cookie persistence (`cookie SRV insert indirect nocache`) pins each session to a server slot;
`option redispatch` re-pins a session whose server left. A sync loop keeps the slots equal to
the Service's ready EndpointSlice endpoints through HAProxy's runtime API (set server addr /
state ready|maint), so a pod that stickyguard drains stops receiving its sessions at once.
HAProxy's own Prometheus exporter listens on a second port.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client

from stickyguard.lab.nodeagent import loopback_for
from stickyguard.lab.procs import Supervisor, free_port

SLOTS = 32
BACKEND = "app"


@dataclass
class HAProxy:
    port: int
    metrics_port: int
    socket_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self, cmd: str) -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(str(self.socket_path))
            s.sendall((cmd + "\n").encode())
            chunks = []
            while data := s.recv(65536):
                chunks.append(data)
        return b"".join(chunks).decode()


def start_haproxy(sup: Supervisor, haproxy_bin: str, work: Path) -> HAProxy:
    work = work.resolve()  # HAProxy reads a relative socket path as host:port
    work.mkdir(parents=True, exist_ok=True)
    port, metrics_port = free_port(), free_port()
    sock = work / "admin.sock"
    servers = "\n".join(f"  server s{i} 127.0.0.1:9 cookie s{i} disabled" for i in range(SLOTS))
    (work / "haproxy.cfg").write_text(f"""global
  stats socket {sock} mode 600 level admin
  maxconn 4096
defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  option redispatch
  retries 2
frontend web
  bind 127.0.0.1:{port}
  default_backend {BACKEND}
frontend metrics
  bind 127.0.0.1:{metrics_port}
  http-request use-service prometheus-exporter if {{ path /metrics }}
backend {BACKEND}
  balance roundrobin
  cookie SRV insert indirect nocache
{servers}
""")
    child = sup.start("haproxy", [haproxy_bin, "-db", "-f", str(work / "haproxy.cfg")])
    proxy = HAProxy(port, metrics_port, sock)
    sup.wait_until(
        child, lambda: sock.exists() and "Name" in proxy.command("show info"), "HAProxy runtime API"
    )
    return proxy


class EndpointSync:
    """Keeps HAProxy's server slots equal to the ready endpoints of one Service."""

    def __init__(
        self, proxy: HAProxy, discovery: client.DiscoveryV1Api, namespace: str, service: str
    ) -> None:
        self.proxy, self.discovery = proxy, discovery
        self.namespace, self.service = namespace, service
        self.slots: dict[str, int] = {}  # pod -> slot
        self.state: dict[int, tuple[str, bool]] = {}  # slot -> (address, ready)
        self._stop = threading.Event()

    def ready_endpoints(self) -> dict[str, tuple[str, bool]]:
        out: dict[str, tuple[str, bool]] = {}
        for s in self.discovery.list_namespaced_endpoint_slice(
            self.namespace, label_selector=f"kubernetes.io/service-name={self.service}"
        ).items:
            for ep in s.endpoints or []:
                if ep.target_ref and ep.addresses:
                    out[ep.target_ref.name] = (
                        loopback_for(ep.addresses[0]),
                        bool(ep.conditions and ep.conditions.ready),
                    )
        return out

    def sync_once(self) -> None:
        endpoints = self.ready_endpoints()
        for pod in [p for p in self.slots if p not in endpoints]:
            slot = self.slots.pop(pod)
            self._set(slot, self.state.get(slot, ("127.0.0.1", False))[0], False)
        for pod, (addr, ready) in sorted(endpoints.items()):
            if pod not in self.slots:
                free = sorted(set(range(SLOTS)) - set(self.slots.values()))
                if not free:
                    continue
                self.slots[pod] = free[0]
            self._set(self.slots[pod], addr, ready)

    def _set(self, slot: int, addr: str, ready: bool) -> None:
        if self.state.get(slot) == (addr, ready):
            return
        server = f"{BACKEND}/s{slot}"
        self.proxy.command(f"set server {server} addr {addr} port 8080")
        self.proxy.command(f"set server {server} state {'ready' if ready else 'maint'}")
        self.state[slot] = (addr, ready)

    def run(self, interval: float = 0.3) -> None:
        while not self._stop.is_set():
            try:
                self.sync_once()
            except Exception:  # the API may blink; the next pass catches up
                time.sleep(interval)
            self._stop.wait(interval)

    def start(self) -> threading.Thread:
        t = threading.Thread(target=self.run, daemon=True)
        t.start()
        return t

    def stop(self) -> None:
        self._stop.set()


def serving(proxy: HAProxy) -> list[dict[str, Any]]:
    """The backend's servers and their state, from `show servers state`."""
    lines = proxy.command(f"show servers state {BACKEND}").splitlines()
    header = next((ln for ln in lines if ln.startswith("#")), "")
    names = header.lstrip("# ").split()
    return [dict(zip(names, ln.split(), strict=False)) for ln in lines[2:] if ln.strip()]
