"""The planner (pure): findings + cluster state + budgets -> the actions of one cycle.

Rules, in order:
- restore a pod this policy drained when a person asks (annotation stickyguard.dev/undrain) or
  when it has passed `recoveryEvaluations` clean evaluations in a row;
- evict a drained pod once its active sessions reach zero or `drainTimeoutSeconds` passed;
- drain degraded pods (worst first) when the verdict is `concentrated`, within every budget:
  `maxDrainedPercent` (rounded down; pods drained by *any* policy count), `minReadyPods`,
  `maxActionsPerHour` (drains, evictions, isolations, cordons and rollout pauses/rollbacks)
  and `cooldownSeconds` since the last drain (its time persists beyond the hour of history);
- never start acting on a pod another, older policy also selects (`claimed`): that policy
  acts on it, this one reports a Conflict;
- contain a failed version for the rollout guard (`containment`, core.containment): drain its
  pods within the same budgets (before health drains), never evict or health-restore a
  contained pod, put contained pods back when their version is current but no longer contained;
- with the ReadinessGate method, keep the serving condition True on every pod that should serve
  (a gated pod is never Ready otherwise: this also happens in DryRun);
- put back a pod it drained that its selector no longer matches (`PodState.selected`): it left
  the policy, its budgets and its restore rules with the edit.
Fail static: without usable metrics nothing is drained or evicted. DryRun moves drains,
evictions and restores to `would` and does none of them, but for restores a person asks for.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from stickyguard.core.analysis import CONCENTRATED, Findings
from stickyguard.core.containment import Budget, Containment, ContainPod, plan_containment
from stickyguard.core.drain_methods import method_named
from stickyguard.core.policy import Policy
from stickyguard.core.problems import Held, HoldCause

MARK_SERVING, DRAIN, RESTORE, EVICT = "mark_serving", "drain", "restore", "evict"
# Finishes a drain whose record was written but whose pod still serves (an interrupted write):
# repeats the drain's idempotent writes, spends no budget and keeps the original record.
COMPLETE_DRAIN = "complete_drain"
ISOLATE, CORDON, UNCORDON = "isolate", "cordon", "uncordon"
# Finishes an isolation whose record was written but whose pod still carries a
# pod-template-hash (the placeholder of an interrupted two-step removal): no budget either.
COMPLETE_ISOLATE = "complete_isolate"
# A drain of a pod of a version the rollout guard contains (recorded with that version).
CONTAIN = "contain"
# Rollout guard actions that spend the budgets (hold/resume are steps of a healthy rollout).
PAUSE_ROLLOUT, ROLLBACK_ROLLOUT = "pause", "rollback"
BUDGETED = (DRAIN, CONTAIN, EVICT, ISOLATE, CORDON, PAUSE_ROLLOUT, ROLLBACK_ROLLOUT)
GUARD_ACTIONS = (PAUSE_ROLLOUT, ROLLBACK_ROLLOUT)
CORDON_MIN_SHARE = 0.8  # cordon only when one node holds this much of the excess bad events
# ...and at least this many outlier pods on it: one bad pod alone is the pod's fault, and with one
# pod per node it would make the node dimension win with share 1.0.
CORDON_MIN_PODS = 2
_HOUR = 3600.0


@dataclass(frozen=True)
class PodState:
    """What the cluster says about one selected pod."""

    name: str
    node: str = ""
    ready: bool = True
    serving: bool | None = True  # gate condition / serving label; None: gate condition missing
    has_gate: bool = False
    drained_by: str | None = None
    drained_at: float | None = None
    drain_reason: str = ""
    undrain: bool = False
    deleting: bool = False
    isolated_at: float | None = None  # left its ReplicaSet, kept for forensics
    drain_method: str | None = None  # the method it was drained with (restore undoes that)
    version: str = ""  # pod-template-hash
    contained: str | None = None  # the version it was contained for (stickyguard.dev/contained)
    # False: a pod this policy drained that its selector no longer matches (the selector was
    # edited); the policy only puts it back.
    selected: bool = True


@dataclass(frozen=True)
class ActionRecord:
    time: float
    action: str
    pod: str


@dataclass(frozen=True)
class Action:
    kind: str
    pod: str
    reason: str
    node: str = ""
    version: str = ""  # CONTAIN: the version contained


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...]
    would: tuple[Action, ...]
    blocked: tuple[Held, ...]


def _last(
    kinds: Sequence[str], history: Sequence[ActionRecord], last_times: Mapping[str, float]
) -> float:
    """The time of the latest action of these kinds: from the hour of history, or from the
    persisted last times (status.lastActions), whichever is later."""
    times = [r.time for r in history if r.action in kinds]
    times += [t for k, t in last_times.items() if k in kinds]
    return max(times, default=-math.inf)


def guard_hold(
    policy: Policy,
    action: str,
    subject: str,
    history: Sequence[ActionRecord],
    last_times: Mapping[str, float],
    now: float,
) -> Held | None:
    """Whether a rollout pause or rollback must wait: it counts against maxActionsPerHour, and
    waits cooldownSeconds after the last pause or rollback (so a bad version cannot make the
    guard flip a Deployment back and forth once per evaluation)."""
    safety = policy.safety
    recent = [r for r in history if now - r.time < _HOUR and r.action in BUDGETED]
    if len(recent) >= safety.max_actions_per_hour:
        return Held(
            HoldCause.MAX_ACTIONS_PER_HOUR,
            f"{subject}: {action} held: maxActionsPerHour {safety.max_actions_per_hour} reached",
        )
    if now - _last(GUARD_ACTIONS, history, last_times) < safety.cooldown_seconds:
        return Held(
            HoldCause.COOLDOWN,
            f"{subject}: {action} held: cooldownSeconds {safety.cooldown_seconds} since the "
            "last rollout action",
        )
    return None


def _drain_reason(f: Findings, pod: str) -> str:
    for p in f.pods:
        if p.pod == pod and p.ratio is not None and p.baseline is not None:
            return (
                f"{p.ratio:.2%} bad vs {p.baseline:.2%} for the rest of the fleet "
                f"(p={p.p_value:.1g})"
                if p.p_value is not None
                else f"{p.ratio:.2%} bad"
            )
    return "degraded"


def _node_recovered(node: str, live: Sequence[PodState], findings: Findings) -> bool:
    """A cordoned node's pods have recovered: none of them is an outlier, degraded or drained
    (a drained pod stops being an outlier only because it serves nothing), and at least one
    serves and was judged healthy this evaluation. A node left without judged pods (its bad
    pods evicted, no other) has shown nothing yet: absence of evidence is not recovery."""
    on_node = [p for p in live if p.node == node]
    suspect = set(findings.outlier_pods) | set(findings.degraded_pods)
    if any(p.name in suspect or p.drained_by is not None for p in on_node):
        return False
    healthy = {f.pod for f in findings.pods if f.status == "healthy"}
    return any(p.name in healthy for p in on_node)


def plan(
    policy: Policy,
    pods: Sequence[PodState],
    findings: Findings | None,
    metrics_problem: str | None,
    history: Sequence[ActionRecord],
    now: float,
    sessions: Mapping[str, float | None] | None = None,
    cordoned: frozenset[str] = frozenset(),
    last_times: Mapping[str, float] | None = None,
    claimed: Mapping[str, str] | None = None,
    containment: Containment | None = None,
) -> Plan:
    """One cycle's plan. `findings` is None (and `metrics_problem` says why) when the metrics
    snapshot could not be used; `cordoned` are the nodes this policy has cordoned; `last_times`
    the persisted time of the last action of each kind; `claimed` the selected pods an older
    policy also selects (pod -> that policy), which this one leaves alone; `containment` the
    rollout guard's containment of the Deployment's current version (None: no guard).

    A containment acts on a latched verdict, so it goes on when the metrics are unusable: a
    new pod of a version already judged failing is kept out, as the fail-static rule keeps
    what was decided on good data."""
    sessions = sessions or {}
    last_times = last_times or {}
    claimed = claimed or {}
    safety, drain_spec = policy.safety, policy.actions.drain
    live = [p for p in pods if not p.deleting and p.selected]
    strays = [p for p in pods if not p.deleting and not p.selected and p.drained_by == policy.name]
    mine = [p for p in live if p.drained_by == policy.name]
    members = [p for p in live if p.isolated_at is None]  # isolated pods left the workload
    actions: list[Action] = []
    blocked: list[Held] = []
    recent = [r for r in history if now - r.time < _HOUR and r.action in BUDGETED]
    budget_left = safety.max_actions_per_hour - len(recent)
    usable = findings is not None and metrics_problem is None
    tracks = findings.tracks if findings else {}

    def recovered(p: PodState) -> bool:
        return (
            p.contained is None  # a contained version has no traffic to recover on
            and usable
            and p.name in tracks
            and not tracks[p.name].degraded
            and tracks[p.name].passes >= policy.detection.recovery_evaluations
        )

    # 0. finish drains that were recorded but did not take the pod out of service (unless it
    # has recovered since: it is then restored, not drained and put back in one plan)
    completing: set[str] = set()
    for p in mine:
        if p.serving is not False and not p.undrain and p.isolated_at is None and not recovered(p):
            actions.append(
                Action(
                    COMPLETE_DRAIN,
                    p.name,
                    p.drain_reason or "an interrupted drain",
                    p.node,
                )
            )
            completing.add(p.name)

    # 1. restores (those a person asks for also happen in DryRun and without usable metrics:
    # they undo an earlier action, on request)
    restoring: set[str] = set()
    requested: set[str] = set()
    for p in strays:
        # An isolated pod has left its workload (kept for forensics); a contained one is of a
        # version judged failing, which only a person puts back (stickyguard.dev/undrain).
        if p.isolated_at is None and (p.contained is None or p.undrain):
            actions.append(Action(RESTORE, p.name, "no longer selected by spec.selector", p.node))
            requested.add(p.name)  # the policy's owner moved it out: done in DryRun too
    for p in mine:
        if p.isolated_at is not None:
            continue  # it has left its ReplicaSet: it is only deleted, after its TTL
        if p.undrain:
            actions.append(
                Action(RESTORE, p.name, "requested with stickyguard.dev/undrain", p.node)
            )
            restoring.add(p.name)
            requested.add(p.name)
        elif recovered(p):
            actions.append(
                Action(
                    RESTORE,
                    p.name,
                    f"healthy again for {policy.detection.recovery_evaluations} evaluations",
                    p.node,
                )
            )
            restoring.add(p.name)

    # 2. evictions, or isolation (a replacement at once, the pod kept for forensics)
    isolate = policy.actions.isolate
    for p in mine:
        if p.isolated_at is not None:
            if p.version:
                actions.append(Action(COMPLETE_ISOLATE, p.name, "an interrupted isolation", p.node))
            if now - p.isolated_at >= isolate.ttl_seconds:
                actions.append(
                    Action(
                        EVICT,
                        p.name,
                        f"isolated for {now - p.isolated_at:.0f}s (isolate.ttlSeconds)",
                        p.node,
                    )
                )
            continue
        if p.name in restoring or not (drain_spec.evict or isolate.enabled):
            continue
        if p.name in completing:
            continue  # it served until now: its sessions get their time to move first
        if p.contained is not None:
            continue  # evicting it would only bring a new pod of the contained version
        active = sessions.get(p.name)
        drained_for = now - (p.drained_at if p.drained_at is not None else now)
        if active is not None and active <= 0:
            why = "its sessions have moved to other pods"
        elif drained_for >= drain_spec.drain_timeout_seconds:
            why = f"drained for {drained_for:.0f}s (drainTimeoutSeconds)"
        else:
            continue
        kind = ISOLATE if isolate.enabled else EVICT
        if not usable:
            blocked.append(
                Held(
                    HoldCause.METRICS_UNAVAILABLE,
                    f"{p.name}: {kind} held: metrics unavailable ({metrics_problem})",
                )
            )
        elif budget_left <= 0:
            blocked.append(
                Held(
                    HoldCause.MAX_ACTIONS_PER_HOUR,
                    f"{p.name}: {kind} held: maxActionsPerHour "
                    f"{safety.max_actions_per_hour} reached",
                )
            )
        else:
            actions.append(Action(kind, p.name, why, p.node))
            budget_left -= 1

    # 3a. containment of a failed version (the rollout guard), within the same budgets
    max_drained = math.floor(len(members) * safety.max_drained_percent / 100)
    # Drains by any policy count: two policies over the same pods share one budget. A pod this
    # cycle restores still counts: its restore may fail while the drain after it succeeds, so
    # the slot it frees is taken at the next cycle, once the restore has happened.
    drained_count = sum(1 for p in members if p.drained_by is not None)
    serving = sum(1 for p in live if p.ready and p.drained_by is None)
    contained = plan_containment(
        containment,
        [
            ContainPod(
                p.name,
                p.version,
                p.ready,
                p.drained_by is not None,
                p.contained if p.drained_by == policy.name else None,
                p.name in claimed,
                p.node,
            )
            for p in members
            if p.name not in restoring
        ],
        Budget(
            max_drained,
            drained_count,
            serving,
            safety.min_ready_pods,
            budget_left,
            safety.max_drained_percent,
            safety.max_actions_per_hour,
            len(members),
        ),
    )
    node_of_pod = {p.name: p.node for p in live}
    for name in contained.restore:
        actions.append(
            Action(RESTORE, name, "its version is no longer contained", node_of_pod[name])
        )
        restoring.add(name)
    why = containment.reason if containment is not None else ""
    version = containment.current if containment is not None else ""
    for name in contained.drain:
        actions.append(Action(CONTAIN, name, why, node_of_pod[name], version))
    blocked.extend(contained.held)
    drained_count = contained.drained
    serving, budget_left = contained.serving, contained.actions_left
    containing = set(contained.drain)

    # 3. drains
    if usable and findings is not None and findings.classification == CONCENTRATED:
        by_name = {p.name: p for p in live}
        ratio = {f.pod: f.ratio or 0.0 for f in findings.pods}
        candidates = sorted(
            (
                n
                for n in findings.degraded_pods
                if n in by_name
                and by_name[n].drained_by is None
                and n not in claimed
                and n not in containing
            ),
            key=lambda n: (-ratio.get(n, 0.0), n),
        )
        cooling = now - _last((DRAIN,), history, last_times) < safety.cooldown_seconds
        for name in candidates:
            if cooling:
                blocked.append(
                    Held(
                        HoldCause.COOLDOWN,
                        f"{name}: not drained: cooldownSeconds "
                        f"{safety.cooldown_seconds} since the last drain",
                    )
                )
            elif drained_count + 1 > max_drained:
                blocked.append(
                    Held(
                        HoldCause.MAX_DRAINED_PERCENT,
                        f"{name}: not drained: maxDrainedPercent "
                        f"{safety.max_drained_percent} allows {max_drained} of "
                        f"{len(members)} pods drained at once",
                    )
                )
            elif serving - 1 < safety.min_ready_pods:
                blocked.append(
                    Held(
                        HoldCause.MIN_READY_PODS,
                        f"{name}: not drained: minReadyPods {safety.min_ready_pods} "
                        f"({serving} serving)",
                    )
                )
            elif budget_left <= 0:
                blocked.append(
                    Held(
                        HoldCause.MAX_ACTIONS_PER_HOUR,
                        f"{name}: not drained: maxActionsPerHour "
                        f"{safety.max_actions_per_hour} reached",
                    )
                )
            else:
                actions.append(
                    Action(DRAIN, name, _drain_reason(findings, name), by_name[name].node)
                )
                drained_count += 1
                serving -= 1 if by_name[name].ready else 0
                budget_left -= 1
    elif findings is not None and findings.degraded_pods and not usable:
        blocked.append(
            Held(
                HoldCause.METRICS_UNAVAILABLE, f"no drains: metrics unavailable ({metrics_problem})"
            )
        )

    # 4. cordon the node the degradation concentrates on (undone when the policy is deleted)
    conc = findings.concentration if findings else None
    node_of = {p.name: p.node for p in live}
    # Only pods the sequential detector holds degraded count: a window's outlier alone has not
    # passed the false-drain budget, and a cordon must not rest on less than a drain does.
    bad_here = (
        sum(
            1
            for pod in findings.degraded_pods
            if conc is not None and node_of.get(pod) == conc.value
        )
        if findings is not None
        else 0
    )
    cordoned_lately = any(r.action == CORDON for r in recent)
    if (
        policy.actions.cordon_node
        and usable
        and findings is not None
        and conc is not None
        and findings.classification == CONCENTRATED
        and conc.dimension == "node"
        and conc.share >= CORDON_MIN_SHARE
        and bad_here >= CORDON_MIN_PODS
        and conc.value not in cordoned
    ):
        if cordoned_lately:
            blocked.append(
                Held(
                    HoldCause.CORDON_LIMIT,
                    f"node {conc.value}: not cordoned: one node per policy per hour",
                )
            )
        elif budget_left > 0:
            actions.append(
                Action(
                    CORDON,
                    "",
                    f"{conc.share:.0%} of the excess bad events are on node {conc.value}",
                    conc.value,
                )
            )
            budget_left -= 1
        else:
            blocked.append(
                Held(
                    HoldCause.MAX_ACTIONS_PER_HOUR,
                    f"node {conc.value}: not cordoned: maxActionsPerHour "
                    f"{safety.max_actions_per_hour} reached",
                )
            )

    # 4b. uncordon a node this policy cordoned once its pods have recovered
    if usable and findings is not None:
        for node in sorted(cordoned):
            if _node_recovered(node, live, findings):
                actions.append(Action(UNCORDON, "", "its pods have recovered", node))

    # 5. the serving condition of gated pods
    marks = []
    if method_named(drain_spec.method).marks_new_pods:
        # In DryRun every pod is marked, those it would drain or contain too: DryRun must not
        # hold a rollout back nor keep a pod out of service.
        drained_now = (
            set()
            if policy.actions.dry_run
            else {a.pod for a in actions if a.kind == DRAIN} | containing
        )
        for p in live:
            if (
                p.has_gate
                and p.serving is not True
                and p.drained_by is None
                and p.name not in drained_now
                and p.name not in claimed  # the older policy marks its own pods
            ):
                marks.append(Action(MARK_SERVING, p.name, "not drained", p.node))
            elif p.name in restoring:
                pass  # the restore sets the condition itself

    if policy.actions.dry_run:
        asked = [a for a in actions if a.kind == RESTORE and a.pod in requested]
        would = [a for a in actions if a not in asked]
        return Plan(tuple(marks + asked), tuple(would), tuple(blocked))
    return Plan(tuple(marks + actions), (), tuple(blocked))


DEGRADED_COST = -1000


def deletion_costs(
    pods: Sequence[PodState], degraded: Sequence[str], sessions: Mapping[str, float | None]
) -> dict[str, int]:
    """pod-deletion-cost per pod: degraded pods go first on scale-down, then the pods with the
    fewest active sessions. Sessions are bucketed by powers of two so that the cost (and so a
    write) changes only when a pod's rank really changes, not with every session."""
    bad = set(degraded)
    out = {}
    for p in pods:
        if p.deleting:
            continue
        if p.name in bad:
            out[p.name] = DEGRADED_COST
        else:
            active = sessions.get(p.name)
            out[p.name] = int(math.log2(1 + active)) if active and active > 0 else 0
    return out
