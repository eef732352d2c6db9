"""The rollout guard and the gate on plain data."""

from __future__ import annotations

import dataclasses

from planner_fixtures import NOW, policy
from stickyguard.core.analysis import PodMeta, PodSample
from stickyguard.core.planner import DEGRADED_COST, PodState, deletion_costs
from stickyguard.core.rollout import (
    FAIL,
    FLEET_WIDE,
    HOLD,
    INCONCLUSIVE,
    PASS,
    PAUSE,
    RESUME,
    ROLLBACK,
    Revision,
    Workload,
    decide,
    judge,
)


def fleet(
    new_ratio: float,
    old_ratio: float,
    n_new: int = 2,
    n_old: int = 4,
    volume: float = 1000,
    sessions: tuple[float, float] | None = None,
) -> tuple[list[PodSample], dict[str, PodMeta]]:
    samples, meta = [], {}
    for i in range(n_new + n_old):
        new = i < n_new
        name = f"{'new' if new else 'old'}-{i}"
        r = new_ratio if new else old_ratio
        active = None if sessions is None else sessions[0 if new else 1]
        samples.append(PodSample(name, volume, volume * r, active))
        meta[name] = PodMeta(name, labels={"pod-template-hash": "h2" if new else "h1"})
    return samples, meta


W = Workload(
    "web",
    paused=False,
    new_hash="h2",
    revision="2",
    rolling=True,
    new_ready=2,
    revisions=(Revision("h1", 1, 4, 4), Revision("h2", 2, 2, 2)),
)


def test_bad_new_version_fails() -> None:
    v = judge(policy(), *fleet(0.1, 0.001), "h2")
    assert v.verdict == FAIL and v.p_value is not None and v.p_value < 1e-6
    assert (v.new.pods, v.old.pods) == (2, 4)


def test_healthy_new_version_passes() -> None:
    assert judge(policy(), *fleet(0.0012, 0.001), "h2").verdict == PASS


def test_old_and_new_degraded_alike_is_fleet_wide() -> None:
    assert judge(policy(), *fleet(0.05, 0.05), "h2").verdict == FLEET_WIDE


def test_thin_new_cohort_is_inconclusive() -> None:
    assert judge(policy(), *fleet(0.5, 0.001, volume=10), "h2").verdict == INCONCLUSIVE


def test_stickiness_drift_is_reported() -> None:
    v = judge(policy(), *fleet(0.001, 0.001, sessions=(5, 45)), "h2")
    assert v.pod_share == 2 / 6
    assert v.session_share == 10 / (10 + 180)


def test_decide_pause_and_rollback() -> None:
    v = judge(policy(), *fleet(0.1, 0.001), "h2")
    assert decide(policy(), W, v, NOW)[0] == PAUSE
    assert decide(policy(), dataclasses.replace(W, paused=True), v, NOW)[0] is None
    rb = policy(actions={"rollout": {"onCanaryDegraded": "Rollback"}})
    assert decide(rb, W, v, NOW)[0] == ROLLBACK
    off = policy(actions={"rollout": {"onCanaryDegraded": "None"}})
    assert decide(off, W, v, NOW)[0] is None
    assert decide(policy(), dataclasses.replace(W, rolling=False), v, NOW)[0] is None


def test_hold_then_resume_when_healthy() -> None:
    p = policy(actions={"rollout": {"holdSeconds": 60}}, workloadRef={"name": "web"})
    ok = judge(p, *fleet(0.001, 0.001), "h2")
    assert decide(p, W, ok, NOW)[0] == HOLD
    held = dataclasses.replace(W, paused=True, paused_by_us=True, hold_started=NOW)
    assert decide(p, held, ok, NOW + 30)[0] is None
    assert decide(p, held, ok, NOW + 61)[0] == RESUME
    bad = judge(p, *fleet(0.1, 0.001), "h2")
    assert decide(p, held, bad, NOW + 61)[0] is None  # already paused: stays paused
    done = dataclasses.replace(W, hold_done=True)
    assert decide(p, done, ok, NOW)[0] is None


def test_deletion_costs_rank_degraded_then_fewest_sessions() -> None:
    pods = [PodState(n) for n in ("a", "b", "c", "d")]
    costs = deletion_costs(pods, ["d"], {"a": 100, "b": 3, "c": None, "d": 500})
    assert costs["d"] == DEGRADED_COST
    assert costs["c"] < costs["b"] < costs["a"]
    # small changes in sessions do not change the cost (no write storms)
    assert deletion_costs(pods, [], {"a": 101})["a"] == deletion_costs(pods, [], {"a": 120})["a"]


def test_no_comparison_is_inconclusive_never_fail() -> None:
    """A fleet-wide 5% outage with the old cohort almost drained used to roll back a healthy
    version; and with no rollout at all there is nothing to blame the new version against."""
    from stickyguard.core.analysis import PodMeta, PodSample
    from stickyguard.core.policy import parse_policy
    from stickyguard.core.rollout import INCONCLUSIVE, judge

    policy = parse_policy(
        {
            "metadata": {"name": "p", "namespace": "n"},
            "spec": {"selector": {"matchLabels": {"a": "b"}}},
        }
    )
    meta = {
        f"new-{i}": PodMeta(f"new-{i}", labels={"pod-template-hash": "v2"}) for i in range(3)
    } | {"old-0": PodMeta("old-0", labels={"pod-template-hash": "v1"})}
    new = [PodSample(f"new-{i}", 1000.0, 50.0) for i in range(3)]
    thin_old = judge(policy, [*new, PodSample("old-0", 10.0, 0.5)], meta, "v2")
    assert thin_old.verdict == INCONCLUSIVE
    no_rollout = judge(policy, new, meta, "v2")
    assert no_rollout.verdict == INCONCLUSIVE and "no rollout" in no_rollout.reason


def _fleet_wide_false_fails(old_events: int, draws: int, seed: int) -> float:
    """Share of evaluations that fail a healthy version during a fleet-wide 5% outage, the old
    cohort drawn at random with `old_events` events (the new one: 3 pods x 1000 at 5%)."""
    import random

    rng = random.Random(seed)
    meta = {f"new-{i}": PodMeta(f"new-{i}", labels={"pod-template-hash": "v2"}) for i in range(3)}
    meta["old-0"] = PodMeta("old-0", labels={"pod-template-hash": "v1"})
    fails = 0
    for _ in range(draws):
        samples = [
            PodSample(f"new-{i}", 1000.0, float(sum(rng.random() < 0.05 for _ in range(1000))))
            for i in range(3)
        ]
        old_bad = float(sum(rng.random() < 0.05 for _ in range(old_events)))
        samples.append(PodSample("old-0", float(old_events), old_bad))
        fails += judge(policy(), samples, meta, "v2").verdict == FAIL
    return fails / draws


def test_a_small_old_cohort_in_a_fleet_wide_outage_seldom_fails_a_healthy_version() -> None:
    """The old cohort's ratio is an estimate too: 50 old events at 5% have no bad event one time
    in 13, and judged against that 0% as if it were known the healthy new version failed that
    often (and a `fail` latches). Compared as two samples, it fails no more often than the
    test's level (1 - confidence), whatever the old cohort's size."""
    level = 1.0 - policy().detection.confidence
    for old_events in (50, 60, 100, 300):
        rate = _fleet_wide_false_fails(old_events, draws=400, seed=old_events)
        assert rate <= 2 * level, (old_events, rate)


def test_a_bad_version_still_fails_against_a_small_old_cohort() -> None:
    """The two-sample test keeps its power: 10% bad on the new version against 100 old events
    at 0.5% fails."""
    meta = {f"new-{i}": PodMeta(f"new-{i}", labels={"pod-template-hash": "v2"}) for i in range(3)}
    meta["old-0"] = PodMeta("old-0", labels={"pod-template-hash": "v1"})
    samples = [PodSample(f"new-{i}", 1000.0, 100.0) for i in range(3)]
    assert judge(policy(), [*samples, PodSample("old-0", 100.0, 0.0)], meta, "v2").verdict == FAIL
