"""The rollout guard next to a GitOps reconciler, on plain data: which action a failing version
gets (Auto, refusals, allowSpecChanges), the containment's drains within the budgets, what
contained pods are spared (eviction, health restores), when they come back, and what the
status and Events say."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planner_fixtures import NOW, findings, policy
from stickyguard.core import policy_status
from stickyguard.core.containment import (
    ALLOWED,
    COMPATIBLE,
    NOT_MANAGED,
    REFUSED,
    Budget,
    Containment,
    ContainPod,
    containment_status,
    guard_mode,
    plan_containment,
)
from stickyguard.core.gitops import UNMANAGED, Management
from stickyguard.core.planner import (
    CONTAIN,
    DRAIN,
    EVICT,
    ISOLATE,
    MARK_SERVING,
    RESTORE,
    PodState,
    plan,
)
from stickyguard.core.policy import Policy
from stickyguard.core.problems import HoldCause
from stickyguard.core.rollout import (
    CONTAIN as CONTAIN_ACTION,
)
from stickyguard.core.rollout import (
    FAIL,
    PAUSE,
    ROLLBACK,
    Cohort,
    GuardMemory,
    Revision,
    Verdict,
    Workload,
    decide,
    latched,
    remember,
)

FLUX = Management("Flux", "kustomize.toolkit.fluxcd.io/name=apps")
SETTINGS = ("Auto", "Contain", "Pause", "Rollback", "None")


def rollout_policy(
    on_fail: str = "Auto", allow: bool = False, hold: int = 0, **spec: dict[str, object]
) -> Policy:
    actions = dict(spec.pop("actions", {}))
    actions["rollout"] = {
        "onCanaryDegraded": on_fail,
        "allowSpecChanges": allow,
        "holdSeconds": hold,
    }
    return policy(workloadRef={"name": "web"}, actions=actions, **spec)


# --- which action a failing version gets ----------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "managed", "allow", "hold"),
    list(itertools.product(SETTINGS, (False, True), (False, True), (0, 60))),
)
def test_guard_mode_every_combination(setting: str, managed: bool, allow: bool, hold: int) -> None:
    mode = guard_mode(rollout_policy(setting, allow, hold), "web", FLUX if managed else UNMANAGED)
    spec_changing = setting in ("Pause", "Rollback") or hold > 0
    if not managed:
        # No GitOps: the policy is followed as written, Auto meaning Pause.
        assert mode.on_fail == ("Pause" if setting == "Auto" else setting)
        assert mode.hold == (hold > 0)
        assert (mode.conflict, mode.reason) == (False, NOT_MANAGED)
    elif setting in ("Auto", "Contain", "None") and hold == 0:
        assert mode.on_fail == ("Contain" if setting == "Auto" else setting)
        assert (mode.conflict, mode.reason) == (False, COMPATIBLE)
    elif allow:
        assert mode.on_fail == ("Contain" if setting == "Auto" else setting)
        assert mode.hold == (hold > 0)
        assert (mode.conflict, mode.reason) == (False, ALLOWED)
        assert "allowSpecChanges: true" in mode.message
    else:
        assert spec_changing
        # Refused: a spec-changing action becomes Contain, a hold is dropped, and the
        # condition names the fields and how to settle it.
        assert mode.on_fail == ("Contain" if setting in ("Auto", "Pause", "Rollback") else setting)
        assert mode.hold is False
        assert (mode.conflict, mode.reason) == (True, REFUSED)
        assert "Flux" in mode.message and "allowSpecChanges" in mode.message
        if setting in ("Pause", "Rollback"):
            assert f"onCanaryDegraded: {setting}" in mode.message
            assert ("spec.paused" if setting == "Pause" else "spec.template") in mode.message
        if hold:
            assert "holdSeconds" in mode.message


def _failing(new_pods: int = 2) -> Verdict:
    return Verdict(
        FAIL,
        Cohort(new_pods, 1000, 100, None),
        Cohort(4, 4000, 4, None),
        1e-9,
        "new version 10.00% bad vs 0.10%",
        None,
        new_pods / (new_pods + 4),
    )


W = Workload(
    "web",
    paused=False,
    new_hash="h2",
    revision="2",
    rolling=True,
    new_ready=1,
    revisions=(Revision("h1", 1, 4, 4, ("app:1",)), Revision("h2", 2, 2, 1, ("app:2",))),
)


def test_decide_contains_on_a_gitops_managed_deployment_by_default() -> None:
    managed = dataclasses.replace(W, management=FLUX)
    assert decide(rollout_policy(), managed, _failing(), NOW)[0] == CONTAIN_ACTION
    # ...and pauses without GitOps (Auto), as before
    assert decide(rollout_policy(), W, _failing(), NOW)[0] == PAUSE


def test_decide_refuses_pause_and_rollback_on_gitops_unless_allowed() -> None:
    managed = dataclasses.replace(W, management=FLUX)
    for setting in ("Pause", "Rollback"):
        assert decide(rollout_policy(setting), managed, _failing(), NOW)[0] == CONTAIN_ACTION
    assert decide(rollout_policy("Pause", allow=True), managed, _failing(), NOW)[0] == PAUSE
    assert decide(rollout_policy("Rollback", allow=True), managed, _failing(), NOW)[0] == ROLLBACK


def test_contain_goes_on_while_the_failed_version_is_current_rolling_or_not() -> None:
    p = rollout_policy("Contain")
    assert decide(p, W, _failing(), NOW)[0] == CONTAIN_ACTION
    still = dataclasses.replace(W, rolling=False)
    assert decide(p, still, _failing(), NOW)[0] == CONTAIN_ACTION
    assert decide(rollout_policy("None"), W, _failing(), NOW)[0] is None


def test_the_pods_contained_annotation_latches_the_version_when_status_was_lost() -> None:
    # The containment's writes landed, the status saying "h2 failed" did not (a lost lease, a
    # crash): the contained pods carry no traffic, so the judge is only inconclusive now.
    managed = dataclasses.replace(W, management=FLUX)
    quiet = dataclasses.replace(_failing(), verdict="inconclusive")
    memory = remember(GuardMemory(), managed, quiet, contained={"h2"})
    assert memory.failed == ("h2",)
    v = latched(managed, quiet, memory)
    assert v is not None and v.verdict == FAIL
    assert decide(rollout_policy(), managed, v, NOW)[0] == CONTAIN_ACTION
    # Without the annotation the version would be judged afresh, and not contained.
    fresh = remember(GuardMemory(), managed, quiet)
    assert fresh.failed == ()
    assert decide(rollout_policy(), managed, latched(managed, quiet, fresh), NOW)[0] is None
    # A version the pods do not record is not latched by them (a new rollout, h3).
    assert remember(GuardMemory(), managed, quiet, contained={"h1"}).failed == ()


def test_refused_hold_does_not_pause_a_gitops_managed_rollout() -> None:
    managed = dataclasses.replace(W, management=FLUX)
    ok = dataclasses.replace(_failing(), verdict="pass")
    assert decide(rollout_policy("Contain", hold=60), managed, ok, NOW)[0] is None
    assert decide(rollout_policy("Contain", hold=60), W, ok, NOW)[0] == "hold"


# --- the containment's drains ---------------------------------------------------------------


def budget(**kw: int) -> Budget:
    base = {
        "max_drained": 3,
        "drained": 0,
        "serving": 8,
        "min_ready": 2,
        "actions_left": 10,
        "max_drained_percent": 30,
        "max_actions_per_hour": 10,
        "members": 10,
    }
    base.update(kw)
    return Budget(**base)


def cpod(name: str, version: str = "h2", ready: bool = True, **kw: object) -> ContainPod:
    fields: dict[str, object] = {"drained": False, "contained": None, "claimed": False}
    fields.update(kw)
    return ContainPod(name, version, ready, **fields)  # type: ignore[arg-type]


ACTIVE = Containment("h2", True, "version h2: failing")


def test_containment_drains_the_current_version_only() -> None:
    pods = [cpod("a"), cpod("b"), cpod("old", "h1"), cpod("gone", "h0")]
    out = plan_containment(ACTIVE, pods, budget())
    assert out.drain == ("a", "b") and out.restore == () and out.held == ()
    assert (out.drained, out.serving, out.actions_left) == (2, 6, 8)


def test_containment_skips_drained_and_claimed_pods() -> None:
    pods = [cpod("a", drained=True, contained="h2"), cpod("b", claimed=True), cpod("c")]
    assert plan_containment(ACTIVE, pods, budget()).drain == ("c",)


@pytest.mark.parametrize(
    ("kw", "cause"),
    [
        ({"max_drained": 1}, HoldCause.MAX_DRAINED_PERCENT),
        ({"serving": 3, "min_ready": 2}, HoldCause.MIN_READY_PODS),
        ({"actions_left": 1}, HoldCause.MAX_ACTIONS_PER_HOUR),
    ],
)
def test_containment_contains_what_the_budget_allows_and_says_so(
    kw: dict[str, int], cause: HoldCause
) -> None:
    out = plan_containment(ACTIVE, [cpod("a"), cpod("b"), cpod("c")], budget(**kw))
    assert out.drain == ("a",)
    assert [h.cause for h in out.held] == [cause, cause]
    assert all("not contained" in str(h) for h in out.held)


def test_a_new_pod_that_never_served_costs_no_serving_capacity() -> None:
    # A gated pod of the failed version created later is not Ready: holding it back leaves
    # minReadyPods untouched (maxDrainedPercent still counts it).
    out = plan_containment(ACTIVE, [cpod("new", ready=False)], budget(serving=2, min_ready=2))
    assert out.drain == ("new",) and out.serving == 2 and out.drained == 1


def test_inactive_containment_restores_the_current_versions_pods_only() -> None:
    off = Containment("h2", False)
    pods = [cpod("a", drained=True, contained="h2"), cpod("b", "h1", drained=True, contained="h1")]
    out = plan_containment(off, pods, budget())
    # h1 was contained and is no longer current: the rollout is removing it; left out.
    assert out.restore == ("a",) and out.drain == ()
    # No guard (workloadRef removed, the workload not found): a failed version is not put
    # back without the guard's say; a person's undrain or deleting the policy does it.
    assert plan_containment(None, pods, budget()).restore == ()


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(["h1", "h2"]), st.booleans(), st.booleans()), max_size=12),
    st.integers(0, 12),
    st.integers(0, 12),
    st.integers(1, 6),
    st.integers(0, 12),
)
def test_containment_never_exceeds_a_budget(
    spec: list[tuple[str, bool, bool]], max_drained: int, drained: int, min_ready: int, left: int
) -> None:
    pods = [cpod(f"p{i}", v, ready, drained=d) for i, (v, ready, d) in enumerate(spec)]
    serving = sum(1 for p in pods if p.ready and not p.drained)
    b = budget(
        max_drained=max_drained,
        drained=drained,
        serving=serving,
        min_ready=min_ready,
        actions_left=left,
    )
    out = plan_containment(ACTIVE, pods, b)
    by_name = {p.name: p for p in pods}
    assert all(by_name[n].version == "h2" and not by_name[n].drained for n in out.drain)
    assert len(out.drain) <= left
    assert drained + len(out.drain) <= max(max_drained, drained)
    ready_drained = sum(1 for n in out.drain if by_name[n].ready)
    if ready_drained:
        assert serving - ready_drained >= min_ready
    # every candidate is either drained or reported held
    candidates = [p for p in pods if p.version == "h2" and not p.drained]
    assert len(out.drain) + len(out.held) == len(candidates)


# --- the containment inside the planner ------------------------------------------------------


def states() -> list[PodState]:
    old = [PodState(f"old-{i}", has_gate=True, version="h1") for i in range(6)]
    new = [PodState(f"new-{i}", has_gate=True, version="h2") for i in range(2)]
    return old + new


def test_planner_contains_before_health_drains_within_one_budget() -> None:
    p = rollout_policy("Contain", safety={"maxDrainedPercent": 25})  # 2 of 8
    f = findings(p, [0.5, 0.001, 0.001, 0.001, 0.001, 0.001, 0.001, 0.001])
    f = dataclasses.replace(f, degraded_pods=("old-0",), outlier_pods=("old-0",))
    pl = plan(p, states(), f, None, [], NOW, containment=ACTIVE)
    kinds = [(a.kind, a.pod) for a in pl.actions if a.kind != MARK_SERVING]
    assert kinds == [(CONTAIN, "new-0"), (CONTAIN, "new-1")]
    assert all(a.version == "h2" for a in pl.actions if a.kind == CONTAIN)
    assert any("old-0" in str(h) and "maxDrainedPercent" in str(h) for h in pl.blocked)


def test_planner_holds_back_new_pods_of_a_contained_version_not_in_dry_run() -> None:
    fresh = [
        *[PodState(f"old-{i}", has_gate=True, version="h1") for i in range(6)],
        PodState("new-0", has_gate=True, version="h2", ready=False, serving=None),
    ]
    enforce = plan(rollout_policy("Contain"), fresh, None, "x", [], NOW, containment=ACTIVE)
    assert [(a.kind, a.pod) for a in enforce.actions] == [(CONTAIN, "new-0")]
    dry = rollout_policy("Contain", actions={"mode": "DryRun"})
    dry_plan = plan(dry, fresh, None, "x", [], NOW, containment=ACTIVE)
    # DryRun never holds a rollout back: the new pod is marked serving; the containment is a would.
    assert [(a.kind, a.pod) for a in dry_plan.actions] == [(MARK_SERVING, "new-0")]
    assert [(a.kind, a.pod) for a in dry_plan.would] == [(CONTAIN, "new-0")]


def test_contained_pods_are_never_evicted_nor_restored_by_health() -> None:
    p = rollout_policy("Contain", actions={"drain": {"drainTimeoutSeconds": 10, "evict": True}})
    contained = [
        *[PodState(f"old-{i}", has_gate=True, version="h1") for i in range(6)],
        PodState(
            "new-0",
            has_gate=True,
            version="h2",
            serving=False,
            ready=False,
            drained_by="p",
            drained_at=NOW - 3600,
            contained="h2",
        ),
    ]
    f = findings(p, [0.001] * 7)
    pl = plan(p, contained, f, None, [], NOW, {"new-0": 0.0}, containment=ACTIVE)
    assert not [a for a in pl.actions if a.pod == "new-0" and a.kind in (EVICT, ISOLATE, RESTORE)]
    # after the revert (h1 current again) it stays out while the rollout removes it
    reverted = plan(p, contained, f, None, [], NOW, containment=Containment("h1", False))
    assert not [a for a in reverted.actions if a.pod == "new-0"]
    # a person can still put it back
    asked = [dataclasses.replace(s, undrain=True) if s.name == "new-0" else s for s in contained]
    again = plan(p, asked, f, None, [], NOW, containment=ACTIVE)
    assert (RESTORE, "new-0") in [(a.kind, a.pod) for a in again.actions]


def test_containment_does_not_wait_for_the_drain_cooldown_but_counts_per_hour() -> None:
    from stickyguard.core.planner import ActionRecord

    p = rollout_policy("Contain", safety={"cooldownSeconds": 600, "maxActionsPerHour": 2})
    history = [ActionRecord(NOW - 5, DRAIN, "old-9")]
    pl = plan(p, states(), None, "x", history, NOW, containment=ACTIVE)
    assert [(a.kind, a.pod) for a in pl.actions] == [(CONTAIN, "new-0")]
    assert any("maxActionsPerHour" in str(h) for h in pl.blocked)


# --- what the status and Events say -----------------------------------------------------------


def test_containment_status_says_what_to_revert() -> None:
    pods = [cpod("new-0", drained=True), cpod("new-1"), cpod("old-0", "h1")]
    section = containment_status(
        "web",
        "h2",
        "2",
        ["app:2"],
        pods,
        ["new-1"],
        {"version": "h1", "revision": "1", "images": ["app:1"]},
        "Flux",
    )
    assert section["contained"] == 2 and section["held"] == 0 and section["pods"] == 2
    assert "revert Deployment web in Git (Flux) to revision 1 (app:1)" in section["message"]
    assert "version h2 (revision 2: app:2)" in section["message"]
    held = containment_status("web", "h2", "2", [], pods, [], None, None)
    assert held["held"] == 1 and "kept serving by the budgets" in held["message"]
    assert "revert or fix Deployment web" in held["message"]


def _guarded(reason: str, status: str = "False") -> dict[str, object]:
    return {"type": "RolloutGuarded", "status": status, "reason": reason, "message": f"m {reason}"}


def test_containment_event_on_transitions_only() -> None:
    contained = _guarded("VersionContained")
    first = policy_status.guard_events({}, [contained], dry_run=False)
    assert [(e.type, e.reason) for e in first] == [("Warning", "VersionContained")]
    previous = {
        "conditions": [contained],
        "rollout": {"containment": {"version": "h2"}},
    }
    assert policy_status.guard_events(previous, [contained], dry_run=False) == []
    cleared = policy_status.guard_events(previous, [_guarded("NoRollout", "True")], False)
    assert [(e.type, e.reason) for e in cleared] == [("Normal", "ContainmentCleared")]
    assert "version h2" in cleared[0].message
    dry = policy_status.guard_events({}, [contained], dry_run=True)
    assert [e.reason for e in dry] == ["WouldContainVersion"]


def test_gitops_conflict_event_on_transitions_only() -> None:
    refused = {"type": "GitOpsConflict", "status": "True", "reason": REFUSED, "message": "m"}
    fine = {"type": "GitOpsConflict", "status": "False", "reason": COMPATIBLE, "message": "ok"}
    assert [e.reason for e in policy_status.guard_events({}, [refused], False)] == [REFUSED]
    assert policy_status.guard_events({}, [fine], False) == []
    assert policy_status.guard_events({"conditions": [refused]}, [refused], False) == []
    back = policy_status.guard_events({"conditions": [refused]}, [fine], False)
    assert [(e.type, e.reason) for e in back] == [("Normal", COMPATIBLE)]


def test_status_lists_contained_pods_with_their_phase() -> None:
    p = rollout_policy("Contain", safety={"maxDrainedPercent": 100, "minReadyPods": 1})
    pods = [
        PodState("new-0", version="h2", drained_by="p", drained_at=NOW - 5, contained="h2"),
        PodState("new-1", version="h2"),
        PodState("old-0", version="h1"),
    ]
    pl = plan(p, pods, None, "x", [], NOW, containment=ACTIVE)
    status = policy_status.build_status(p, pods, None, "x", pl, {}, NOW)
    assert [(d["pod"], d["phase"]) for d in status["drained"]] == [
        ("new-0", "Contained"),
        ("new-1", "Contained"),
    ]
    assert status["pods"]["drained"] == 2


def test_stickyguard_status_shows_the_containment_and_refusals() -> None:
    from stickyguard.core.status_table import render

    obj = {
        "metadata": {"namespace": "shop", "name": "web", "generation": 1},
        "spec": {"actions": {"mode": "Enforce"}},
        "status": {
            "observedGeneration": 1,
            "conditions": [
                {"type": "GitOpsConflict", "status": "True", "reason": REFUSED, "message": "no"}
            ],
            "rollout": {
                "workload": "web",
                "containment": {
                    "version": "h2",
                    "revision": "2",
                    "pods": 1,
                    "contained": 1,
                    "revertTo": {"version": "h1", "revision": "1", "images": ["web:v1"]},
                    "message": "version h2 is contained: revert it",
                },
            },
        },
    }
    text = render([obj], NOW)
    assert "h2 (revision 2)" in text and "1/1" in text and "revision 1 (web:v1)" in text
    assert "shop/web: version h2 is contained: revert it" in text
    assert "shop/web: no" in text


def test_revert_target_is_the_newest_older_version_that_never_failed() -> None:
    from stickyguard.core.rollout import GuardMemory, revert_target

    w = dataclasses.replace(
        W,
        new_hash="h3",
        revisions=(Revision("h1", 1, 0, 0), Revision("h2", 2, 0, 0), Revision("h3", 3, 1, 0)),
    )
    # nothing seen available (a young policy, minReadySeconds): still the previous version
    assert revert_target(w, GuardMemory()) == w.revisions[1]
    assert revert_target(w, GuardMemory(failed=("h3", "h2"))) == w.revisions[0]
    assert revert_target(w, GuardMemory(known_good=("h1",))) == w.revisions[0]
    only = dataclasses.replace(w, revisions=(w.revisions[2],))
    assert revert_target(only, GuardMemory()) is None


def test_gitops_examples_are_what_docs_gitops_says() -> None:
    """The StickyPolicy in examples/gitops parses and uses Auto; the Deployment carries the
    readiness gate Contain relies on; the Argo CD Application ignores stickyguard's fields.
    (The Flux objects and apps/web are applied by tests/integration/test_flux.py.)"""
    import yaml

    from policies import REPO
    from stickyguard.core.names import SERVING, VERSION
    from stickyguard.core.policy import parse_policy

    root = REPO / "examples" / "gitops"
    obj = yaml.safe_load((root / "apps/web/stickypolicy.yaml").read_text())
    obj["metadata"]["namespace"] = "shop"
    assert obj["apiVersion"].endswith(VERSION)
    p = parse_policy(obj)
    assert p.actions.rollout.on_canary_degraded == "Auto" and p.workload_ref is not None
    dep = yaml.safe_load((root / "apps/web/deployment.yaml").read_text())
    gates = dep["spec"]["template"]["spec"]["readinessGates"]
    assert gates == [{"conditionType": SERVING}] and dep["spec"]["minReadySeconds"] > 0
    app = yaml.safe_load((root / "argocd/application.yaml").read_text())
    ignored = app["spec"]["ignoreDifferences"]
    assert {"group": "apps", "kind": "Deployment", "managedFieldsManagers": ["stickyguard"]} in (
        ignored
    )
    ks = yaml.safe_load((root / "flux/kustomization.yaml").read_text())
    assert (root / ks["spec"]["path"] / "kustomization.yaml").is_file()
