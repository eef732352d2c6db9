"""Findings as JSON (the `analyze` contract in DESIGN.md) and as a table for people (pure)."""

from __future__ import annotations

from typing import Any

from stickyguard.core.analysis import CONCENTRATED, Findings, MetricsSnapshot

_ORDER = {"degraded": 0, "outlier": 1, "healthy": 2, "insufficient_data": 3, "no_data": 4}


def _round(x: float | None, digits: int = 6) -> float | None:
    return None if x is None else round(x, digits)


def verdict(f: Findings) -> str:
    """One line: what is wrong, where, and how many users it hurts."""
    judged = sum(1 for p in f.pods if p.status not in ("no_data", "insufficient_data"))
    if f.classification == CONCENTRATED and f.concentration:
        c = f.concentration
        where = f"{c.dimension}={c.value}"
        head = (
            f"concentrated on {where}: {len(f.outlier_pods)} of {judged} pods hold "
            f"{(f.bad_share_of_outliers or 0):.0%} of bad requests"
        )
    else:
        head = f"{f.classification.replace('_', ' ')}: {f.reason}"
    imp = f.impact
    if imp and imp.affected_session_ratio is not None and imp.bad_request_ratio > 0:
        prefix = "est. " if imp.method == "estimated" else ""
        amp = f" (×{imp.amplification:.0f})" if imp.amplification else ""
        head += (
            f"; {prefix}{imp.affected_session_ratio:.0%} of sessions affected vs "
            f"{imp.bad_request_ratio:.1%} of requests{amp}"
        )
    return head


def to_json(f: Findings, snap: MetricsSnapshot | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "pods": [
            {
                "pod": p.pod,
                "node": p.node,
                "version": p.version,
                "total": _round(p.total, 3),
                "bad": _round(p.bad, 3),
                "ratio": _round(p.ratio),
                "degraded": p.degraded,
                "status": p.status,
                "baseline": _round(p.baseline),
                "p_value": None if p.p_value is None else float(f"{p.p_value:.3g}"),
            }
            for p in f.pods
        ],
        "degraded_pods": list(f.degraded_pods),
        "fleet_bad_ratio": _round(f.fleet_bad_ratio),
        "classification": f.classification,
        "concentration": None
        if f.concentration is None
        else {
            "dimension": f.concentration.dimension,
            "value": f.concentration.value,
            "share": _round(f.concentration.share, 4),
        },
        "impact": None
        if f.impact is None
        else {
            "bad_request_ratio": _round(f.impact.bad_request_ratio),
            "affected_session_ratio": _round(f.impact.affected_session_ratio),
            "amplification": _round(f.impact.amplification, 3),
            "method": f.impact.method,
        },
        "verdict": verdict(f),
    }
    if snap is not None:
        out["time"] = snap.time
        out["window_seconds"] = snap.window_seconds
        out["queries"] = dict(snap.queries)
        out["problems"] = [str(p) for p in snap.problems]
        out["stale_pods"] = list(snap.stale_pods)
    return out


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def to_table(f: Findings) -> str:
    rows = sorted(f.pods, key=lambda p: (_ORDER.get(p.status, 9), -(p.ratio or 0), p.pod))
    header = ("POD", "NODE", "VERSION", "REQUESTS", "BAD", "RATIO", "STATUS")
    body = [
        (
            p.pod,
            p.node or "-",
            p.version or "-",
            _fmt(p.total, ".0f"),
            _fmt(p.bad, ".0f"),
            _fmt(p.ratio, ".2%"),
            p.status,
        )
        for p in rows
    ]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in [header, *body]
    ]
    return "\n".join([*lines, "", verdict(f)])
