"""The demo app: one real process per pod, an HTTP service with sessions and a fault switch.

GET /            answers "ok", or "degraded" (still HTTP 200: a quality bug) with the
                 probability set by the fault switch; a `sid` cookie identifies the session
GET /fault?rate= sets the share of degraded answers (0 turns the fault off)
GET /metrics     app_requests_total{code}, app_answers_total{quality}, and the gauges
                 app_sessions_active / app_sessions_degraded (sessions seen in the last minute,
                 and those of them that got a degraded answer)
"""

from __future__ import annotations

import argparse
import random
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

ACTIVE_SECONDS = 60.0


class App:
    def __init__(self, pod: str, namespace: str, app: str) -> None:
        self.pod = pod
        self.labels = f'namespace="{namespace}",app="{app}",pod="{pod}"'
        self.rate = 0.0
        self.ok = self.degraded = 0
        self.seen: dict[str, float] = {}
        self.hurt: set[str] = set()
        self.lock = threading.Lock()
        self.rng = random.Random()

    def answer(self, sid: str) -> str:
        with self.lock:
            now = time.monotonic()
            self.seen[sid] = now
            bad = self.rng.random() < self.rate
            if bad:
                self.degraded += 1
                self.hurt.add(sid)
            else:
                self.ok += 1
            return "degraded" if bad else "ok"

    def metrics(self) -> str:
        with self.lock:
            now = time.monotonic()
            for sid in [s for s, t in self.seen.items() if now - t > ACTIVE_SECONDS]:
                del self.seen[sid]
                self.hurt.discard(sid)
            lines = [
                "# TYPE app_requests_total counter",
                f'app_requests_total{{{self.labels},code="200"}} {self.ok + self.degraded}',
                "# TYPE app_answers_total counter",
                f'app_answers_total{{{self.labels},quality="ok"}} {self.ok}',
                f'app_answers_total{{{self.labels},quality="degraded"}} {self.degraded}',
                "# TYPE app_sessions_active gauge",
                f"app_sessions_active{{{self.labels}}} {len(self.seen)}",
                "# TYPE app_sessions_degraded gauge",
                f"app_sessions_degraded{{{self.labels}}} {len(self.hurt)}",
            ]
        return "\n".join(lines) + "\n"


def make_handler(app: App) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _send(self, body: str, cookie: str | None = None) -> None:
            data = body.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("X-Pod", app.pod)
            self.send_header("Content-Length", str(len(data)))
            if cookie:
                self.send_header("Set-Cookie", f"sid={cookie}; Path=/")
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path == "/metrics":
                self._send(app.metrics())
            elif url.path == "/fault":
                app.rate = float(parse_qs(url.query).get("rate", ["0"])[0])
                self._send(f"fault rate {app.rate}\n")
            elif url.path == "/healthz":
                self._send("ok\n")
            else:
                cookies = dict(
                    c.strip().split("=", 1)
                    for c in (self.headers.get("Cookie") or "").split(";")
                    if "=" in c
                )
                sid = cookies.get("sid")
                new = sid is None
                sid = sid or uuid.uuid4().hex
                self._send(app.answer(sid) + "\n", sid if new else None)

        def log_message(self, *args: Any) -> None:
            return

    return Handler


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--listen", required=True, help="HOST:PORT")
    p.add_argument("--pod", required=True)
    p.add_argument("--namespace", required=True)
    p.add_argument("--app", default="shop")
    args = p.parse_args(argv)
    host, port = args.listen.rsplit(":", 1)
    # A real server's listen backlog, not socketserver's 5: a proxy opening many connections
    # at once must not see dropped SYNs.
    ThreadingHTTPServer.request_queue_size = 128
    server = ThreadingHTTPServer(
        (host, int(port)), make_handler(App(args.pod, args.namespace, args.app))
    )
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
