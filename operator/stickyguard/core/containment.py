"""The rollout guard next to a GitOps reconciler (pure).

A reconciler with self-heal (Argo CD, Flux) re-applies the Deployment's spec from Git within
seconds: a guard that pauses (`spec.paused`) or rolls back (`spec.template`) fights it, and the
bad version keeps coming back. `Contain` protects users without touching a field Git owns: the
pods of the failed version are drained (with the ReadinessGate method they never turn Ready, so
`maxUnavailable` keeps the old pods and the rollout cannot progress; sessions re-pin to the old
version) and kept drained while that version is the Deployment's current one. The containment
clears by itself when the template changes (a revert committed to Git); the status, an Event,
the gate and `stickyguard status` say what to revert.

This module decides
- which action a failing version gets on a given Deployment (`guard_mode`): `Auto` is Contain
  when a GitOps tool manages it and Pause otherwise; Pause, Rollback and holds are refused on a
  GitOps-managed Deployment unless `allowSpecChanges: true` (the guard contains instead);
- which pods a containment drains within the budgets, and which contained pods to put back
  (`plan_containment`, called by the planner with its running budget counts);
- what the status says about it (`containment_status`).

Budgets: a containment drain is a drain. It counts against `maxDrainedPercent` (with every
other drained pod) and `minReadyPods` (when the pod was serving), and against
`maxActionsPerHour`; it is exempt from `cooldownSeconds` between drains (one containment is one
decision, already latched, not a stream of new ones). When the failed version has more pods
than the budgets allow, the guard contains what they allow, the rest keep serving, and the
status (`containment.held`, `blocked`, the condition's message) says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stickyguard.core.gitops import Management
from stickyguard.core.policy import Policy
from stickyguard.core.problems import Held, HoldCause

AUTO, CONTAIN, PAUSE, ROLLBACK, NONE = "Auto", "Contain", "Pause", "Rollback", "None"
# What each spec-changing setting would write on the Deployment.
SPEC_FIELDS = {PAUSE: "spec.paused", ROLLBACK: "spec.template"}

# GitOpsConflict condition reasons.
REFUSED = "SpecChangesRefused"
ALLOWED = "SpecChangesAllowed"
COMPATIBLE = "GitOpsCompatible"
NOT_MANAGED = "NotGitOpsManaged"


@dataclass(frozen=True)
class GuardMode:
    """What the guard may do to this Deployment, with the reason and message of the
    GitOpsConflict condition (True when a setting of the policy was refused)."""

    on_fail: str  # Contain | Pause | Rollback | None: what a failing version gets
    hold: bool  # holdSeconds may pause the Deployment
    conflict: bool
    reason: str
    message: str


def guard_mode(policy: Policy, workload: str, managed: Management) -> GuardMode:
    """Resolves `onCanaryDegraded` (Auto) and refuses spec changes on a GitOps-managed
    Deployment unless the policy allows them."""
    ro = policy.actions.rollout
    configured = ro.on_canary_degraded
    hold = ro.hold_seconds > 0
    if not managed.managed:
        on_fail = PAUSE if configured == AUTO else configured
        return GuardMode(
            on_fail,
            hold,
            False,
            NOT_MANAGED,
            f"Deployment {workload}: {managed.evidence}; a failing version gets {on_fail}"
            + (" (onCanaryDegraded: Auto)" if configured == AUTO else ""),
        )
    who = f"Deployment {workload} is managed by {managed.tool} ({managed.evidence})"
    wanted = CONTAIN if configured == AUTO else configured
    spec_changes = []
    if wanted in SPEC_FIELDS:
        spec_changes.append(
            f"spec.actions.rollout.onCanaryDegraded: {wanted} would change {SPEC_FIELDS[wanted]}"
        )
    if hold:
        spec_changes.append("spec.actions.rollout.holdSeconds would change spec.paused")
    if not spec_changes:
        return GuardMode(
            wanted,
            False,
            False,
            COMPATIBLE,
            f"{who}; a failing version gets {wanted}, which changes no field Git owns"
            + (" (onCanaryDegraded: Auto)" if configured == AUTO else ""),
        )
    if ro.allow_spec_changes:
        return GuardMode(
            wanted,
            hold,
            False,
            ALLOWED,
            f"{who}; {' and '.join(spec_changes)}, allowed by "
            f"spec.actions.rollout.allowSpecChanges: true ({managed.tool} may undo it)",
        )
    on_fail = CONTAIN if wanted in SPEC_FIELDS else wanted
    return GuardMode(
        on_fail,
        False,
        True,
        REFUSED,
        f"{who}: refused: {' and '.join(spec_changes)}, which Git owns and {managed.tool} "
        f"would undo; a failing version gets {on_fail} instead. Set "
        "spec.actions.rollout.onCanaryDegraded: Contain (and holdSeconds: 0), or "
        "spec.actions.rollout.allowSpecChanges: true to change the Deployment anyway",
    )


@dataclass(frozen=True)
class Containment:
    """What the rollout guard hands the planner: the Deployment's current version
    (pod-template-hash) and whether it is contained, and why."""

    current: str
    active: bool
    reason: str = ""


@dataclass(frozen=True)
class ContainPod:
    """What the containment needs to know of one selected pod (a view of PodState)."""

    name: str
    version: str  # pod-template-hash
    ready: bool
    drained: bool  # drained by any policy (out of service already)
    contained: str | None  # the version recorded when this policy contained it
    claimed: bool  # an older policy also selects it and acts on it
    node: str = ""


@dataclass(frozen=True)
class Budget:
    """The planner's running counts when the containment is planned."""

    max_drained: int
    drained: int  # pods drained now, by any policy (a restore planned this cycle still counts)
    serving: int  # pods Ready and not drained
    min_ready: int
    actions_left: int  # maxActionsPerHour minus the last hour's budgeted actions
    max_drained_percent: int
    max_actions_per_hour: int
    members: int


@dataclass(frozen=True)
class ContainmentPlan:
    drain: tuple[str, ...]  # pods to drain now, in order
    restore: tuple[str, ...]  # contained pods to put back (their version is no longer contained)
    held: tuple[Held, ...]  # pods a budget keeps from being contained
    drained: int  # the budget counts after this plan
    serving: int
    actions_left: int


def plan_containment(
    c: Containment | None, pods: Sequence[ContainPod], budget: Budget
) -> ContainmentPlan:
    """Drains the current version's pods while it is contained, within the budgets; puts back
    contained pods of the current version when it no longer is (the policy stopped containing:
    onCanaryDegraded changed). Pods contained for a version that is no longer current are left
    out of service: the rollout is replacing them, and putting a failed version back in front
    of users while it goes would hurt the users it re-pins. Without a guard (`c` None: no
    workloadRef, or the workload is not found) contained pods stay as they are: a failed
    version is not put back without the guard's say (a person's stickyguard.dev/undrain, or
    deleting the policy, puts them back)."""
    drained, serving, left = budget.drained, budget.serving, budget.actions_left
    if c is None:
        return ContainmentPlan((), (), (), drained, serving, left)
    restore = tuple(
        p.name
        for p in pods
        if not c.active and p.contained is not None and p.contained == c.current
    )
    if not c.active:
        return ContainmentPlan((), restore, (), drained, serving, left)
    drain: list[str] = []
    held: list[Held] = []
    for p in sorted(pods, key=lambda p: p.name):
        if p.version != c.current or p.drained or p.claimed:
            continue
        if drained + 1 > budget.max_drained:
            held.append(
                Held(
                    HoldCause.MAX_DRAINED_PERCENT,
                    f"{p.name}: not contained: maxDrainedPercent {budget.max_drained_percent} "
                    f"allows {budget.max_drained} of {budget.members} pods drained at once",
                )
            )
        elif p.ready and serving - 1 < budget.min_ready:
            held.append(
                Held(
                    HoldCause.MIN_READY_PODS,
                    f"{p.name}: not contained: minReadyPods {budget.min_ready} ({serving} serving)",
                )
            )
        elif left <= 0:
            held.append(
                Held(
                    HoldCause.MAX_ACTIONS_PER_HOUR,
                    f"{p.name}: not contained: maxActionsPerHour "
                    f"{budget.max_actions_per_hour} reached",
                )
            )
        else:
            drain.append(p.name)
            drained += 1
            serving -= 1 if p.ready else 0
            left -= 1
    return ContainmentPlan(tuple(drain), restore, tuple(held), drained, serving, left)


def _images(images: Sequence[str]) -> str:
    return ", ".join(images) if images else "no image recorded"


def containment_status(
    workload: str,
    version: str,
    revision: str,
    images: Sequence[str],
    pods: Sequence[ContainPod],
    contained_now: Sequence[str],
    revert_to: Mapping[str, Any] | None,
    tool: str | None,
) -> dict[str, Any]:
    """status.rollout.containment: the contained version, how many of its pods are out of
    service, and what to revert in Git (said in `message`, which the condition and Event
    repeat). Pods of the version neither drained nor contained now are `held`: a budget keeps
    them serving."""
    mine = [p for p in pods if p.version == version]
    out_of_service = sum(1 for p in mine if p.drained or p.name in contained_now)
    held = len(mine) - out_of_service
    where = f"in Git ({tool})" if tool else "in its source of truth"
    if revert_to:
        target = (
            f"revert Deployment {workload} {where} to revision {revert_to['revision']} "
            f"({_images(revert_to.get('images') or [])})"
        )
    else:
        target = f"revert or fix Deployment {workload} {where}"
    budget_note = (
        f"; {held} of its pods kept serving by the budgets (maxDrainedPercent, minReadyPods, "
        "maxActionsPerHour)"
        if held
        else ""
    )
    message = (
        f"version {version} (revision {revision}: {_images(images)}) is contained: "
        f"{out_of_service} of its {len(mine)} pods out of service, their sessions re-pinned to "
        f"the previous version{budget_note}. To end it, {target}; the containment clears by "
        "itself when the Deployment's template changes"
    )
    section: dict[str, Any] = {
        "version": version,
        "revision": revision,
        "images": list(images),
        "pods": len(mine),
        "contained": out_of_service,
        "held": held,
        "message": message,
    }
    if revert_to:
        section["revertTo"] = dict(revert_to)
    return section
