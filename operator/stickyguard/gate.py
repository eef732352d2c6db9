"""The gate endpoint for progressive-delivery tools, served by the operator.

POST /gate/flagger              Flagger webhook (body {name, namespace, phase, metadata}); the
                                policy is metadata.policy, else the canary's name. 200 lets the
                                canary go on, 412 halts it (the new version degrades sessions),
                                503 when the verdict is stale, 404 for an unknown policy.
GET  /gate/argo/NAMESPACE/NAME  Argo Rollouts web metric: always JSON with `verdict`
                                (pass|fail|inconclusive|fleet_wide|unknown) and the figures.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# A verdict older than this many evaluation intervals is stale: fail closed for Flagger.
STALE_INTERVALS = 3


def gate_answer(
    verdicts: Mapping[tuple[str, str], dict[str, Any]],
    namespace: str,
    name: str,
    kind: str,
    now: float,
) -> tuple[int, dict[str, Any]]:
    """(HTTP status, JSON body) for a gate request (pure)."""
    entry = verdicts.get((namespace, name))
    if entry is None:
        return 404, {
            "verdict": "unknown",
            "pass": False,
            "reason": f"no StickyPolicy {namespace}/{name} is evaluated by stickyguard",
        }
    age = now - float(entry["time"])
    body = {**{k: v for k, v in entry.items() if k != "interval"}, "age": round(age, 1)}
    stale = age > STALE_INTERVALS * float(entry.get("interval", 15))
    if stale:
        body.update(verdict="unknown", reason=f"the last evaluation is {age:.0f}s old")
    body["pass"] = body["verdict"] in ("pass", "inconclusive", "fleet_wide")
    if kind == "argo":
        return 200, body
    if stale:
        return 503, body
    return (200 if body["pass"] else 412), body


class GateServer:
    def __init__(
        self, verdicts: Mapping[tuple[str, str], dict[str, Any]], port: int, addr: str = "0.0.0.0"
    ) -> None:
        verdict_map = verdicts

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                parts = self.path.split("?", 1)[0].strip("/").split("/")
                if len(parts) == 4 and parts[:2] == ["gate", "argo"]:
                    self._reply(*gate_answer(verdict_map, parts[2], parts[3], "argo", time.time()))
                elif parts == ["healthz"]:
                    self._reply(200, {"ok": True})
                else:
                    self._reply(
                        404, {"error": "routes: POST /gate/flagger, GET /gate/argo/NAMESPACE/NAME"}
                    )

            def do_POST(self) -> None:
                if self.path.split("?", 1)[0].rstrip("/") != "/gate/flagger":
                    self._reply(404, {"error": "unknown route"})
                    return
                try:
                    length = int(self.headers.get("Content-Length") or 0)
                    req = json.loads(self.rfile.read(length) or b"{}")
                    namespace = str(req["namespace"])
                    name = str((req.get("metadata") or {}).get("policy") or req["name"])
                except (ValueError, KeyError, TypeError) as e:
                    self._reply(
                        400,
                        {
                            "error": f"expected Flagger's JSON body "
                            f"{{name, namespace, phase, metadata}}: {e}"
                        },
                    )
                    return
                self._reply(*gate_answer(verdict_map, namespace, name, "flagger", time.time()))

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer((addr, port), Handler)
        self.server.daemon_threads = True

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> threading.Thread:
        t = threading.Thread(target=self.server.serve_forever, name="gate", daemon=True)
        t.start()
        return t
