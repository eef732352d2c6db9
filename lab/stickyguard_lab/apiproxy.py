"""A recording, fault-injecting HTTP proxy in front of the real kube-apiserver, for fault tests
(the apiserver twin of faultproxy.py).

The operator gets a kubeconfig whose server is this proxy's plain-HTTP loopback address (with
its usual bearer token); the proxy forwards every request over HTTPS to the apiserver, streaming
answers (watches included). It records every write (method, path, HTTP status, the wall and
monotonic time it arrived) and can fail the N-th write that matches a rule with a 503 Status
instead of forwarding it: a write that never landed, as when the apiserver or the network fails
mid-action.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web

from stickyguard_lab.procs import free_port

WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "upgrade"}


@dataclass(frozen=True)
class Write:
    method: str
    path: str
    status: int  # 0: failed on purpose (never forwarded)
    wall: float  # time.time() when it arrived
    arrived: float  # time.monotonic() when it arrived


class ApiProxy:
    def __init__(self, upstream: str, ca_file: Path) -> None:
        self.upstream = upstream.rstrip("/")
        self.ca_file = ca_file
        self.writes: list[Write] = []
        self._rule: Callable[[str, str], bool] | None = None
        self._fail_at = 0
        self._matched = 0
        self.failed: list[Write] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._port = 0
        self._session: aiohttp.ClientSession | None = None
        self._thread = threading.Thread(target=self._serve, name="apiproxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the apiserver proxy did not start")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def fail_nth(self, n: int, rule: Callable[[str, str], bool]) -> None:
        """Fail the n-th (1-based) write from now on for which rule(method, path) is true."""
        with self._lock:
            self._rule, self._fail_at, self._matched = rule, n, 0

    def clear_faults(self) -> None:
        with self._lock:
            self._rule, self._fail_at = None, 0

    def writes_since(self, wall: float) -> list[Write]:
        with self._lock:
            return [w for w in self.writes if w.wall >= wall]

    def close(self) -> None:
        if self._session is not None:
            done = asyncio.run_coroutine_threadsafe(self._session.close(), self._loop)
            with contextlib.suppress(Exception):
                done.result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def _should_fail(self, method: str, path: str) -> bool:
        with self._lock:
            if self._rule is None or method not in WRITE_METHODS or not self._rule(method, path):
                return False
            self._matched += 1
            return self._matched == self._fail_at

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        ctx = ssl.create_default_context(cafile=str(self.ca_file))

        async def handle(request: web.Request) -> web.StreamResponse:
            method, path = request.method, request.path_qs
            arrived, wall = time.monotonic(), time.time()
            body = await request.read()
            if self._should_fail(method, request.path):
                w = Write(method, request.path, 0, wall, arrived)
                with self._lock:
                    self.writes.append(w)
                    self.failed.append(w)
                status = {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "status": "Failure",
                    "message": "injected fault: this write never reached the apiserver",
                    "reason": "ServiceUnavailable",
                    "code": 503,
                }
                return web.json_response(status, status=503)
            headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
            session = self._session
            assert session is not None
            # The Kubernetes Python client sends JSON bodies without a Content-Type, which the
            # apiserver accepts; aiohttp would add application/octet-stream, which it refuses.
            skip = () if "Content-Type" in request.headers else ("Content-Type",)
            async with session.request(
                method,
                self.upstream + path,
                data=body or None,
                headers=headers,
                skip_auto_headers=skip,
                ssl=ctx,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
            ) as up:
                if method in WRITE_METHODS:
                    with self._lock:
                        self.writes.append(Write(method, request.path, up.status, wall, arrived))
                out = web.StreamResponse(status=up.status, reason=up.reason)
                for k, v in up.headers.items():
                    if k.lower() not in _HOP:
                        out.headers[k] = v
                await out.prepare(request)
                try:
                    async for chunk in up.content.iter_any():
                        await out.write(chunk)
                except (ConnectionResetError, aiohttp.ClientError):
                    pass  # the client went away (a watch ended): drop the upstream too
                await out.write_eof()
                return out

        async def start() -> None:
            self._session = aiohttp.ClientSession(auto_decompress=False)
            app = web.Application(client_max_size=64 * 1024 * 1024)
            app.router.add_route("*", "/{tail:.*}", handle)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            port = free_port()
            site = web.TCPSite(runner, "127.0.0.1", port)
            await site.start()
            self._port = port
            self._ready.set()

        self._loop.run_until_complete(start())
        self._loop.run_forever()


def describe(writes: list[Write]) -> str:
    return json.dumps([(w.method, w.path, w.status, round(w.wall, 2)) for w in writes], indent=0)
