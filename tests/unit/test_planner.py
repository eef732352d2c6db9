"""The planner on plain data: the action ladder, every budget, fail static, DryRun, and
invariants (hypothesis) over arbitrary metrics and cluster states."""

from __future__ import annotations

import dataclasses
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from planner_fixtures import NOW, findings, pods, policy
from stickyguard.core.analysis import Findings, PodMeta, PodSample, Track, analyze, single_shot
from stickyguard.core.planner import (
    COMPLETE_ISOLATE,
    CORDON,
    DRAIN,
    EVICT,
    ISOLATE,
    MARK_SERVING,
    RESTORE,
    ActionRecord,
    Plan,
    PodState,
    plan,
)
from stickyguard.core.policy import Policy


def kinds(pl: Plan) -> list[tuple[str, str]]:
    return [(a.kind, a.pod) for a in pl.actions if a.kind != MARK_SERVING]


def test_drains_the_degraded_pod() -> None:
    p = policy()
    pl = plan(p, pods(6), findings(p, [0.2] + [0.001] * 5), None, [], NOW)
    assert kinds(pl) == [(DRAIN, "pod-00")]
    assert "bad vs" in pl.actions[0].reason


def test_worst_first_within_max_drained_percent() -> None:
    p = policy(safety={"maxDrainedPercent": 25})
    f = findings(p, [0.1, 0.3] + [0.001] * 8)
    pl = plan(p, pods(10), f, None, [], NOW)
    # floor(10 * 25%) = 2 may be drained at once: both go, worst first
    assert kinds(pl) == [(DRAIN, "pod-01"), (DRAIN, "pod-00")]
    assert pl.blocked == ()


def test_max_drained_percent_rounds_down() -> None:
    p = policy(
        safety={"maxDrainedPercent": 25},
        detection={"relativeThreshold": 1.5, "fleetWideFraction": 0.9},
    )
    f = findings(p, [0.2] * 4 + [0.001] * 2)
    pl = plan(p, pods(6), f, None, [], NOW)
    assert len(kinds(pl)) == 1
    assert sum("maxDrainedPercent 25 allows 1 of 6" in str(b) for b in pl.blocked) == 3


def test_no_drain_when_budget_rounds_to_zero() -> None:
    p = policy(safety={"maxDrainedPercent": 25})
    pl = plan(p, pods(3), findings(p, [0.2, 0.001, 0.001]), None, [], NOW)
    assert kinds(pl) == []
    assert "allows 0 of 3" in str(pl.blocked[0])


def test_min_ready_pods() -> None:
    p = policy(safety={"maxDrainedPercent": 100, "minReadyPods": 3})
    states = pods(4)
    states[3] = dataclasses.replace(states[3], ready=False)
    pl = plan(p, states, findings(p, [0.2, 0.001, 0.001, 0.001]), None, [], NOW)
    assert kinds(pl) == []
    assert "minReadyPods 3" in str(pl.blocked[0])


def test_max_actions_per_hour_counts_the_last_hour_only() -> None:
    p = policy(safety={"maxActionsPerHour": 2})
    f = findings(p, [0.2] + [0.001] * 9)
    recent = [ActionRecord(NOW - 100, DRAIN, "x"), ActionRecord(NOW - 200, EVICT, "x")]
    assert kinds(plan(p, pods(10), f, None, recent, NOW)) == []
    old = [ActionRecord(NOW - 4000, DRAIN, "x"), ActionRecord(NOW - 200, EVICT, "x")]
    assert kinds(plan(p, pods(10), f, None, old, NOW)) == [(DRAIN, "pod-00")]


def test_cooldown_between_drains() -> None:
    p = policy(safety={"cooldownSeconds": 300})
    f = findings(p, [0.2] + [0.001] * 9)
    hist = [ActionRecord(NOW - 100, DRAIN, "other")]
    pl = plan(p, pods(10), f, None, hist, NOW)
    assert kinds(pl) == [] and "cooldownSeconds 300" in str(pl.blocked[0])
    assert kinds(plan(p, pods(10), f, None, [ActionRecord(NOW - 301, DRAIN, "o")], NOW))


def test_fail_static() -> None:
    p = policy()
    f = findings(p, [0.2] + [0.001] * 5)
    drained = pods(6)
    drained[1] = dataclasses.replace(
        drained[1], drained_by="p", drained_at=NOW - 9999, serving=False
    )
    pl = plan(p, drained, None, "total: Prometheus unreachable", [], NOW)
    assert kinds(pl) == []
    assert any("metrics unavailable" in str(b) for b in pl.blocked)
    pl = plan(p, drained, f, "bad: timed out", [], NOW)
    assert kinds(pl) == []


def test_fleet_wide_and_insufficient_data_drain_nothing() -> None:
    p = policy()
    assert kinds(plan(p, pods(6), findings(p, [0.05] * 6), None, [], NOW)) == []
    thin = analyze([PodSample("pod-00", 10, 5)], {}, p.detection, p.impact)
    assert kinds(plan(p, pods(6), thin, None, [], NOW)) == []


def test_evict_after_timeout_or_empty_sessions() -> None:
    p = policy(actions={"drain": {"drainTimeoutSeconds": 300}})
    f = findings(p, [0.001] * 6)
    s = pods(6)
    s[0] = dataclasses.replace(s[0], drained_by="p", drained_at=NOW - 100, serving=False)
    assert kinds(plan(p, s, f, None, [], NOW)) == []
    assert kinds(plan(p, s, f, None, [], NOW, {"pod-00": 0.0})) == [(EVICT, "pod-00")]
    assert kinds(plan(p, s, f, None, [], NOW, {"pod-00": 4.0})) == []
    assert kinds(plan(p, s, f, None, [], NOW + 200)) == [(EVICT, "pod-00")]


def test_no_eviction_when_evict_is_false() -> None:
    p = policy(actions={"drain": {"evict": False}})
    s = pods(6)
    s[0] = dataclasses.replace(s[0], drained_by="p", drained_at=NOW - 10_000, serving=False)
    assert kinds(plan(p, s, findings(p, [0.001] * 6), None, [], NOW)) == []


def test_restore_on_request_and_after_recovery() -> None:
    p = policy(actions={"drain": {"evict": False}}, detection={"recoveryEvaluations": 3})
    s = pods(6)
    s[0] = dataclasses.replace(
        s[0], drained_by="p", drained_at=NOW - 10, undrain=True, serving=False
    )
    assert kinds(plan(p, s, None, "down", [], NOW)) == [(RESTORE, "pod-00")]
    s[0] = dataclasses.replace(s[0], undrain=False)
    f = findings(p, [0.001] * 6, {"pod-00": Track(0, 1, True)})
    assert kinds(plan(p, s, f, None, [], NOW)) == []
    f = findings(p, [0.001] * 6, {"pod-00": Track(0, 2, True)})
    assert kinds(plan(p, s, f, None, [], NOW)) == [(RESTORE, "pod-00")]


def test_pods_drained_by_another_policy_are_left_alone() -> None:
    p = policy()
    s = pods(6)
    s[0] = dataclasses.replace(s[0], drained_by="other", drained_at=NOW - 10_000, serving=False)
    pl = plan(p, s, findings(p, [0.001] * 6), None, [], NOW)
    assert pl.actions == ()


def test_marks_gated_pods_serving_but_not_drained_ones() -> None:
    p = policy()
    s = pods(4, serving=None)
    s[1] = dataclasses.replace(s[1], drained_by="p", drained_at=NOW, serving=False)
    pl = plan(p, s, findings(p, [0.001] * 4), None, [], NOW)
    marked = [a.pod for a in pl.actions if a.kind == MARK_SERVING]
    assert marked == ["pod-00", "pod-02", "pod-03"]


def test_service_label_method_marks_nothing() -> None:
    p = policy(actions={"drain": {"method": "ServiceLabel"}})
    assert plan(p, pods(4, serving=None), findings(p, [0.001] * 4), None, [], NOW).actions == ()


def test_dry_run_moves_actions_to_would() -> None:
    p = policy(actions={"mode": "DryRun"})
    s = pods(6, serving=None)
    pl = plan(p, s, findings(p, [0.2] + [0.001] * 5), None, [], NOW)
    assert [(a.kind, a.pod) for a in pl.would] == [(DRAIN, "pod-00")]
    assert all(a.kind == MARK_SERVING for a in pl.actions)


# --- invariants ---------------------------------------------------------------------------
def apply(states: list[PodState], pl: Plan, name: str) -> list[PodState]:
    out = []
    for s in states:
        for a in pl.actions:
            if a.pod != s.name:
                continue
            if a.kind == DRAIN:
                s = dataclasses.replace(
                    s, drained_by=name, drained_at=NOW, ready=False, serving=False
                )
            elif a.kind == RESTORE:
                s = dataclasses.replace(
                    s, drained_by=None, drained_at=None, ready=True, serving=True, undrain=False
                )
            elif a.kind == EVICT:
                s = dataclasses.replace(s, deleting=True)
            elif a.kind == MARK_SERVING:
                s = dataclasses.replace(s, serving=True)
        out.append(s)
    return out


@st.composite
def situations(draw: st.DrawFn) -> tuple[Policy, list[PodState], Findings | None, str | None]:
    n = draw(st.integers(1, 16))
    p = policy(
        safety={
            "maxDrainedPercent": draw(st.integers(1, 100)),
            "minReadyPods": draw(st.integers(1, 6)),
            "maxActionsPerHour": draw(st.integers(0, 20)),
        },
        detection={"fleetWideFraction": draw(st.sampled_from([0.3, 0.5, 0.9]))},
    )
    ratios = draw(
        st.lists(
            st.one_of(st.floats(0, 1), st.just(math.nan), st.just(-1.0)), min_size=n, max_size=n
        )
    )
    volumes = draw(st.lists(st.floats(0, 5000), min_size=n, max_size=n))
    samples = [
        PodSample(f"pod-{i:02d}", v, v * r)
        for i, (v, r) in enumerate(zip(volumes, ratios, strict=True))
    ]
    states = []
    for i in range(n):
        drained = draw(st.booleans()) and draw(st.booleans())
        states.append(
            PodState(
                f"pod-{i:02d}",
                has_gate=True,
                ready=not drained and draw(st.booleans() | st.just(True)),
                drained_by="p" if drained else None,
                drained_at=NOW - draw(st.floats(0, 1000)) if drained else None,
                serving=not drained,
            )
        )
    problem = draw(st.sampled_from([None, None, None, "total: unreachable"]))
    f = None if problem and draw(st.booleans()) else analyze(samples, {}, p.detection, p.impact)
    return p, states, f, problem


@settings(max_examples=300, deadline=None)
@given(situations())
def test_invariants(sit: tuple[Policy, list[PodState], Findings | None, str | None]) -> None:
    p, states, f, problem = sit
    pl = plan(p, states, f, problem, [], NOW)
    drains = [a for a in pl.actions if a.kind == DRAIN]
    live = [s for s in states if not s.deleting]
    drained_before = sum(1 for s in live if s.drained_by == "p")
    restored = sum(1 for a in pl.actions if a.kind == RESTORE)
    if drains:
        # never act without usable metrics, nor unless the verdict is concentrated
        assert problem is None and f is not None and f.classification == "concentrated"
        # never exceed maxDrainedPercent...
        after = drained_before - restored + len(drains)
        assert after <= math.floor(len(live) * p.safety.max_drained_percent / 100)
        # ...nor leave fewer than minReadyPods serving
        # (draining a pod that is not Ready takes no serving capacity)
        ready = {s.name for s in live if s.ready}
        serving_after = sum(1 for s in live if s.ready and s.drained_by is None) - sum(
            1 for a in drains if a.pod in ready
        )
        assert serving_after >= p.safety.min_ready_pods
    if problem is not None or f is None:
        assert not [a for a in pl.actions if a.kind in (DRAIN, EVICT)]
    assert len([a for a in pl.actions if a.kind in (DRAIN, EVICT)]) <= p.safety.max_actions_per_hour
    # idempotent: planning again right after applying the plan drains nothing new (an
    # eviction or a restore frees budget for the next step of the ladder, by design)
    if not [a for a in pl.actions if a.kind in (EVICT, RESTORE)]:
        history = [ActionRecord(NOW, a.kind, a.pod) for a in drains]
        again = plan(p, apply(states, pl, "p"), f, problem, history, NOW)
        assert not [a for a in again.actions if a.kind in (DRAIN, MARK_SERVING)]


def test_isolate_instead_of_evict_then_delete_after_ttl() -> None:
    p = policy(
        actions={
            "isolate": {"enabled": True, "ttlSeconds": 600},
            "drain": {"drainTimeoutSeconds": 60},
        }
    )
    f = findings(p, [0.001] * 6)
    s = pods(6)
    s[0] = dataclasses.replace(s[0], drained_by="p", drained_at=NOW - 100, serving=False)
    assert kinds(plan(p, s, f, None, [], NOW)) == [(ISOLATE, "pod-00")]
    s[0] = dataclasses.replace(s[0], isolated_at=NOW - 100)
    assert kinds(plan(p, s, f, None, [], NOW)) == []
    s[0] = dataclasses.replace(s[0], isolated_at=NOW - 601, undrain=True)
    assert kinds(plan(p, s, f, None, [], NOW)) == [(EVICT, "pod-00")]


def test_an_interrupted_isolation_is_finished_without_budget() -> None:
    # The record landed with the placeholder label, the removal of the label did not.
    p = policy(actions={"isolate": {"enabled": True}}, safety={"maxActionsPerHour": 0})
    f = findings(p, [0.001] * 6)
    s = pods(6)
    s[0] = dataclasses.replace(
        s[0], drained_by="p", serving=False, isolated_at=NOW - 10, version="stickyguard-removing"
    )
    assert kinds(plan(p, s, f, None, [], NOW)) == [(COMPLETE_ISOLATE, "pod-00")]
    s[0] = dataclasses.replace(s[0], version="")
    assert kinds(plan(p, s, f, None, [], NOW)) == []


def test_isolated_pods_do_not_count_against_max_drained() -> None:
    p = policy(safety={"maxDrainedPercent": 20})
    states = [
        *pods(5),
        PodState("old", drained_by="p", drained_at=NOW, isolated_at=NOW, ready=False),
    ]
    f = findings(p, [0.2, 0.001, 0.001, 0.001, 0.001])
    assert kinds(plan(p, states, f, None, [], NOW)) == [(DRAIN, "pod-00")]


def test_cordon_the_node_holding_the_damage_once() -> None:
    p = policy(actions={"cordonNode": True}, safety={"maxDrainedPercent": 50})
    samples = [
        PodSample(f"pod-{i:02d}", 2000, 2000 * (0.1 if i in (0, 3) else 0.001)) for i in range(9)
    ]
    meta = {f"pod-{i:02d}": PodMeta(f"pod-{i:02d}", node=f"n{i % 3}") for i in range(9)}
    # A first look has no sequential evidence yet: outliers of the window, but no cordon (a
    # cordon needs what a drain needs).
    first = analyze(samples, meta, p.detection, p.impact)
    assert set(first.outlier_pods) >= {"pod-00", "pod-03"} and not first.degraded_pods
    assert CORDON not in [a.kind for a in plan(p, pods(9), first, None, [], NOW).actions]
    f = analyze(samples, meta, single_shot(p.detection), p.impact)
    pl = plan(p, pods(9), f, None, [], NOW)
    assert (CORDON, "") in kinds(pl)
    assert next(a for a in pl.actions if a.kind == CORDON).node == "n0"
    assert (CORDON, "") not in kinds(plan(p, pods(9), f, None, [], NOW, None, frozenset({"n0"})))
    off = policy(safety={"maxDrainedPercent": 50})
    assert (CORDON, "") not in kinds(plan(off, pods(9), f, None, [], NOW))


def test_cordon_needs_two_outlier_pods_on_the_node_one_node_an_hour_and_is_undone() -> None:
    from stickyguard.core.planner import UNCORDON

    p = policy(actions={"cordonNode": True}, safety={"maxDrainedPercent": 50})
    meta = {f"pod-{i:02d}": PodMeta(f"pod-{i:02d}", node=f"n{i}") for i in range(9)}
    one_per_node = [
        PodSample(f"pod-{i:02d}", 2000, 2000 * (0.1 if i == 0 else 0.001)) for i in range(9)
    ]
    states = [PodState(f"pod-{i:02d}", node=f"n{i}", has_gate=True) for i in range(9)]
    f = analyze(one_per_node, meta, single_shot(p.detection), p.impact)
    assert f.concentration is not None and f.concentration.share == 1.0
    assert CORDON not in [a.kind for a in plan(p, states, f, None, [], NOW).actions]
    # Two bad pods on n0, but this policy cordoned a node 10 minutes ago: no second node.
    shared = {f"pod-{i:02d}": PodMeta(f"pod-{i:02d}", node=f"n{i % 3}") for i in range(9)}
    two = [
        PodSample(f"pod-{i:02d}", 2000, 2000 * (0.1 if i in (0, 3) else 0.001)) for i in range(9)
    ]
    f2 = analyze(two, shared, single_shot(p.detection), p.impact)
    recent = [ActionRecord(NOW - 600, CORDON, "n1")]
    pl = plan(p, pods(9), f2, None, recent, NOW)
    assert CORDON not in [a.kind for a in pl.actions]
    assert any("one node per policy per hour" in str(b) for b in pl.blocked)
    # Once n0's pods have recovered, the node is uncordoned.
    calm = [PodSample(f"pod-{i:02d}", 2000, 2.0) for i in range(9)]
    healthy = analyze(calm, shared, single_shot(p.detection), p.impact)
    shared_states = [PodState(f"pod-{i:02d}", node=f"n{i % 3}") for i in range(9)]
    acts = plan(p, shared_states, healthy, None, [], NOW, None, frozenset({"n0"})).actions
    assert [(a.kind, a.node) for a in acts if a.kind == UNCORDON] == [(UNCORDON, "n0")]


def test_a_cordoned_node_stays_cordoned_while_its_pods_are_drained_or_unjudged() -> None:
    """A drained pod serves nothing, so it soon stops being an outlier: that is not recovery.
    Nor is a node whose bad pods were evicted and that holds no judged pod."""
    from stickyguard.core.planner import UNCORDON

    p = policy(actions={"cordonNode": True}, safety={"maxDrainedPercent": 50})
    shared = {f"pod-{i:02d}": PodMeta(f"pod-{i:02d}", node=f"n{i % 3}") for i in range(9)}
    calm = analyze(
        [PodSample(f"pod-{i:02d}", 2000, 2.0) for i in range(9)],
        shared,
        single_shot(p.detection),
        p.impact,
    )
    states = [PodState(f"pod-{i:02d}", node=f"n{i % 3}") for i in range(9)]

    def uncordons(s: list[PodState], f: Findings = calm) -> bool:
        acts = plan(p, s, f, None, [], NOW, None, frozenset({"n0"})).actions
        return any(a.kind == UNCORDON for a in acts)

    drained = [
        dataclasses.replace(s, drained_by="p", serving=False)
        if s.name in ("pod-00", "pod-03")
        else s
        for s in states
    ]
    assert not uncordons(drained)
    evicted = [s for s in states if s.name not in ("pod-00", "pod-03", "pod-06")]
    assert not uncordons(evicted)
    assert uncordons(states)


def test_a_restore_frees_its_slot_only_once_it_has_happened() -> None:
    # One of four may be drained: pod-03 is drained and a person asks to undrain it as pod-00
    # turns bad. The restore may fail while a drain after it succeeds, so the drain waits for
    # the next cycle, when the restore has happened.
    p = policy(safety={"maxDrainedPercent": 25})
    s = pods(4)
    s[3] = dataclasses.replace(
        s[3], drained_by="p", drained_at=NOW - 30, serving=False, ready=False, undrain=True
    )
    f = findings(p, [0.3, 0.001, 0.001, 0.001])
    pl = plan(p, s, f, None, [], NOW)
    assert kinds(pl) == [(RESTORE, "pod-03")]
    assert "maxDrainedPercent 25 allows 1 of 4" in str(pl.blocked)
    s[3] = dataclasses.replace(s[3], drained_by=None, drained_at=None, serving=True, ready=True)
    assert kinds(plan(p, s, f, None, [], NOW)) == [(DRAIN, "pod-00")]


def test_an_interrupted_drain_is_finished_before_its_pod_is_evicted() -> None:
    # The record landed long ago (the policy sat in DryRun meanwhile) but the pod kept serving:
    # the drain is finished now, and its sessions get their time before any eviction.
    p = policy(actions={"drain": {"drainTimeoutSeconds": 60}})
    s = pods(6)
    s[0] = dataclasses.replace(s[0], drained_by="p", drained_at=NOW - 600, serving=True)
    f = findings(p, [0.2] + [0.001] * 5)
    assert kinds(plan(p, s, f, None, [], NOW)) == [("complete_drain", "pod-00")]


def test_an_interrupted_drain_of_a_pod_that_recovered_is_restored_not_finished() -> None:
    p = policy(detection={"recoveryEvaluations": 3})
    s = pods(6)
    s[0] = dataclasses.replace(s[0], drained_by="p", drained_at=NOW - 600, serving=True)
    f = findings(p, [0.001] * 6, {"pod-00": Track(0, 2, False)})
    assert kinds(plan(p, s, f, None, [], NOW)) == [(RESTORE, "pod-00")]


def test_dry_run_keeps_every_pod_serving_and_honours_a_requested_restore() -> None:
    p = policy(actions={"mode": "DryRun"}, safety={"maxDrainedPercent": 50})
    s = pods(6, serving=None)
    s[5] = dataclasses.replace(
        s[5], drained_by="p", drained_at=NOW - 30, serving=False, undrain=True
    )
    pl = plan(p, s, findings(p, [0.2] + [0.001] * 5), None, [], NOW)
    # pod-00, which it would drain, is marked serving too: DryRun keeps no pod out of service.
    marked = {a.pod for a in pl.actions if a.kind == MARK_SERVING}
    assert marked == {f"pod-{i:02d}" for i in range(5)}
    assert kinds(pl) == [(RESTORE, "pod-05")]
    assert [(a.kind, a.pod) for a in pl.would] == [(DRAIN, "pod-00")]


def test_a_pod_drained_before_the_selector_changed_is_put_back() -> None:
    # The selector was edited: pod-09 no longer matches. It left the policy, its budgets and
    # its restore rules, so the policy puts it back at once (in DryRun too), and the drain
    # budget counts the selected pods only.
    for mode in ("Enforce", "DryRun"):
        p = policy(actions={"mode": mode}, safety={"maxDrainedPercent": 25})
        s = pods(4)
        stray = PodState(
            "pod-09", drained_by="p", drained_at=NOW - 30, serving=False, selected=False
        )
        other = PodState("pod-10", drained_by="other", serving=False, selected=False)
        # A contained stray is of a failed version: it waits for a person's undrain.
        failed = PodState(
            "pod-11", drained_by="p", serving=False, selected=False, contained="h2", version="h2"
        )
        f = findings(p, [0.3, 0.001, 0.001, 0.001])
        pl = plan(p, [*s, stray, other, failed], f, None, [], NOW)
        assert not [a for a in [*pl.actions, *pl.would] if a.pod == "pod-11"]
        asked = dataclasses.replace(failed, undrain=True)
        assert (RESTORE, "pod-11") in kinds(plan(p, [*s, asked], f, None, [], NOW))
        assert (RESTORE, "pod-09") in kinds(pl)
        assert "no longer selected" in next(a.reason for a in pl.actions if a.pod == "pod-09")
        done = kinds(pl) if mode == "Enforce" else [(a.kind, a.pod) for a in pl.would]
        assert (DRAIN, "pod-00") in done
        assert not [a for a in [*pl.actions, *pl.would] if a.pod == "pod-10"]
