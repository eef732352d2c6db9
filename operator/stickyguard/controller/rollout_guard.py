"""The rollout guard's and deletion costs' part of a cycle (thin): read the guarded Deployment
(or Argo Rollout), ask the pure judge and decider (core.rollout), apply the decision within the
budgets (core.planner.guard_hold), report it in status.rollout (latched verdicts, known-good
versions), from which every replica's gate answers."""

from __future__ import annotations

import logging
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from stickyguard.adapters.argo_rollout import read_rollout
from stickyguard.adapters.deployment import apply_guard, read_workload
from stickyguard.controller.state import OperatorState
from stickyguard.core import cycle
from stickyguard.core import policy_status as status_mod
from stickyguard.core.analysis import Findings, PodMeta, PodSample
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
    FAIL,
    GUARD_REASONS,
    PAUSE,
    ROLLBACK,
    decide,
    guard_memory,
    judge,
    latched,
    remember,
    rollback_target,
    rollout_status,
)

log = logging.getLogger("stickyguard")


def guard_rollout(
    st: OperatorState,
    policy: Policy,
    samples: tuple[PodSample, ...],
    meta: dict[str, PodMeta],
    findings: Findings | None,
    new: dict[str, Any],
    old: dict[str, Any],
    now: float,
) -> tuple[list[status_mod.Event], list[Held]]:
    """The rollout guard's part of a cycle: verdict (latched per version), action (within the
    budgets), status.rollout (which every replica's gate serves). Returns Events and holds."""
    apps = client.AppsV1Api(st.api)
    ref = policy.workload_ref
    if ref is not None and ref.kind == "Rollout":
        found = read_rollout(client.CustomObjectsApi(st.api), apps, policy)
    else:
        found = read_workload(apps, policy)
    if found is None:
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
    w, rsets = found
    memory = guard_memory(old.get("rollout"))
    fresh = judge(policy, samples, meta, w.new_hash, w.hash_label) if findings is not None else None
    memory = remember(memory, w, fresh)
    verdict = latched(w, fresh, memory)
    action, why = decide(policy, w, verdict, now, memory)
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
    if action is not None:
        if policy.actions.dry_run:
            events.append(
                status_mod.Event(
                    "Normal", f"Would{action.capitalize()}", f"DryRun: {w.name}: {why}"
                )
            )
        else:
            target = rollback_target(w, memory) if action == ROLLBACK else None
            try:
                apply_guard(apps, policy, w, rsets, action, why, now, target, fence=st.fence)
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
    new["rollout"] = section
    failing = verdict is not None and verdict.verdict == FAIL
    # A rollout this policy paused stays reported as paused until a person resumes it, even
    # when the drained bad pods leave the new cohort without traffic (inconclusive).
    held_by_us = w.paused and w.paused_by_us and w.hold_started is None
    if action == ROLLBACK:
        reason = "RolledBack"
    elif (failing and (w.paused or action == PAUSE)) or held_by_us or action == PAUSE:
        reason = "RolloutPaused"
    elif failing:
        reason = "NewVersionDegraded"
    elif w.hold_started is not None and not w.hold_done:
        reason = "RolloutHeld"
    else:
        reason = "RolloutHealthy" if w.rolling else "NoRollout"
    ok = not (failing or held_by_us or action in (PAUSE, ROLLBACK))
    new["conditions"].append(
        status_mod.condition("RolloutGuarded", ok, reason, why, policy.generation, now, old)
    )
    return events, holds


def keep_deletion_costs(
    st: OperatorState,
    policy: Policy,
    pods: list[Any],
    states: list[PodState],
    findings: Findings,
    sessions: dict[str, float | None],
) -> None:
    core = client.CoreV1Api(st.api)
    wanted = deletion_costs(states, findings.degraded_pods, sessions)
    for p in pods:
        cost = wanted.get(p.metadata.name)
        current = (p.metadata.annotations or {}).get(DELETION_COST)
        if cost is not None and current != str(cost):
            st.fence()
            try:
                core.patch_namespaced_pod(
                    p.metadata.name,
                    policy.namespace,
                    {"metadata": {"annotations": {DELETION_COST: str(cost)}}},
                )
            except ApiException as e:
                if e.status != 404:
                    log.warning("deletion cost of %s: %s %s", p.metadata.name, e.status, e.reason)
