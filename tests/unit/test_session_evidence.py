"""Users as the unit of evidence: with session gauges (activeSessions, degradedSessions), one
user whose calls keep failing never drains the pod it is pinned to, while a pod that hurts many
of its users still is; gauges that drop out or cannot be true neither drain nor block (pure
`analyze`, plain data)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import pytest

from stickyguard.core import users_check
from stickyguard.core.analysis import PodSample, Track, analyze, forget
from stickyguard.core.policy import Detection, Impact, PolicyError, parse_policy

INTERVAL, WINDOW = 15.0, 8
PODS, PER_INTERVAL = 10, 30  # 2 req/s per pod
Gauges = tuple[float, float] | None
REST: Gauges = (20.0, 1.0)  # every other pod: 20 active sessions, 1 hurt (a share of 1/20)


def offered(
    bad_per_interval: int,
    gauges: Gauges | Callable[[int], Gauges],
    steps: int = 240,
    reasons: list[str] | None = None,
    sessions_expected: bool = False,
    retries: Mapping[int, int] | None = None,
) -> list[float]:
    """Times pod-00 is offered for draining while it gets `bad_per_interval` bad answers in
    every interval (the rest of the fleet none) and exports `gauges` (active, hurt), or
    `gauges(step)`; the other pods export REST when pod-00 exports anything. `retries`: step ->
    extra failed requests on pod-00 then (a client retrying). An offered pod is forgotten, as
    after a drain and restore, so every offer is a fresh decision."""
    tracks: dict[str, Track] = {}
    counters = [[0.0, 0.0] for _ in range(PODS)]
    extras = retries or {}
    times = []
    for step in range(steps):
        mine = gauges(step) if callable(gauges) else gauges
        samples = []
        for i in range(PODS):
            bad = bad_per_interval if i == 0 else 0
            extra = extras.get(step, 0) if i == 0 else 0
            # The retries of the intervals still in the window.
            held = (
                sum(extras.get(k, 0) for k in range(step - WINDOW + 1, step + 1)) if i == 0 else 0
            )
            counters[i][0] += PER_INTERVAL + extra
            counters[i][1] += bad + extra
            g = mine if i == 0 else (REST if gauges is not None else None)
            samples.append(
                PodSample(
                    f"pod-{i:02d}",
                    float(PER_INTERVAL * WINDOW + held),
                    float(bad * WINDOW + held),
                    active_sessions=None if g is None else g[0],
                    degraded_sessions=None if g is None else g[1],
                    total_counter=counters[i][0],
                    bad_counter=counters[i][1],
                )
            )
        now = (step + 1) * INTERVAL
        f = analyze(
            samples,
            {},
            Detection(),
            Impact(),
            tracks,
            now=now,
            window_seconds=WINDOW * INTERVAL,
            sessions_expected=sessions_expected,
        )
        tracks = forget(f.tracks, f.degraded_pods)
        if reasons is not None:
            reasons.append(f.reason)
        if "pod-00" in f.degraded_pods:
            times.append(now)
    return times


def test_one_failing_user_is_drained_without_gauges() -> None:
    # The case the gauges exist for: by requests alone, 10% bad is a faulty pod.
    assert offered(3, None)


def test_one_failing_user_never_drains_its_pod() -> None:
    # One hurt session (and the fleet's share of 1/20 predicts one more): an hour, no drain,
    # and the verdict says why the pod that looks bad by its requests is left serving.
    reasons: list[str] = []
    assert offered(3, (20.0, 2.0), reasons=reasons) == []
    assert "not drained, too few hurt users" in reasons[-1]


def test_a_pod_that_hurts_many_users_is_drained() -> None:
    times = offered(3, (20.0, 9.0))
    assert times and times[0] <= 8 * INTERVAL


def test_two_clients_retrying_for_thirty_seconds_do_not_drain_a_healthy_pod() -> None:
    # Two users' clients retry 15 times each, 2 s apart: 30 bad answers over three 15 s
    # intervals, two hurt sessions beyond the fleet's share, which clears the users' check. Only
    # the clip (no interval gives more than a quarter of the threshold) stands between this and a
    # drain: a clip of a third, tried once for speed, drained it.
    def two_hurt_during_the_storm(step: int) -> Gauges:
        return (20.0, 3.0) if 20 <= step < 30 else (20.0, 1.0)

    storm = {20: 5, 21: 15, 22: 10}
    assert offered(0, two_hurt_during_the_storm, 40, sessions_expected=True, retries=storm) == []


def test_hurt_sessions_are_counted_beyond_the_fleets_share() -> None:
    # The fleet's share (1/20) predicts 1 of 20; the excess is scaled by what is left to hurt:
    # (2.9 - 1) / 0.95 = 2, the default minimum.
    assert offered(3, (20.0, 2.9))
    assert offered(3, (20.0, 2.8)) == []


def test_two_sessions_both_hurt_are_enough() -> None:
    # A pod with two users, both failing, is 2 of the 2 that could be hurt.
    assert offered(3, (2.0, 2.0))


def test_more_hurt_than_active_counts_as_all_hurt() -> None:
    # Users who left after their errors are hurt but no longer active.
    assert users_check.reading(20.0, 21.0) == (20.0, 20.0)
    assert offered(3, (20.0, 21.0))


@pytest.mark.parametrize("gauges", [(20.0, -1.0), (20.0, math.nan), (math.inf, 9.0)])
def test_gauges_that_cannot_be_true_drain_nothing(gauges: tuple[float, float]) -> None:
    assert offered(3, gauges, steps=60) == []


def test_one_impossible_sample_does_not_block_a_real_fault() -> None:
    # A NaN at the fault's onset holds that evaluation only; the fault is drained as usual.
    def nan_once(step: int) -> Gauges:
        return (20.0, math.nan) if step == 1 else (20.0, 9.0)

    times = offered(3, nan_once, steps=40)
    assert times and times[0] <= 9 * INTERVAL


def test_gauges_that_drop_out_once_drain_nothing_when_the_policy_reads_them() -> None:
    # A failed session query (every pod's gauges missing) in the middle of a failing user's hour.
    def dropout(step: int) -> Gauges:
        return None if step == 120 else (20.0, 2.0)

    assert offered(3, dropout, sessions_expected=True) == []


def test_a_fault_after_hours_of_a_failing_user_is_drained_within_two_windows() -> None:
    # Four hours of one failing user keep the CUSUM off zero; then the pod turns bad for
    # everyone. The run's mean moves slowly; the recent path passes within two windows.
    onset = 960

    def user_then_fault(step: int) -> Gauges:
        return (20.0, 2.0) if step < onset else (20.0, 12.0)

    times = offered(3, user_then_fault, steps=onset + 40)
    assert times and onset * INTERVAL < times[0] <= (onset + 16) * INTERVAL


def policy(**detection: object) -> dict[str, object]:
    return {
        "metadata": {"name": "p", "namespace": "ns"},
        "spec": {"selector": {"matchLabels": {"app": "a"}}, "detection": detection},
    }


def test_min_degraded_sessions_is_read_and_bounded() -> None:
    assert parse_policy(policy()).detection.min_degraded_sessions == 2
    assert parse_policy(policy(minDegradedSessions=5)).detection.min_degraded_sessions == 5
    with pytest.raises(PolicyError, match=r"spec\.detection\.minDegradedSessions"):
        parse_policy(policy(minDegradedSessions=0))
