"""The demo's real pieces: pod processes run by the node agent, HAProxy cookie persistence
following EndpointSlices, Prometheus scraping the pods."""

from __future__ import annotations

import http.client
import json
import shutil
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from stickyguard.lab import testenv
from stickyguard.lab.haproxy import EndpointSync, start_haproxy
from stickyguard.lab.procs import Supervisor
from support import service, wait_for

pytestmark = pytest.mark.integration
SERVING = "stickyguard.dev/serving"


@pytest.fixture(scope="module")
def demo_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[testenv.LabEnv]:
    env = testenv.up(tmp_path_factory.mktemp("demo") / "env", runtime="demo")
    yield env
    env.down()


def get(host: str, port: int, cookies: dict[str, str]) -> tuple[str, str]:
    conn = http.client.HTTPConnection(host, port, timeout=5)
    conn.request("GET", "/", headers={"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())})
    resp = conn.getresponse()
    body = resp.read().decode()
    for k, v in resp.getheaders():
        if k.lower() == "set-cookie":
            name, _, rest = v.partition("=")
            cookies[name] = rest.split(";", 1)[0]
    conn.close()
    return resp.getheader("X-Pod") or "", body.strip()


def test_sticky_sessions_follow_endpointslices(demo_env: testenv.LabEnv, tmp_path: Path) -> None:
    api = config.new_client_from_config(config_file=str(demo_env.kubeconfig))
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    core.create_namespace({"metadata": {"name": "shop"}})
    apps.create_namespaced_deployment(
        "shop",
        {
            "metadata": {"name": "shop"},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "shop"}},
                "template": {
                    "metadata": {"labels": {"app": "shop", SERVING: "true"}},
                    "spec": {"containers": [{"name": "app", "image": "demo"}]},
                },
            },
        },
    )
    core.create_namespaced_service("shop", service("shop", {"app": "shop", SERVING: "true"}))
    sup = Supervisor(tmp_path)
    proxy = start_haproxy(sup, shutil.which("haproxy") or "haproxy", tmp_path / "haproxy")
    sync = EndpointSync(proxy, client.DiscoveryV1Api(api), "shop", "shop")
    sync.start()
    try:
        wait_for(
            lambda: sum(1 for _, ready in sync.state.values() if ready) == 3,
            timeout=60,
            what="3 pods behind HAProxy",
        )
        cookies: dict[str, str] = {}
        pinned = {get("127.0.0.1", proxy.port, cookies)[0] for _ in range(8)}
        assert len(pinned) == 1, "cookie persistence pins the session to one pod"
        first = pinned.pop()
        # Drain the pod the way ServiceLabel does: it leaves the Service's EndpointSlice...
        core.patch_namespaced_pod(first, "shop", {"metadata": {"labels": {SERVING: None}}})
        # ...HAProxy puts its slot in maintenance, and the session is re-pinned elsewhere.
        moved = wait_for(
            lambda: (p := get("127.0.0.1", proxy.port, cookies)[0]) != first and p,
            timeout=15,
            what="session re-pinned",
        )
        assert {get("127.0.0.1", proxy.port, cookies)[0] for _ in range(5)} == {moved}
        # Prometheus scrapes every pod process.
        q = urllib.parse.urlencode({"query": 'count(app_requests_total{namespace="shop"})'})

        def scraped() -> bool:
            with urllib.request.urlopen(f"{demo_env.prometheus.url}/api/v1/query?{q}") as r:
                res = json.load(r)["data"]["result"]
            return bool(res) and float(res[0]["value"][1]) == 3

        wait_for(scraped, timeout=30, what="3 pods scraped")
    finally:
        sync.stop()
        sup.stop_all()
