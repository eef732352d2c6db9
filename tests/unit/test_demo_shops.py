"""The demo's two shops side by side: distinct namespaces and host names, one guarded, and users
who reach each by its host name (the load generator against a local HTTP server)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from stickyguard_lab.demo import SHOPS, _policy, _workload
from stickyguard_lab.loadgen import LoadResult, run_load


def test_shops_differ_by_namespace_and_host_and_one_is_guarded() -> None:
    assert len({s.namespace for s in SHOPS}) == len({s.host for s in SHOPS}) == len(SHOPS) == 2
    assert [s.run for s in SHOPS if s.guarded] == ["mitigated"]
    assert [s.run for s in SHOPS if not s.guarded] == ["unmitigated"]


def test_each_shops_ingress_routes_its_own_host_to_its_own_service() -> None:
    for shop in SHOPS:
        objs = _workload(shop)
        assert {o["metadata"].get("namespace", o["metadata"]["name"]) for o in objs} == {
            shop.namespace
        }
        (ingress,) = [o for o in objs if o["kind"] == "Ingress"]
        assert [r["host"] for r in ingress["spec"]["rules"]] == [shop.host]
        assert _policy(shop.namespace)["metadata"]["namespace"] == shop.namespace


@pytest.fixture
def server() -> Iterator[tuple[int, list[str]]]:
    hosts: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hosts.append(self.headers.get("Host", ""))
            body = b"degraded" if self.headers.get("Host") == "bad.example" else b"ok"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Set-Cookie", "SRV=a; Path=/")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd.server_address[1], hosts
    httpd.shutdown()
    httpd.server_close()


def test_users_reach_a_shop_by_its_host_name(server: tuple[int, list[str]]) -> None:
    port, hosts = server

    def visit(host: str) -> LoadResult:
        return run_load(
            "127.0.0.1", port, users=4, duration=0.2, sessions=1, requests=2, interval=0.01,
            vhost=host, progress=False,
        )  # fmt: skip

    bad, good = visit("bad.example"), visit("good.example")
    assert set(hosts) == {"bad.example", "good.example"}
    assert (bad.requests, bad.users_affected_pct) == (8, 100.0)
    assert (good.requests, good.users_affected_pct) == (8, 0.0)
