"""Users as the unit of evidence: with session gauges (activeSessions, degradedSessions), one
user whose calls keep failing never drains the pod it is pinned to, while a pod that hurts many
of its users still is (pure `analyze`, plain data)."""

from __future__ import annotations

import math

import pytest

from stickyguard.core.analysis import PodSample, Track, analyze, forget
from stickyguard.core.policy import Detection, Impact, PolicyError, parse_policy

INTERVAL, WINDOW = 15.0, 8
PODS, PER_INTERVAL = 10, 30  # 2 req/s per pod


def offered(
    bad_per_interval: int, gauges: tuple[float, float] | None, steps: int = 240
) -> list[float]:
    """Times pod-00 is offered for draining while it gets `bad_per_interval` bad answers in
    every interval (the rest of the fleet none) and exports `gauges` (active, hurt); the other
    pods export 20 active sessions with 1 hurt. An offered pod is forgotten, as after a drain
    and restore, so every offer is a fresh decision."""
    tracks: dict[str, Track] = {}
    counters = [[0.0, 0.0] for _ in range(PODS)]
    times = []
    for step in range(steps):
        samples = []
        for i in range(PODS):
            bad = bad_per_interval if i == 0 else 0
            counters[i][0] += PER_INTERVAL
            counters[i][1] += bad
            active, hurt = (gauges if i == 0 else (20.0, 1.0)) if gauges else (None, None)
            samples.append(
                PodSample(
                    f"pod-{i:02d}",
                    float(PER_INTERVAL * WINDOW),
                    float(bad * WINDOW),
                    active_sessions=active,
                    degraded_sessions=hurt,
                    total_counter=counters[i][0],
                    bad_counter=counters[i][1],
                )
            )
        now = (step + 1) * INTERVAL
        f = analyze(
            samples, {}, Detection(), Impact(), tracks, now=now, window_seconds=WINDOW * INTERVAL
        )
        tracks = forget(f.tracks, f.degraded_pods)
        if "pod-00" in f.degraded_pods:
            times.append(now)
    return times


def test_one_failing_user_is_drained_without_gauges() -> None:
    # The case the gauges exist for: by requests alone, 10% bad is a faulty pod.
    assert offered(3, None)


def test_one_failing_user_never_drains_its_pod() -> None:
    # One hurt session (and the fleet's share of 1/20 predicts one more): an hour, no drain.
    assert offered(3, (20.0, 2.0)) == []


def test_a_pod_that_hurts_many_users_is_drained() -> None:
    times = offered(3, (20.0, 9.0))
    assert times and times[0] <= 8 * INTERVAL


def test_hurt_sessions_are_counted_beyond_the_fleets_share() -> None:
    # 3 hurt where the fleet's share (1/20) predicts 1: 2 beyond it, the default minimum.
    assert offered(3, (20.0, 3.0))
    assert offered(3, (20.0, 2.9)) == []


@pytest.mark.parametrize("gauges", [(20.0, 21.0), (20.0, -1.0), (20.0, math.nan), (math.inf, 9.0)])
def test_gauges_that_cannot_be_true_drain_nothing(gauges: tuple[float, float]) -> None:
    assert offered(3, gauges, steps=60) == []


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
