"""The gate endpoint for progressive-delivery tools, served by every replica.

Every replica answers the same: the verdicts come from the policies' status (`status.rollout`,
written by the leader every evaluation of a guarded policy) as kopf's watch delivers it to each
replica, never from one replica's memory. A standby therefore answers what the leader decided,
a deleted policy is forgotten with its watch event, and a replica that lost its lease does not
keep answering its own last verdict.

POST /gate/flagger                     Flagger `rollout` webhook (body {name, namespace, phase,
                                       metadata}; the policy is metadata.policy, else the canary's
                                       name): 412 only when the verdict is `fail` (a failed check),
                                       200 for pass, inconclusive, fleet_wide; 503 when no
                                       operator evaluated it lately; 404 for an unknown policy.
POST /gate/flagger/confirm-promotion   Flagger `confirm-promotion` webhook: 200 only for a real
                                       `pass`; anything else answers 412, so Flagger waits.
GET  /gate/argo/NAMESPACE/NAME         Argo Rollouts web metric: always JSON with `verdict`
                                       (pass|fail|inconclusive|fleet_wide|unknown) and figures.
GET  /healthz                          readiness of the gate.

A policy not in this replica's cache yet (a replica just started, whose watch has not listed
it) is read from the API server once for the request (`lookup`), so that no replica answers
"unknown policy" where another answers its verdict.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from stickyguard.controller.state import PolicyKey, Published
from stickyguard.core.names import parse_rfc3339

# A verdict older than this many evaluation intervals is stale: fail closed for Flagger.
STALE_INTERVALS = 3
ROLLOUT, PROMOTION, ARGO = "rollout", "confirm-promotion", "argo"
_FIGURES = (
    "newCohort",
    "oldCohort",
    "pValue",
    "evidence",
    "evidenceThreshold",
    "podShare",
    "sessionShare",
    "newHash",
    "revision",
    "containment",  # the contained version and what to revert in Git
)


def gate_answer(
    policies: Mapping[PolicyKey, Published],
    namespace: str,
    name: str,
    kind: str,
    now: float,
) -> tuple[int, dict[str, Any]]:
    """(HTTP status, JSON body) for a gate request (pure)."""
    entry = policies.get((namespace, name))
    if entry is None:
        return 404, {
            "verdict": "unknown",
            "pass": False,
            "reason": f"no StickyPolicy {namespace}/{name}",
        }
    section = entry.status.get("rollout") or {}
    evaluated = parse_rfc3339(entry.status.get("lastEvaluationTime"))
    age = None if evaluated is None else now - evaluated
    body: dict[str, Any] = {
        "verdict": section.get("verdict") or "unknown",
        "reason": section.get("reason") or "",
        **{k: section[k] for k in _FIGURES if k in section},
        "age": None if age is None else round(age, 1),
    }
    if not entry.guarded:
        body.update(verdict="unknown", reason="the policy has no spec.workloadRef to judge")
    elif age is None or not section:
        body.update(verdict="unknown", reason="not evaluated yet")
    elif age > STALE_INTERVALS * entry.interval:
        body.update(
            verdict="unknown", reason=f"the last evaluation is {age:.0f}s old: is an operator up?"
        )
    verdict = body["verdict"]
    body["pass"] = verdict in ("pass", "inconclusive", "fleet_wide")
    if kind == ARGO:
        return 200, body
    if verdict == "unknown":
        return 503, body
    if kind == PROMOTION:
        # Promotion needs evidence: only a real pass promotes; otherwise Flagger waits.
        body["pass"] = verdict == "pass"
        return (200 if verdict == "pass" else 412), body
    return (412 if verdict == "fail" else 200), body


Lookup = Callable[[str, str], Published | None]
# A name the API server said does not exist is not asked for again this long: the gate needs no
# credentials, and each lookup is a request made with the operator's own identity.
MISS_SECONDS = 5.0
_MISSES_KEPT = 1000
_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")


def limited(lookup: Lookup) -> Lookup:
    """`lookup` for well-formed names only (DNS-1123), with misses remembered for
    MISS_SECONDS."""
    misses: dict[PolicyKey, float] = {}
    guard = threading.Lock()

    def look(namespace: str, name: str) -> Published | None:
        if not (_NAME.fullmatch(namespace) and _NAME.fullmatch(name)):
            return None
        key, now = (namespace, name), time.monotonic()
        with guard:
            if misses.get(key, -math.inf) > now:
                return None
        found = lookup(namespace, name)
        if found is None:
            with guard:
                if len(misses) >= _MISSES_KEPT:
                    misses.clear()
                misses[key] = now + MISS_SECONDS
        return found

    return look


def answer(
    policies: Mapping[PolicyKey, Published],
    lookup: Lookup | None,
    namespace: str,
    name: str,
    kind: str,
    now: float,
) -> tuple[int, dict[str, Any]]:
    """gate_answer, with a policy missing from the cache read through `lookup` (None: it does
    not exist; LookupError: it could not be read, answered as unknown)."""
    if (namespace, name) not in policies and lookup is not None:
        try:
            found = lookup(namespace, name)
        except LookupError as e:
            body = {"verdict": "unknown", "pass": False, "reason": f"cannot read the policy: {e}"}
            return (200 if kind == ARGO else 503), body
        if found is not None:
            policies = {(namespace, name): found}
    return gate_answer(policies, namespace, name, kind, now)


class GateServer:
    def __init__(
        self,
        policies: Callable[[], Mapping[PolicyKey, Published]],
        port: int,
        addr: str = "0.0.0.0",
        lookup: Lookup | None = None,
    ) -> None:
        snapshot = policies
        lookup = limited(lookup) if lookup is not None else None

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
                    self._reply(*answer(snapshot(), lookup, parts[2], parts[3], ARGO, time.time()))
                elif parts == ["healthz"]:
                    self._reply(200, {"ok": True})
                else:
                    self._reply(
                        404,
                        {
                            "error": "routes: POST /gate/flagger, POST "
                            "/gate/flagger/confirm-promotion, GET /gate/argo/NAMESPACE/NAME"
                        },
                    )

            def do_POST(self) -> None:
                route = self.path.split("?", 1)[0].rstrip("/")
                kinds = {"/gate/flagger": ROLLOUT, "/gate/flagger/confirm-promotion": PROMOTION}
                if route not in kinds:
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
                self._reply(*answer(snapshot(), lookup, namespace, name, kinds[route], time.time()))

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
