"""The operator's one cycle step, pure: (policy, cluster snapshot, metrics snapshot, memory) ->
(findings, plan, new memory), then, once the plan's writes are done, (outcomes) -> (status,
events). The kopf timer and the simulator both call these two functions, so what the simulator
shows is what the operator does.

Split in two because the status must say what was really done: the shell performs the plan's
writes between `decide` and `settle`, and some may fail.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from stickyguard.core import policy_status
from stickyguard.core.analysis import Findings, MetricsSnapshot, PodMeta, Track, analyze, forget
from stickyguard.core.cohort_chart import CohortChart
from stickyguard.core.containment import Containment
from stickyguard.core.names import parse_rfc3339, rfc3339
from stickyguard.core.planner import (
    BUDGETED,
    CONTAIN,
    DRAIN,
    EVICT,
    ISOLATE,
    MARK_SERVING,
    RESTORE,
    Action,
    ActionRecord,
    Plan,
    PodState,
    plan,
)
from stickyguard.core.policy import Policy
from stickyguard.core.problems import Held

# Signals without which a snapshot cannot be judged (the others only enrich it).
REQUIRED_SIGNALS = ("total", "bad", "freshness")
# status.recentActions keeps the budgeted actions (planner.BUDGETED) of this long, for
# maxActionsPerHour; status.lastActions keeps the time of the last action of each kind for as
# long as the policy lives, so a cooldownSeconds of any allowed length (up to a day) holds.
HISTORY_SECONDS = 3600.0


@dataclass(frozen=True)
class ClusterSnapshot:
    """What the cluster says about one policy's pods at one time."""

    pods: tuple[PodState, ...]  # every selected pod, those being deleted included
    meta: Mapping[str, PodMeta]  # pods not being deleted: node, zone, version, labels
    cordoned: frozenset[str] = frozenset()  # nodes this policy has cordoned
    # selected pods that an older policy also selects: pod -> that policy (it acts on them)
    claimed: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Memory:
    """What one policy's evaluations carry from one to the next (kept by the leader only)."""

    tracks: Mapping[str, Track] = field(default_factory=dict)
    cohort: CohortChart | None = None  # the rollout guard's chart of the new version
    # When the namespace was last listed for pods the policy drained outside its selection
    # (kube_reads.strays): (spec generation, time), and whether some were found. Listed again
    # after each edit of the spec, after a restart, and once a minute while some are left.
    strays_listed: tuple[int, float] | None = None
    strays_left: bool = False


@dataclass(frozen=True)
class Decision:
    findings: Findings | None
    problem: str | None  # why the metrics could not be used (None: they were)
    plan: Plan
    memory: Memory
    history: tuple[ActionRecord, ...]  # budgeted actions of the last hour, before this plan
    sessions: Mapping[str, float | None]
    last_times: Mapping[str, float] = field(default_factory=dict)  # kind -> last time


@dataclass(frozen=True)
class Settled:
    status: dict[str, Any]
    events: list[policy_status.Event]
    done: Plan  # the plan as carried out: failed writes moved to `blocked`
    memory: Memory  # what the next evaluation starts from


def remember(decision: Decision, done: Sequence[Action]) -> Memory:
    """The memory after the plan's writes: a pod restored, evicted or isolated starts again
    from no evidence, so it is drained again only if it is an outlier again, now. A drained pod
    keeps its memory (its evidence is why it stays drained)."""
    gone = [a.pod for a in done if a.kind in (RESTORE, EVICT, ISOLATE)]
    if not gone:
        return decision.memory
    return replace(decision.memory, tracks=forget(decision.memory.tracks, gone))


def history_from_status(status: Mapping[str, Any], now: float) -> tuple[ActionRecord, ...]:
    """The budgeted actions of the last hour, as recorded in status.recentActions."""
    return tuple(r for r in records_from_status(status) if now - r.time < HISTORY_SECONDS)


def last_times_from_status(status: Mapping[str, Any]) -> dict[str, float]:
    """status.lastActions: the time of the last action of each budgeted kind."""
    out = {}
    for kind, text in (status.get("lastActions") or {}).items():
        t = parse_rfc3339(text)
        if t is not None:
            out[str(kind)] = t
    return out


def with_recorded_drains(
    history: Sequence[ActionRecord], pods: Sequence[PodState], now: float
) -> tuple[ActionRecord, ...]:
    """The history plus the drains recorded on the pods themselves (drained-at) that the
    status does not list: a replica that lost leadership, or a status write that failed,
    after a drain must not hand the next cycle a budget with that drain missing. A record of
    the same pod counts only if it is as recent as the drain (times are kept to the second): a
    pod drained, restored and drained again within the hour has two."""
    latest: dict[str, float] = {}
    for r in history:
        if r.action in (DRAIN, CONTAIN):
            latest[r.pod] = max(latest.get(r.pod, r.time), r.time)
    extra = [
        ActionRecord(p.drained_at, CONTAIN if p.contained is not None else DRAIN, p.name)
        for p in pods
        if p.drained_at is not None
        and now - p.drained_at < HISTORY_SECONDS
        and latest.get(p.name, -math.inf) < p.drained_at - 1.0
    ]
    return (*history, *extra)


def metrics_problem(
    prometheus_configured: bool, cluster: ClusterSnapshot, metrics: MetricsSnapshot | None
) -> str | None:
    """Why this cycle must not act on its metrics, or None when it may."""
    if not prometheus_configured:
        return "no Prometheus URL: set spec.prometheus.url or the operator's --prometheus-url"
    if not cluster.meta:
        return "the selector matches no pods"
    if metrics is None:
        return "metrics were not read"
    required = [str(p) for p in metrics.problems if p.signal in REQUIRED_SIGNALS]
    if required:
        return "; ".join(required)
    if not any(s.total is not None for s in metrics.samples):
        return "no selected pod has fresh series"
    return None


def decide(
    policy: Policy,
    cluster: ClusterSnapshot,
    metrics: MetricsSnapshot | None,
    memory: Memory,
    history: Sequence[ActionRecord],
    now: float,
    *,
    prometheus_configured: bool = True,
    last_times: Mapping[str, float] | None = None,
    containment: Containment | None = None,
) -> Decision:
    """Analyse the snapshot and plan this cycle's actions within the policy's budgets
    (`containment`: the rollout guard's, see core.containment)."""
    problem = metrics_problem(prometheus_configured, cluster, metrics)
    findings: Findings | None = None
    sessions: dict[str, float | None] = {}
    new_memory = memory
    if problem is None and metrics is not None:
        # Memory of pods that left the selection is dropped: a pod name that comes back (a
        # StatefulSet pod) starts afresh.
        tracks = {p: t for p, t in memory.tracks.items() if p in cluster.meta}
        findings = analyze(
            metrics.samples,
            cluster.meta,
            policy.detection,
            policy.impact,
            tracks,
            now=metrics.time,
            window_seconds=metrics.window_seconds,
            sessions_expected=policy.prometheus.session_gauges,
        )
        new_memory = replace(memory, tracks=dict(findings.tracks))
        sessions = {s.pod: s.active_sessions for s in metrics.samples}
    recent = tuple(r for r in history if now - r.time < HISTORY_SECONDS)
    recent = with_recorded_drains(
        recent, [p for p in cluster.pods if p.drained_by == policy.name], now
    )
    times = dict(last_times or {})
    the_plan = plan(
        policy,
        cluster.pods,
        findings,
        problem,
        recent,
        now,
        sessions,
        cluster.cordoned,
        last_times=times,
        claimed=cluster.claimed,
        containment=containment,
    )
    return Decision(findings, problem, the_plan, new_memory, recent, sessions, times)


def settle(
    policy: Policy,
    cluster: ClusterSnapshot,
    decision: Decision,
    done: Sequence[Action],
    failed: Sequence[Held],
    previous_status: Mapping[str, Any],
    now: float,
) -> Settled:
    """The status and Events after the plan's writes: `done` are the actions that succeeded,
    `failed` one hold (cause ACTION_FAILED) per action that did not."""
    p = decision.plan
    done_plan = Plan(tuple(done), p.would, p.blocked + tuple(failed))
    new_records = [ActionRecord(now, a.kind, a.pod or a.node) for a in done if a.kind in BUDGETED]
    status = policy_status.build_status(
        policy,
        cluster.pods,
        decision.findings,
        decision.problem,
        done_plan,
        previous_status,
        now,
        claimed=cluster.claimed,
    )
    record_actions(status, [*decision.history, *new_records], decision.last_times)
    events = policy_status.events(previous_status, status, done_plan)
    return Settled(status, events, done_plan, remember(decision, done))


def record_actions(
    status: dict[str, Any], history: Sequence[ActionRecord], last_times: Mapping[str, float]
) -> None:
    """Writes status.recentActions (the last hour) and status.lastActions (last time of each
    kind, kept as long as the policy lives) from the history."""
    times = dict(last_times)
    for r in history:
        times[r.action] = max(times.get(r.action, r.time), r.time)
    status["recentActions"] = [
        {"time": rfc3339(r.time), "action": r.action, "pod": r.pod}
        for r in sorted(history, key=lambda r: r.time)
    ]
    status["lastActions"] = {k: rfc3339(t) for k, t in sorted(times.items())}


def records_from_status(status: Mapping[str, Any]) -> list[ActionRecord]:
    """status.recentActions as records (all of them; used to append to them)."""
    out = []
    for r in status.get("recentActions") or []:
        t = parse_rfc3339(r.get("time"))
        if t is not None:
            out.append(ActionRecord(t, str(r.get("action")), str(r.get("pod"))))
    return out


def acted(done: Sequence[Action]) -> list[str]:
    """The kinds of the actions that changed something users see (marking serving aside)."""
    return [a.kind for a in done if a.kind != MARK_SERVING]
