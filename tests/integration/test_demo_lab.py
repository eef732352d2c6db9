"""The demo's real pieces: pod processes run by the node agent in the lab's pod network, at their
own IPs; Traefik's sticky cookies following EndpointSlices; Prometheus scraping the pods."""

from __future__ import annotations

import http.client
import json
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from stickyguard.core.names import SERVING
from stickyguard_lab import testenv
from stickyguard_lab.binaries import REPO_ROOT, find_peer
from stickyguard_lab.kubectl import apply
from stickyguard_lab.netns import host_connect
from stickyguard_lab.nodeagent import loopback_for
from stickyguard_lab.procs import Supervisor
from stickyguard_lab.traefik import start_traefik
from support import wait_for

pytestmark = pytest.mark.integration
EXAMPLES = REPO_ROOT / "examples" / "traefik"


@pytest.fixture(scope="module")
def demo_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[testenv.LabEnv]:
    env = testenv.up(tmp_path_factory.mktemp("demo") / "env", runtime="demo")
    yield env
    env.down()


def get(host: str, port: int, cookies: dict[str, str]) -> tuple[str, str, bool]:
    """One request with the cookie jar; (pod, body, whether the ingress set a new cookie)."""
    conn = http.client.HTTPConnection(host, port, timeout=5)
    conn.request("GET", "/", headers={"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())})
    resp = conn.getresponse()
    body = resp.read().decode()
    new = False
    for k, v in resp.getheaders():
        if k.lower() == "set-cookie":
            name, _, rest = v.partition("=")
            cookies[name] = rest.split(";", 1)[0]
            new = new or name == "shop_route"
    conn.close()
    return resp.getheader("X-Pod") or "", body.strip(), new


def ready_ips(core: client.CoreV1Api, ns: str) -> dict[str, str]:
    return {
        p.metadata.name: p.status.pod_ip
        for p in core.list_namespaced_pod(ns).items
        if p.status.pod_ip
        and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
    }


def test_pods_answer_at_their_own_ips_inside_the_pod_network(demo_env: testenv.LabEnv) -> None:
    api = config.new_client_from_config(config_file=str(demo_env.kubeconfig))
    core = client.CoreV1Api(api)
    kubectl_bin, kc = demo_env.binaries.kubectl, demo_env.kubeconfig
    core.create_namespace({"metadata": {"name": "podnet"}})
    apply(kubectl_bin, kc, EXAMPLES / "deployment-servicelabel.yaml", namespace="podnet")
    ips = wait_for(
        lambda: len(r := ready_ips(core, "podnet")) == 4 and r, timeout=60, what="4 pods"
    )
    net = demo_env.pod_network
    assert net is not None
    for pod, ip in ips.items():
        assert ip.startswith("198.18."), "EndpointSlice-valid addresses, not loopback"
        # Inside the pod network the pod's own address answers...
        s = net.connect((ip, 8080))
        s.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
        assert f"X-Pod: {pod}".encode() in s.recv(4096)
        s.close()
        # ...and host tools use its loopback twin, a forward into the pod network.
        with urllib.request.urlopen(f"http://{loopback_for(ip)}:8080/healthz", timeout=5) as r:
            assert r.headers["X-Pod"] == pod
        # The lab never dials a pod address from the host (it would leave the machine).
        with pytest.raises(ValueError):
            host_connect((ip, 8080))
    # Prometheus scrapes every pod process.
    q = urllib.parse.urlencode({"query": 'count(app_requests_total{namespace="podnet"})'})

    def scraped() -> bool:
        with urllib.request.urlopen(f"{demo_env.prometheus.url}/api/v1/query?{q}") as r:
            res = json.load(r)["data"]["result"]
        return bool(res) and float(res[0]["value"][1]) == 4

    wait_for(scraped, timeout=30, what="4 pods scraped")


def test_traefik_sticky_cookies_follow_endpointslices(
    demo_env: testenv.LabEnv, tmp_path: Path
) -> None:
    find_peer("traefik")
    api = config.new_client_from_config(config_file=str(demo_env.kubeconfig))
    core = client.CoreV1Api(api)
    kubectl_bin, kc = demo_env.binaries.kubectl, demo_env.kubeconfig
    core.create_namespace({"metadata": {"name": "shop"}})
    for f in ("deployment-servicelabel.yaml", "service-servicelabel.yaml", "ingress.yaml"):
        apply(kubectl_bin, kc, EXAMPLES / f, namespace="shop")
    sup = Supervisor(tmp_path)
    try:
        traefik = start_traefik(demo_env, sup)
        wait_for(
            lambda: len(traefik.servers("shop", "shop")) == 4, timeout=60, what="4 pods in Traefik"
        )
        cookies: dict[str, str] = {}
        pinned = {get("127.0.0.1", traefik.port, cookies)[0] for _ in range(8)}
        assert len(pinned) == 1, "the sticky cookie pins the session to one pod"
        assert "shop_route" in cookies
        first = pinned.pop()
        # Drain the pod the way ServiceLabel does: it leaves the Service's EndpointSlice...
        core.patch_namespaced_pod(first, "shop", {"metadata": {"labels": {SERVING: None}}})
        # ...Traefik drops the server, and the session gets a new cookie for another pod.
        moved = wait_for(
            lambda: (a := get("127.0.0.1", traefik.port, cookies))[0] != first and a,
            timeout=15,
            what="session re-pinned",
        )
        assert moved[2], "re-pinned with a new cookie"
        assert {get("127.0.0.1", traefik.port, cookies)[0] for _ in range(5)} == {moved[0]}
    finally:
        sup.stop_all()
