"""An HTTP proxy in front of a real Prometheus that can misbehave on demand, for fault tests:
pass (forward), hang (accept, never answer), slow (answer after a delay), error (HTTP 500),
malformed (200 with broken JSON), wrong_shape (200 with valid JSON of the wrong shape),
refuse (close the connection without an answer), stale (forward, but ask for the answer as of
`lag` seconds ago: a Prometheus that stopped ingesting)."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODES = ("pass", "hang", "slow", "error", "malformed", "wrong_shape", "refuse", "stale")


def _shift_time(path: str, body: bytes | None, lag: float) -> tuple[str, bytes | None]:
    """Moves the `time` parameter (query string or form body) `lag` seconds into the past."""

    def shift(query: str) -> str:
        params = urllib.parse.parse_qsl(query, keep_blank_values=True)
        t = next((float(v) for k, v in params if k == "time"), time.time())
        kept = [(k, v) for k, v in params if k != "time"]
        return urllib.parse.urlencode([*kept, ("time", f"{t - lag:.3f}")])

    base, _, query = path.partition("?")
    if body is not None:
        return path, shift(body.decode()).encode()
    return f"{base}?{shift(query)}", body


class FaultProxy:
    def __init__(self, upstream: str, delay: float = 5.0) -> None:
        self.upstream = upstream.rstrip("/")
        self.mode = "pass"
        self.delay = delay
        self.lag = 60.0
        self.requests = 0
        self._release = threading.Event()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self, body: bytes | None) -> None:
                proxy.requests += 1
                mode = proxy.mode
                if mode == "hang":
                    proxy._release.wait(600)
                    self.close_connection = True
                    return
                if mode == "refuse":
                    self.close_connection = True
                    return
                if mode == "slow":
                    time.sleep(proxy.delay)
                if mode == "error":
                    self._reply(500, b'{"status":"error","error":"injected fault"}')
                    return
                if mode == "malformed":
                    self._reply(200, b'{"status":"success","data":{"resultType":"vector","res')
                    return
                if mode == "wrong_shape":
                    self._reply(
                        200,
                        b'{"status":"success","data":{"resultType":"matrix",'
                        b'"result":[{"metric":{"pod":"x"},"values":"NaN"}]}}',
                    )
                    return
                path = self.path
                if mode == "stale":
                    path, body = _shift_time(path, body, proxy.lag)
                req = urllib.request.Request(
                    proxy.upstream + path,
                    data=body,
                    method=self.command,
                    headers={
                        k: v
                        for k, v in self.headers.items()
                        if k.lower() in ("content-type", "accept")
                    },
                )
                try:
                    with urllib.request.urlopen(req, timeout=30) as r:
                        self._reply(r.status, r.read(), r.headers.get("Content-Type"))
                except urllib.error.HTTPError as e:
                    self._reply(e.code, e.read(), e.headers.get("Content-Type"))
                except OSError:
                    self._reply(502, b'{"status":"error","error":"upstream unreachable"}')

            def _reply(self, status: int, data: bytes, ctype: str | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype or "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._serve(None)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self._serve(self.rfile.read(length))

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def set(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self.mode = mode
        if mode != "hang":
            self._release.set()  # let hung requests go
            self._release = threading.Event()

    def close(self) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()
