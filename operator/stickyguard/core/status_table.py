"""Compact tables of StickyPolicy objects for `stickyguard status` / `kubectl sticky status`
(pure: plain dicts in, text out)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from stickyguard.core.names import parse_rfc3339


def _pct(value: Any) -> str:
    return "-" if value is None else f"{float(value):.1%}"


def _age(ts: str | None, now: float) -> str:
    t = parse_rfc3339(ts)
    if t is None:
        return "-"
    s = max(0, int(now - t))
    return f"{s}s" if s < 120 else f"{s // 60}m" if s < 7200 else f"{s // 3600}h"


def _cond(obj: Mapping[str, Any], ctype: str) -> Mapping[str, Any]:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return dict(c)
    return {}


def table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def _state(obj: Mapping[str, Any]) -> str:
    ready = _cond(obj, "Ready")
    if ready.get("status") == "False":
        return str(ready.get("reason") or "NotReady")
    metrics = _cond(obj, "MetricsAvailable")
    if metrics.get("status") == "False":
        return str(metrics.get("reason") or "MetricsUnavailable")
    status = obj.get("status") or {}
    gen = (obj.get("metadata") or {}).get("generation")
    if not status:
        return "Pending"
    if gen is not None and status.get("observedGeneration") != gen:
        return "Stale"
    return "OK"


def render(policies: Sequence[Mapping[str, Any]], now: float, wide: bool = False) -> str:
    """One line per policy, then one line per drained pod and, with `wide`, what is blocked."""
    if not policies:
        return "No StickyPolicies found."
    rows = [
        [
            "NAMESPACE",
            "NAME",
            "MODE",
            "CLASS",
            "READY/PODS",
            "DRAINED",
            "BAD REQ",
            "AFFECTED",
            "AMPLIF",
            "STATE",
            "EVALUATED",
        ]
    ]
    drained = [["NAMESPACE", "POLICY", "POD", "NODE", "PHASE", "SINCE", "REASON"]]
    blocked = [["NAMESPACE", "POLICY", "BLOCKED"]]
    contained = [["NAMESPACE", "POLICY", "DEPLOYMENT", "CONTAINED", "OUT/PODS", "REVERT TO"]]
    notes: list[str] = []
    for obj in sorted(policies, key=lambda o: (o["metadata"]["namespace"], o["metadata"]["name"])):
        ns, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        pods, impact = status.get("pods") or {}, status.get("impact") or {}
        amp = impact.get("amplification")
        rows.append(
            [
                ns,
                name,
                str((spec.get("actions") or {}).get("mode") or "DryRun"),
                str(status.get("classification") or "-"),
                f"{pods.get('ready', '-')}/{pods.get('total', '-')}",
                str(pods.get("drained", 0)),
                _pct(impact.get("badRequestRatio")),
                _pct(impact.get("affectedSessionRatio")),
                "-" if amp is None else f"x{float(amp):.1f}",
                _state(obj),
                _age(status.get("lastEvaluationTime"), now),
            ]
        )
        for d in status.get("drained") or []:
            drained.append(
                [
                    ns,
                    name,
                    str(d.get("pod", "")),
                    str(d.get("node") or "-"),
                    str(d.get("phase", "")),
                    _age(d.get("since"), now),
                    str(d.get("reason", "")),
                ]
            )
        blocked += [[ns, name, str(b)] for b in status.get("blocked") or []]
        rollout = status.get("rollout") or {}
        c = rollout.get("containment")
        if c:
            to = c.get("revertTo") or {}
            contained.append(
                [
                    ns,
                    name,
                    str(rollout.get("workload", "-")),
                    f"{c.get('version', '?')} (revision {c.get('revision', '?')})",
                    f"{c.get('contained', 0)}/{c.get('pods', 0)}",
                    f"revision {to['revision']} ({', '.join(to.get('images') or [])})"
                    if to
                    else "-",
                ]
            )
            notes.append(f"{ns}/{name}: {c.get('message', '')}")
        refused = _cond(obj, "GitOpsConflict")
        if refused.get("status") == "True":
            notes.append(f"{ns}/{name}: {refused.get('message', '')}")
    out = [table(rows)]
    if len(drained) > 1:
        out.append(table(drained))
    if len(contained) > 1:
        out.append(table(contained))
    if notes:
        out.append("\n".join(notes))
    if wide and len(blocked) > 1:
        out.append(table(blocked))
    return "\n\n".join(out)
