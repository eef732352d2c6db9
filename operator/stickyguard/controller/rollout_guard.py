"""The rollout guard's and deletion costs' part of a cycle (thin). Before the cycle's plan:
read the guarded Deployment (or Argo Rollout, judged only) and ask the pure judge and decider
(core.rollout, with core.containment for what a GitOps-managed Deployment allows), so that a
containment's drains are planned with every other drain. After it: apply a pause, hold, resume
or rollback within the budgets (core.planner.guard_hold) and report in status.rollout (latched
verdicts, known-good versions, the containment and what to revert), from which every replica's
gate answers."""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from stickyguard.adapters import ssa
from stickyguard.adapters.argo_rollout import read_rollout
from stickyguard.adapters.deployment import apply_guard, read_workload
from stickyguard.adapters.kube_writes import Actuator
from stickyguard.controller.state import OperatorState
from stickyguard.core import cycle
from stickyguard.core import policy_status as status_mod
from stickyguard.core.analysis import Findings, PodMeta, PodSample
from stickyguard.core.cohort_chart import CohortChart
from stickyguard.core.containment import (
    Containment,
    ContainPod,
    GuardMode,
    containment_status,
    guard_mode,
)
from stickyguard.core.names import DELETION_COST
from stickyguard.core.planner import (
    GUARD_ACTIONS,
    ActionRecord,
    PodState,
    deletion_costs,
    guard_hold,
)
from stickyguard.core.policy import Policy
from stickyguard.core.problems import Held, HoldCause
from stickyguard.core.rollout import (
    CONTAIN,
    FAIL,
    GUARD_REASONS,
    PAUSE,
    ROLLBACK,
    GuardMemory,
    Verdict,
    Workload,
    decide,
    guard_memory,
    judge,
    latched,
    remember,
    revert_target,
    rollback_target,
    rollout_status,
)

log = logging.getLogger("stickyguard")


@dataclass(frozen=True)
class Assessment:
    """The guard's decisions for one evaluation, made before the cycle's plan (so that a
    containment's drains are planned within the same budgets as every other drain)."""

    workload: Workload
    rsets: list[Any]
    mode: GuardMode
    memory: GuardMemory
    verdict: Verdict | None
    action: str | None
    why: str
    chart: CohortChart | None  # the new version's chart, for the next evaluation

    @property
    def containment(self) -> Containment:
        w = self.workload
        active = self.action == CONTAIN
        return Containment(
            w.new_hash, active, f"version {w.new_hash}: {self.why}" if active else ""
        )


def assess_rollout(
    st: OperatorState,
    policy: Policy,
    samples: tuple[PodSample, ...],
    meta: dict[str, PodMeta],
    usable: bool,
    old: dict[str, Any],
    now: float,
    memory: cycle.Memory,
    window_seconds: float,
    contained: Collection[str] = (),
) -> Assessment | None:
    """Reads the guarded Deployment and decides (core.rollout, core.containment): the latched
    verdict, what this Deployment allows (GitOps management) and the action. None when the
    Deployment is missing. `memory`: the policy's, whose cohort chart and fleet overdispersion
    the judge goes on from; `contained`: the versions its contained pods record (a latch that
    survives a lost status write)."""
    apps = client.AppsV1Api(st.api)
    ref = policy.workload_ref
    if ref is not None and ref.kind == "Rollout":
        found = read_rollout(client.CustomObjectsApi(st.api), apps, policy)
    else:
        found = read_workload(apps, policy)
    if found is None:
        return None
    w, rsets = found
    fresh = (
        judge(
            policy,
            samples,
            meta,
            w.new_hash,
            w.hash_label,
            chart=memory.cohort or CohortChart(),
            now=now,
            window_seconds=window_seconds,
            tracks=memory.tracks,
        )
        if usable
        else None
    )
    guard = remember(guard_memory(old.get("rollout")), w, fresh, contained)
    verdict = latched(w, fresh, guard)
    mode = guard_mode(policy, w.name, w.management)
    action, why = decide(policy, w, verdict, now, guard, mode)
    chart = fresh.chart if fresh is not None else memory.cohort
    return Assessment(w, rsets, mode, guard, verdict, action, why, chart)


def guard_rollout(
    st: OperatorState,
    policy: Policy,
    guard: Assessment | None,
    pods: Sequence[PodState],
    contained_now: Sequence[str],
    new: dict[str, Any],
    old: dict[str, Any],
    now: float,
) -> tuple[list[status_mod.Event], list[Held]]:
    """The rollout guard's part of a cycle after the plan: the Deployment action (within the
    budgets), status.rollout (which every replica's gate serves) and the conditions
    RolloutGuarded and GitOpsConflict. `contained_now`: pods the plan contained this cycle.
    Returns Events and holds."""
    if guard is None:
        ref = policy.workload_ref
        new["conditions"].append(
            status_mod.condition(
                "RolloutGuarded",
                False,
                "WorkloadNotFound",
                f"{ref.kind if ref else 'Deployment'} {ref.name if ref else '?'} not found",
                policy.generation,
                now,
                old,
            )
        )
        return [], []
    apps = client.AppsV1Api(st.api)
    w, memory, verdict, action, why = (
        guard.workload,
        guard.memory,
        guard.verdict,
        guard.action,
        guard.why,
    )
    events: list[status_mod.Event] = []
    holds: list[Held] = []
    if action in GUARD_ACTIONS and not policy.actions.dry_run:
        held = guard_hold(
            policy,
            action,
            f"Deployment {w.name}",
            cycle.records_from_status(new),
            cycle.last_times_from_status(new),
            now,
        )
        if held is not None:
            holds.append(held)
            action, why = None, f"{why} ({held})"
    if action is not None and action != CONTAIN:
        if policy.actions.dry_run:
            events.append(
                status_mod.Event(
                    "Normal", f"Would{action.capitalize()}", f"DryRun: {w.name}: {why}"
                )
            )
        else:
            target = rollback_target(w, memory) if action == ROLLBACK else None
            try:
                apply_guard(apps, policy, w, guard.rsets, action, why, now, target, fence=st.fence)
            except ApiException as e:
                holds.append(
                    Held(
                        HoldCause.ACTION_FAILED,
                        f"Deployment {w.name}: {action} failed: API error {e.status} {e.reason}",
                    )
                )
                action = None
            else:
                events.append(
                    status_mod.Event(
                        "Warning" if action in (PAUSE, ROLLBACK) else "Normal",
                        GUARD_REASONS[action],
                        f"{w.name}: {why}",
                    )
                )
                if action in GUARD_ACTIONS:
                    records = [*cycle.records_from_status(new)]
                    records.append(ActionRecord(now, action, w.name))
                    cycle.record_actions(new, records, cycle.last_times_from_status(new))
    old_blocked = set(old.get("blocked") or [])
    for held in holds:
        new.setdefault("blocked", []).append(str(held))
        if str(held) not in old_blocked:
            reason = "BudgetBlocked" if held.cause.is_budget else "ActionHeld"
            events.append(status_mod.Event("Warning", reason, str(held)))
    section = rollout_status(w, verdict, action, why)
    section.update(memory.to_status())
    section["mode"] = guard.mode.on_fail
    section["managedBy"] = (
        f"{w.management.tool} ({w.management.evidence})" if w.management.managed else ""
    )
    if action == CONTAIN:
        section["containment"] = _containment_section(w, memory, pods, contained_now)
        why = section["containment"]["message"]
        section["reason"] = why
    new["rollout"] = section
    failing = verdict is not None and verdict.verdict == FAIL
    # A rollout this policy paused stays reported as paused until a person resumes it, even
    # when the drained bad pods leave the new cohort without traffic (inconclusive).
    held_by_us = w.paused and w.paused_by_us and (w.hold_started is None or w.hold_done)
    if action == CONTAIN:
        reason = GUARD_REASONS[CONTAIN]
    elif action == ROLLBACK:
        reason = "RolledBack"
    elif (failing and (w.paused or action == PAUSE)) or held_by_us or action == PAUSE:
        reason = "RolloutPaused"
    elif failing:
        reason = "NewVersionDegraded"
    elif w.hold_started is not None and not w.hold_done:
        reason = "RolloutHeld"
    else:
        reason = "RolloutHealthy" if w.rolling else "NoRollout"
    ok = not (failing or held_by_us or action in (PAUSE, ROLLBACK, CONTAIN))
    guarded = status_mod.condition("RolloutGuarded", ok, reason, why, policy.generation, now, old)
    conflict = status_mod.condition(
        "GitOpsConflict",
        guard.mode.conflict,
        guard.mode.reason,
        guard.mode.message,
        policy.generation,
        now,
        old,
    )
    new["conditions"] += [guarded, conflict]
    events += status_mod.guard_events(old, [guarded, conflict], policy.actions.dry_run)
    return events, holds


def _containment_section(
    w: Workload, memory: GuardMemory, pods: Sequence[PodState], contained_now: Sequence[str]
) -> dict[str, Any]:
    newest = next((r for r in w.revisions if r.hash == w.new_hash), None)
    target = revert_target(w, memory)
    revert_to = (
        None
        if target is None
        else {
            "version": target.hash,
            "revision": str(target.revision),
            "images": list(target.images),
        }
    )
    return containment_status(
        w.name,
        w.new_hash,
        w.revision,
        newest.images if newest is not None else (),
        [
            ContainPod(p.name, p.version, p.ready, p.drained_by is not None, p.contained, False)
            for p in pods
            if not p.deleting
        ],
        contained_now,
        revert_to,
        w.management.tool,
    )


def keep_deletion_costs(
    st: OperatorState,
    policy: Policy,
    pods: list[Any],
    states: list[PodState],
    findings: Findings,
    sessions: dict[str, float | None],
) -> None:
    actuator = Actuator(st.api, fence=st.fence)
    wanted = deletion_costs(states, findings.degraded_pods, sessions)
    for p in pods:
        cost = wanted.get(p.metadata.name)
        current = (p.metadata.annotations or {}).get(DELETION_COST)
        # A cost the pod template or another tool sets is theirs: left alone (no force).
        theirs = current is not None and ssa.others_own(
            ((m.manager, m.fields_v1) for m in p.metadata.managed_fields or []),
            ("metadata", "annotations", DELETION_COST),
        )
        if cost is not None and current != str(cost) and not theirs:
            try:
                actuator.deletion_cost(policy.namespace, p.metadata.name, cost)
            except ApiException as e:
                # 409: another manager owns the cost (the pod template, a person): theirs.
                if e.status != 404:
                    log.warning("deletion cost of %s: %s %s", p.metadata.name, e.status, e.reason)
