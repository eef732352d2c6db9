"""StickyPolicy status and Events (pure): conditions in metav1.Condition shape, counts, impact,
drained pods, blocked actions; Events only for transitions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stickyguard.core.analysis import CONCENTRATED, FLEET_WIDE, Findings
from stickyguard.core.names import rfc3339
from stickyguard.core.planner import (
    CONTAIN,
    CORDON,
    DRAIN,
    EVICT,
    ISOLATE,
    RESTORE,
    UNCORDON,
    Plan,
    PodState,
)
from stickyguard.core.policy import Policy

# CamelCase Event reasons for actions (and their DryRun twins).
ACTION_REASONS = {
    DRAIN: "Drained",
    CONTAIN: "Contained",
    EVICT: "Evicted",
    RESTORE: "Restored",
    ISOLATE: "Isolated",
    CORDON: "Cordoned",
    UNCORDON: "Uncordoned",
}
WOULD_REASONS = {
    DRAIN: "WouldDrain",
    CONTAIN: "WouldContain",
    EVICT: "WouldEvict",
    RESTORE: "WouldRestore",
    ISOLATE: "WouldIsolate",
    CORDON: "WouldCordon",
    UNCORDON: "WouldUncordon",
}


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str
    pod: str | None = None  # also posted on the pod, when set


def condition(
    ctype: str,
    ok: bool | None,
    reason: str,
    message: str,
    generation: int,
    now: float,
    previous_status: Mapping[str, Any],
) -> dict[str, Any]:
    """One condition in metav1.Condition shape, keeping lastTransitionTime if unchanged."""
    prev = {c["type"]: c for c in previous_status.get("conditions") or []}
    return _condition(ctype, ok, reason, message, generation, rfc3339(now), prev)


def _condition(
    ctype: str,
    ok: bool | None,
    reason: str,
    message: str,
    generation: int,
    now: str,
    previous: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any]:
    status = "Unknown" if ok is None else ("True" if ok else "False")
    prev = previous.get(ctype)
    since = prev["lastTransitionTime"] if prev and prev.get("status") == status else now
    return {
        "type": ctype,
        "status": status,
        "reason": reason,
        "message": message[:32000],
        "observedGeneration": generation,
        "lastTransitionTime": since,
    }


def build_status(
    policy: Policy,
    pods: Sequence[PodState],
    findings: Findings | None,
    metrics_problem: str | None,
    plan: Plan,
    previous: Mapping[str, Any],
    now: float,
    claimed: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The whole status after a cycle. Unchanged conditions keep their lastTransitionTime.
    `claimed`: selected pods an older policy also selects (pod -> that policy)."""
    ts = rfc3339(now)
    prev_conditions = {c["type"]: c for c in previous.get("conditions") or []}
    gen = policy.generation
    live = [p for p in pods if not p.deleting and p.selected]  # strays are only put back
    # Pods this cycle drained/restored/evicted are shown as they will be after the plan.
    changed = {a.pod: a.kind for a in plan.actions}
    drained = []
    for p in live:
        kind = changed.get(p.name)
        if kind == RESTORE:
            continue
        if p.drained_by == policy.name or kind in (DRAIN, CONTAIN):
            reason = p.drain_reason or next((a.reason for a in plan.actions if a.pod == p.name), "")
            since = rfc3339(p.drained_at) if p.drained_at else ts
            phase = (
                "Evicting"
                if kind == EVICT
                else "Isolated"
                if kind == ISOLATE or p.isolated_at is not None
                else "Contained"
                if kind == CONTAIN or p.contained is not None
                else "Draining"
            )
            drained.append(
                {"pod": p.name, "node": p.node, "since": since, "reason": reason, "phase": phase}
            )
    for a in plan.would:
        if a.kind in (DRAIN, CONTAIN):
            drained.append(
                {
                    "pod": a.pod,
                    "node": a.node,
                    "since": ts,
                    "reason": a.reason,
                    "phase": "WouldDrain",
                }
            )
    ok_metrics = metrics_problem is None
    classification = findings.classification if findings else "unknown"
    conditions = [
        _condition(
            "Ready", True, "Reconciled", "policy is valid and evaluated", gen, ts, prev_conditions
        ),
        _condition(
            "MetricsAvailable",
            ok_metrics,
            "MetricsRead" if ok_metrics else "MetricsUnavailable",
            "per-pod signals read from Prometheus"
            if ok_metrics
            else f"{metrics_problem}; acting on nothing new until this is fixed",
            gen,
            ts,
            prev_conditions,
        ),
        _condition(
            "Degraded",
            None
            if findings is None
            else bool(findings.outlier_pods) or classification == FLEET_WIDE,
            {
                "healthy": "Healthy",
                "concentrated": "ConcentratedDegradation",
                "fleet_wide": "FleetWideDegradation",
                "insufficient_data": "InsufficientData",
            }.get(classification, "NoUsableMetrics"),
            findings.reason if findings else "no usable metrics",
            gen,
            ts,
            prev_conditions,
        ),
        _condition(
            "Concentrated",
            None if findings is None else classification == CONCENTRATED,
            "Concentrated"
            if classification == CONCENTRATED
            else ("NotConcentrated" if findings is not None else "NoUsableMetrics"),
            _concentration_message(findings),
            gen,
            ts,
            prev_conditions,
        ),
        _conflict_condition(claimed or {}, gen, ts, prev_conditions),
    ]
    status: dict[str, Any] = {
        "observedGeneration": gen,
        "lastEvaluationTime": ts,
        "classification": classification,
        "conditions": conditions,
        "pods": {
            "total": len(live),
            "ready": sum(1 for p in live if p.ready),
            "drained": sum(1 for d in drained if d["phase"] != "WouldDrain"),
            "degraded": len(findings.degraded_pods) if findings else 0,
        },
        "drained": drained,
        "degradedPods": list(findings.degraded_pods) if findings else [],
        "blocked": [str(b) for b in plan.blocked],
    }
    if findings and findings.impact:
        imp = findings.impact
        status["impact"] = {
            k: v
            for k, v in {
                "badRequestRatio": round(imp.bad_request_ratio, 6),
                "affectedSessionRatio": None
                if imp.affected_session_ratio is None
                else round(imp.affected_session_ratio, 6),
                "amplification": None if imp.amplification is None else round(imp.amplification, 3),
                "method": imp.method,
            }.items()
            if v is not None
        }
    if findings and findings.concentration:
        c = findings.concentration
        status["concentration"] = {
            "dimension": c.dimension,
            "value": c.value,
            "share": round(c.share, 4),
        }
    return status


def _conflict_condition(
    claimed: Mapping[str, str], gen: int, ts: str, prev: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """Conflict=True while an older policy also selects some of this policy's pods."""
    if not claimed:
        return _condition(
            "Conflict", False, "NoOverlap", "no other policy selects these pods", gen, ts, prev
        )
    owners = sorted(set(claimed.values()))
    pods = sorted(claimed)
    shown = ", ".join(pods[:5]) + (f" and {len(pods) - 5} more" if len(pods) > 5 else "")
    return _condition(
        "Conflict",
        True,
        "OverlappingPolicy",
        f"{len(pods)} selected pods are also selected by the older StickyPolicy "
        f"{', '.join(owners)}, which acts on them; this policy does not: {shown}",
        gen,
        ts,
        prev,
    )


def _concentration_message(f: Findings | None) -> str:
    if f is None:
        return "no usable metrics"
    if f.concentration is None:
        return f.reason
    c = f.concentration
    return (
        f"{len(f.outlier_pods)} pods, concentrated on {c.dimension}={c.value} "
        f"({c.share:.0%} of the excess bad events)"
    )


def events(previous: Mapping[str, Any], status: Mapping[str, Any], plan: Plan) -> list[Event]:
    """Events for what changed: condition transitions, actions, new blocks, new would-dos."""
    out: list[Event] = []
    before = {c["type"]: c for c in previous.get("conditions") or []}
    for c in status["conditions"]:
        old = before.get(c["type"])
        if c["status"] == "Unknown" or (old is None and c["type"] == "Ready"):
            continue  # "we cannot tell" is said once, by MetricsAvailable
        if (
            old is None
            or old.get("status") != c["status"]
            or (old.get("reason") != c["reason"] and c["type"] != "Ready")
        ):
            warn = (c["type"] == "MetricsAvailable" and c["status"] == "False") or (
                c["type"] in ("Degraded", "Concentrated", "Conflict") and c["status"] == "True"
            )
            if old is None and not warn:
                continue
            out.append(Event("Warning" if warn else "Normal", c["reason"], c["message"]))
    for a in plan.actions:
        if a.kind in ACTION_REASONS:
            out.append(
                Event(
                    "Normal" if a.kind == RESTORE else "Warning",
                    ACTION_REASONS[a.kind],
                    f"{a.pod or a.node}: {a.reason}",
                    a.pod or None,
                )
            )
    old_would = {d["pod"] for d in previous.get("drained") or [] if d.get("phase") == "WouldDrain"}
    for a in plan.would:
        if a.kind not in (DRAIN, CONTAIN) or a.pod not in old_would:
            out.append(
                Event("Normal", WOULD_REASONS[a.kind], f"DryRun: {a.pod}: {a.reason}", a.pod)
            )
    old_blocked = set(previous.get("blocked") or [])
    for held in plan.blocked:
        if str(held) not in old_blocked:
            reason = "BudgetBlocked" if held.cause.is_budget else "ActionHeld"
            out.append(Event("Warning", reason, str(held)))
    return out


CONTAINED_REASON = "VersionContained"  # RolloutGuarded while the guard contains a version


def guard_events(
    previous: Mapping[str, Any], conditions: Sequence[Mapping[str, Any]], dry_run: bool
) -> list[Event]:
    """Events for the rollout guard's conditions, on transitions only: a containment goes on
    at every evaluation, its Event (saying what to revert) is posted once, and once more when
    it clears; a refused spec change (GitOpsConflict) likewise."""
    before = {c["type"]: c for c in previous.get("conditions") or []}
    out: list[Event] = []
    for c in conditions:
        old = before.get(c["type"]) or {}
        if (old.get("status"), old.get("reason")) == (c["status"], c["reason"]):
            continue
        if c["type"] == "RolloutGuarded" and c["reason"] == CONTAINED_REASON:
            reason = "WouldContainVersion" if dry_run else CONTAINED_REASON
            out.append(Event("Warning", reason, c["message"]))
        elif c["type"] == "RolloutGuarded" and old.get("reason") == CONTAINED_REASON:
            gone = ((previous.get("rollout") or {}).get("containment") or {}).get("version", "")
            out.append(
                Event(
                    "Normal",
                    "ContainmentCleared",
                    f"the containment of version {gone} is cleared: {c['message']}",
                )
            )
        elif c["type"] == "GitOpsConflict" and "True" in (c["status"], old.get("status")):
            warn = c["status"] == "True"
            out.append(Event("Warning" if warn else "Normal", c["reason"], c["message"]))
    return out


def meaningful(status: Mapping[str, Any]) -> dict[str, Any]:
    """The status without its timestamps: equal values mean there is nothing to write."""
    out = {k: v for k, v in status.items() if k not in ("lastEvaluationTime", "recentActions")}
    out["recentActions"] = [
        (r.get("action"), r.get("pod")) for r in status.get("recentActions") or []
    ]
    return out


def meaningful_conditions(status: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    return [
        (c.get("type"), c.get("status"), c.get("reason"), c.get("message"))
        for c in status.get("conditions") or []
    ]
