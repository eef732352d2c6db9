"""Traefik, the real ingress controller, in the lab's pod network.

Traefik v3 (built by hack/build-peers.sh) runs out of cluster with the lab's kubeconfig, inside
the pod network (stickyguard_lab.netns), where it connects to pods at their EndpointSlice
addresses and reaches the apiserver through the relay testenv starts. Its Kubernetes Ingress
provider does what it does in a cluster: it skips endpoints that are not serving and, for a
Service annotated `traefik.ingress.kubernetes.io/service.sticky.cookie: "true"`, pins each client
with a cookie naming its server, re-pinning a client whose server left the list.

Users reach the `web` entrypoint, and tests the `traefik` entrypoint (API, ping, metrics), at the
same ports on the host's loopback through a relay. The providers' throttle is short (default 2 s)
so an EndpointSlice change becomes a reload at once.
"""

from __future__ import annotations

import json
import os
import re
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stickyguard_lab.binaries import find_peer
from stickyguard_lab.kubectl import apply
from stickyguard_lab.netns import start_relay
from stickyguard_lab.peerproc import out_of_cluster_env
from stickyguard_lab.procs import Child, Supervisor, free_port
from stickyguard_lab.testenv import LabEnv

INGRESS_CLASS = "traefik"
# What Traefik's Helm chart installs with it: the IngressClass its provider serves.
INGRESS_CLASS_OBJECT = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "IngressClass",
    "metadata": {"name": INGRESS_CLASS},
    "spec": {"controller": "traefik.io/ingress-controller"},
}
_RELOADS = re.compile(r"^traefik_config_reloads_total(?:\{[^}]*\})? (\S+)$", re.M)


@dataclass
class Traefik:
    port: int  # `web` entrypoint, the same port in the pod network and on host loopback
    admin_port: int  # `traefik` entrypoint: /api, /ping, /metrics
    child: Child
    access_log: Path | None = None  # JSON access log, one line per request

    def access_entries(self) -> list[dict[str, Any]]:
        """The access log so far (what Traefik says it answered, and what its backend did)."""
        if self.access_log is None or not self.access_log.exists():
            return []
        return [json.loads(line) for line in self.access_log.read_text().splitlines() if line]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _get(self, path: str) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}{path}", timeout=5) as r:
            return str(r.read().decode())

    def services(self) -> list[dict[str, Any]]:
        """Traefik's HTTP services as it runs them now (GET /api/http/services)."""
        result: list[dict[str, Any]] = json.loads(self._get("/api/http/services"))
        return result

    def servers(self, namespace: str, service: str) -> list[str]:
        """Server URLs of the load balancer Traefik built for a Kubernetes Service."""
        prefix = f"{namespace}-{service}-"
        return sorted(
            s["url"]
            for svc in self.services()
            if svc.get("provider") == "kubernetes" and svc["name"].startswith(prefix)
            for s in (svc.get("loadBalancer") or {}).get("servers") or []
        )

    def reloads(self) -> int:
        """traefik_config_reloads_total: how many configurations Traefik has applied."""
        m = _RELOADS.search(self._get("/metrics"))
        return int(float(m.group(1))) if m else 0


def start_traefik(
    env: LabEnv,
    sup: Supervisor,
    throttle: str = "100ms",
    log_level: str = "INFO",
    access_log: bool = False,
) -> Traefik:
    """Starts Traefik in env's pod network (testenv.up(runtime="demo") creates it) and waits
    until it answers on the host side."""
    net = env.pod_network
    if net is None:
        raise RuntimeError("Traefik needs the pod network: testenv.up(..., runtime='demo')")
    binary = find_peer("traefik")
    apply(env.binaries.kubectl, env.kubeconfig, [INGRESS_CLASS_OBJECT])
    # Free on the host, where the relay listens; the pod network has only what the lab put there.
    port, admin = free_port(), free_port()
    argv: list[str | os.PathLike[str]] = [
        binary,
        "--global.checknewversion=false",
        "--global.sendanonymoususage=false",
        "--providers.kubernetesingress=true",
        f"--providers.providersthrottleduration={throttle}",
        f"--entrypoints.web.address=127.0.0.1:{port}",
        f"--entrypoints.traefik.address=127.0.0.1:{admin}",
        "--api=true",
        "--api.insecure=true",
        "--api.dashboard=false",  # the module build embeds no web UI
        "--log.nocolor=true",
        "--ping=true",
        "--metrics.prometheus=true",
        f"--log.level={log_level}",
    ]
    log_path = sup.state_dir / "traefik-access.json" if access_log else None
    if log_path:
        argv += ["--accesslog=true", f"--accesslog.filepath={log_path}", "--accesslog.format=json"]
    # Out of cluster: the kubeconfig, not the in-cluster service variables.
    child = sup.start(
        "traefik",
        net.command(argv),
        env=out_of_cluster_env(env),
    )
    start_relay(sup, net, "traefik-relay", out=[("127.0.0.1", port), ("127.0.0.1", admin)])
    traefik = Traefik(port, admin, child, log_path)
    sup.wait_until(child, lambda: traefik._get("/ping") == "OK", "Traefik /ping", timeout=60)
    return traefik
