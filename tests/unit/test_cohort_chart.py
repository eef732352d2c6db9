"""The rollout judge with its chart, over time on seeded noisy counts: a healthy canary is not
failed by noise or by clustered errors (the window test alone is, which these tests show can
fail), a bad one still is, and the chart's bookkeeping (a new version, counters, time)."""

from __future__ import annotations

import random

import pytest

from planner_fixtures import policy
from stickyguard.core import sequential
from stickyguard.core.analysis import PodMeta, PodSample, Track, analyze
from stickyguard.core.cohort_chart import (
    CohortChart,
    DetectorView,
    PodMemory,
    advance,
    detector_view,
    start,
)
from stickyguard.core.policy import Impact, Policy
from stickyguard.core.rollout import FAIL, INCONCLUSIVE, Cohort, compare_cohorts, judge
from traffic import INTERVAL, Counts, healthy

WINDOW = 8  # intervals in a 2m window
PODS, NEW = 12, 1  # a canary: one new pod of twelve


def rollout(
    pol: Policy,
    old: Counts,
    new: Counts,
    minutes: float,
    seed: int,
    with_chart: bool = True,
) -> float | None:
    """Seconds into the rollout when the judge first says `fail` (None: never), the detector
    run alongside for the fleet's overdispersion, as the guard does. The fleet runs ten
    minutes before the rollout begins, so that the detector knows its clustering."""
    rng = random.Random(seed)
    names = [f"p{i:02d}" for i in range(PODS)]
    meta = {
        n: PodMeta(n, labels={"pod-template-hash": "v2" if i < NEW else "v1"})
        for i, n in enumerate(names)
    }
    history: dict[str, list[tuple[int, int]]] = {n: [] for n in names}
    counters = {n: [0.0, 0.0] for n in names}
    tracks: dict[str, Track] = {}
    chart = CohortChart() if with_chart else None
    warm = int(600 / INTERVAL)
    for step in range(warm + int(minutes * 60 / INTERVAL)):
        now = (step + 1) * INTERVAL
        samples = []
        for i, name in enumerate(names):
            n, b = (new if i < NEW and step >= warm else old)(rng, i, step)
            history[name] = [*history[name], (n, b)][-WINDOW:]
            counters[name][0] += n
            counters[name][1] += b
            samples.append(
                PodSample(
                    name,
                    float(sum(x for x, _ in history[name])),
                    float(sum(y for _, y in history[name])),
                    total_counter=counters[name][0],
                    bad_counter=counters[name][1],
                )
            )
        tracks = dict(
            analyze(
                samples, meta, pol.detection, Impact(), tracks, now=now, window_seconds=120
            ).tracks
        )
        if step < warm:
            continue
        v = judge(
            pol,
            samples,
            meta,
            "v2",
            chart=chart,
            now=now,
            window_seconds=WINDOW * INTERVAL,
            tracks=tracks if with_chart else None,
        )
        chart = v.chart
        if v.verdict == FAIL:
            return now - warm * INTERVAL
    return None


def failed(
    pol: Policy, old: Counts, new: Counts, minutes: float, seeds: range, with_chart: bool
) -> int:
    return sum(rollout(pol, old, new, minutes, s, with_chart) is not None for s in seeds)


@pytest.mark.parametrize(
    ("rate", "ratio", "cluster"),
    [(2.0, 0.005, 1.0), (10.0, 0.005, 3.0), (10.0, 0.005, 8.0)],
)
def test_healthy_canaries_are_not_failed_by_noise(
    rate: float, ratio: float, cluster: float
) -> None:
    """Ten-minute rollouts of a version no worse than the old one. The window test alone, which
    latches on its first `fail`, fails many of them (bench/results/rollout-judge.md: 9 in 100
    at 2 req/s; 46-61 in 100 clustered): on these seeds it fails at least one, so the test can
    fail."""
    pol = policy()
    same = healthy(rate, ratio, cluster)
    seeds = range(1, 21)
    assert failed(pol, same, same, 10, seeds, with_chart=False) >= 1
    assert failed(pol, same, same, 10, seeds, with_chart=True) == 0


def test_a_bad_canary_still_fails() -> None:
    """A 30% canary at 10 req/s: within two minutes (four intervals of evidence at least,
    h/4 each); a 5% canary at 2 req/s among 0.5% (the detector's hard case): within ten."""
    pol = policy()
    for seed in range(1, 6):
        severe = rollout(pol, healthy(10, 0.005), healthy(10, 0.3), 5, seed)
        assert severe is not None and 4 * INTERVAL <= severe <= 120
        mild = rollout(pol, healthy(2, 0.005), healthy(2, 0.05), 15, seed)
        assert mild is not None and mild <= 600


def _sample(pod: str, total: float, bad: float, counters: tuple[float, float] | None) -> PodSample:
    tc, bc = counters if counters is not None else (None, None)
    return PodSample(pod, total, bad, total_counter=tc, bad_counter=bc)


def _advance(
    chart: CohortChart, new_hash: str, samples: list[PodSample], now: float
) -> CohortChart:
    h = sequential.threshold(0.01, INTERVAL)
    charts = sequential.alternatives(0.005, 0.01, 3.0)
    return advance(
        start(chart, new_hash, DetectorView()), samples, 0.005, charts, 1.0, h, now, 120.0, INTERVAL
    )


def test_chart_counts_what_arrived_and_restarts_with_a_new_version() -> None:
    first = _advance(CohortChart(), "v2", [_sample("a", 240, 24, (1000, 100))], 15.0)
    assert first.new_hash == "v2" and first.score > 0
    # The first look shares out the window: an interval's worth (24 / 8 bad).
    assert first.pods["a"] == PodMemory((1000, 100), 240, ((15.0, 3.0),))
    # 30 events, 3 bad since: exactly one interval's worth of evidence, capped at h/4.
    second = _advance(first, "v2", [_sample("a", 240, 24, (1030, 103))], 30.0)
    assert second.score == pytest.approx(
        min(
            first.score + sequential.threshold(0.01, INTERVAL) / 4,
            first.score + max(sequential.llr(3, 30, 0.005, p) for p in (0.015, 0.045, 0.15)),
        )
    )
    # Time that did not move adds nothing; a new version starts from nothing.
    assert _advance(second, "v2", [_sample("a", 240, 24, (1060, 106))], 30.0) == second
    fresh = _advance(second, "v3", [_sample("b", 240, 0, (500, 0))], 45.0)
    assert fresh.new_hash == "v3" and fresh.score == 0.0 and set(fresh.pods) == {"b"}


def test_chart_reads_a_counter_reset_as_new_events_and_skips_pods_without_data() -> None:
    first = _advance(CohortChart(), "v2", [_sample("a", 240, 0, (1000, 0))], 15.0)
    reset = _advance(
        first, "v2", [_sample("a", 240, 24, (30, 15)), PodSample("b", None, None)], 30.0
    )
    assert reset.pods == {"a": PodMemory((30, 15), 240, ((15.0, 0.0), (30.0, 15)))}
    assert reset.score == pytest.approx(sequential.threshold(0.01, INTERVAL) / 4)


def test_detector_view_reads_the_detectors_memory() -> None:
    assert detector_view({}, ["a"], ["b"], 0.0) == DetectorView()
    hour = tuple((60.0 * i, 0.004 + 0.0001 * i) for i in range(1, 21))
    tracks = {
        "new": Track(dispersion=9.0, dispersion_n=10, degraded=True, cusum=(25.0, 1.0)),
        "old1": Track(dispersion=2.0, dispersion_n=10, baselines=hour),
        "old2": Track(dispersion=3.0, dispersion_n=10, baselines=hour),
        "fresh": Track(dispersion=50.0, dispersion_n=0),  # no estimate yet: not counted
    }
    view = detector_view(tracks, ["new"], ["old1", "old2", "fresh"], 1200.0)
    assert view.phi == 3.0 and view.degraded == {"new"}
    assert view.floor == sequential.baseline_floor(hour, 1200.0) > 0.004
    healthy_new = {**tracks, "new": tracks["new"]._replace(degraded=False, dispersion_n=20)}
    view = detector_view(healthy_new, ["new"], ["old1"], 1200.0)
    assert view.degraded == frozenset()


def test_the_chart_keeps_the_overdispersion_it_began_with() -> None:
    """A bad new version raises the fleet's estimate (its own pods are in it): the chart keeps
    the one it began with whenever that is lower."""
    pol = policy()
    meta = {
        "new": PodMeta("new", labels={"pod-template-hash": "v2"}),
        **{f"old{i}": PodMeta(f"old{i}", labels={"pod-template-hash": "v1"}) for i in range(4)},
    }
    samples = [PodSample("new", 1000, 100), *(PodSample(f"old{i}", 1000, 1) for i in range(4))]
    calm = {p: Track(dispersion=1.5, dispersion_n=30) for p in meta}
    v = judge(pol, samples, meta, "v2", chart=CohortChart(), now=15.0, tracks=calm)
    assert v.chart is not None and v.chart.phi == 1.5
    stirred = {p: Track(dispersion=40.0, dispersion_n=30) for p in meta}
    w = judge(pol, samples, meta, "v2", chart=v.chart, now=30.0, tracks=stirred)
    assert w.chart is not None and w.chart.phi == 1.5
    assert w.chart.score == pytest.approx(2 * v.chart.score)  # both intervals at h/4
    # A new leader's chart begins with the empty memory's 1 and keeps it.
    fresh = judge(pol, samples, meta, "v2", chart=CohortChart(), now=15.0, tracks={})
    later = judge(pol, samples, meta, "v2", chart=fresh.chart, now=30.0, tracks=stirred)
    assert fresh.chart is not None and later.chart is not None and later.chart.phi == 1.0


def test_a_canary_the_detector_drained_fails_its_version() -> None:
    """Drained, the canary stops feeding the chart just short of the threshold; the detector's
    verdict on it (the same budget) is the version's evidence."""
    pol = policy()
    meta = {
        "new": PodMeta("new", labels={"pod-template-hash": "v2"}),
        **{f"old{i}": PodMeta(f"old{i}", labels={"pod-template-hash": "v1"}) for i in range(4)},
    }
    samples = [PodSample("new", 1000, 100), *(PodSample(f"old{i}", 1000, 1) for i in range(4))]
    h = sequential.threshold(0.01, INTERVAL)
    frozen = {"new": PodMemory((5000.0, 500.0), 1000.0)}
    stalled = CohortChart("v2", (h - 1.5, 0.0, 0.0), 0.0, frozen, (5000.0, 500.0), 1.0)
    drained = [PodSample("new", 1000, 100, total_counter=5000, bad_counter=500), *samples[1:]]
    judged = {"new": Track(degraded=True, cusum=(h + 0.1, 0.0, 0.0))}
    assert judge(pol, drained, meta, "v2", chart=stalled, now=15.0).verdict == INCONCLUSIVE
    v = judge(pol, drained, meta, "v2", chart=stalled, now=15.0, tracks=judged)
    assert v.verdict == FAIL and v.chart is not None and v.chart.score < h
    # One bad pod among healthy new pods with data is that pod (a bad node), not its version.
    meta2 = {**meta, "new2": PodMeta("new2", labels={"pod-template-hash": "v2"})}
    healthy2 = PodSample("new2", 1000, 1, total_counter=5000, bad_counter=5)
    frozen2 = {**frozen, "new2": PodMemory((5000.0, 5.0), 1000.0)}
    stalled2 = CohortChart("v2", (h - 1.5, 0.0, 0.0), 0.0, frozen2, (10000.0, 505.0), 1.0)
    w = judge(pol, [*drained, healthy2], meta2, "v2", chart=stalled2, now=15.0, tracks=judged)
    assert w.verdict != FAIL


def test_one_clients_retries_on_the_canary_are_set_aside() -> None:
    """A storm on top of earlier mild evidence takes the chart past its threshold, but the
    window without the storm (its largest burst of two intervals) is no worse than the old
    version: not a fail. A fault, bad in every interval, fails."""
    pol = policy()
    meta = {
        "new": PodMeta("new", labels={"pod-template-hash": "v2"}),
        **{f"old{i}": PodMeta(f"old{i}", labels={"pod-template-hash": "v1"}) for i in range(11)},
    }
    old = [PodSample(f"old{i}", 1200, 6) for i in range(11)]

    def last_verdict(arrivals: list[int]) -> str:
        chart: CohortChart | None = CohortChart()
        total = bad = 0.0
        verdict = ""
        for step, arrived in enumerate(arrivals, start=1):
            total, bad = total + 150, bad + arrived
            window_bad = sum(arrivals[max(0, step - WINDOW) : step])
            sample = PodSample("new", 1200, window_bad, total_counter=total, bad_counter=bad)
            v = judge(pol, [sample, *old], meta, "v2", chart=chart, now=INTERVAL * step)
            chart, verdict = v.chart, v.verdict
        return verdict

    storm = [0] * 8 + [6, 6, 6] + [1] * 5 + [30, 30]
    assert last_verdict(storm) != FAIL
    assert last_verdict([0] * 8 + [4] * 8) == FAIL


def test_clustered_bad_events_weigh_less_in_the_window_test() -> None:
    new, old = Cohort(1, 240, 6, None), Cohort(11, 2640, 13, None)
    assert compare_cohorts(new, old) < 0.01 < compare_cohorts(new, old, phi=3.0)


def test_window_worse_but_evidence_short_is_inconclusive_not_fail() -> None:
    pol = policy()
    meta = {
        "new": PodMeta("new", labels={"pod-template-hash": "v2"}),
        **{f"old{i}": PodMeta(f"old{i}", labels={"pod-template-hash": "v1"}) for i in range(4)},
    }
    samples = [PodSample("new", 1000, 100), *(PodSample(f"old{i}", 1000, 1) for i in range(4))]
    alone = judge(pol, samples, meta, "v2")
    assert alone.verdict == FAIL and alone.chart is None
    v = judge(pol, samples, meta, "v2", chart=CohortChart(), now=15.0)
    assert v.verdict == INCONCLUSIVE and "evidence" in v.reason
    assert v.chart is not None and 0 < v.chart.score < (v.threshold or 0)
    # Without counters each evaluation adds an interval's share of the window: h/4 at most,
    # so the fourth evaluation is the first that can fail.
    verdicts = [v.verdict]
    for step in range(2, 6):
        v = judge(pol, samples, meta, "v2", chart=v.chart, now=15.0 * step)
        verdicts.append(v.verdict)
    assert verdicts == [INCONCLUSIVE] * 3 + [FAIL] * 2


def test_a_new_pod_with_impossible_counts_gives_no_evidence() -> None:
    """NaN or bad > total is not judged (as in the cohorts' sums): no evidence, no burst."""
    pol = policy()
    meta = {
        "new": PodMeta("new", labels={"pod-template-hash": "v2"}),
        "odd": PodMeta("odd", labels={"pod-template-hash": "v2"}),
        **{f"old{i}": PodMeta(f"old{i}", labels={"pod-template-hash": "v1"}) for i in range(4)},
    }
    old = [PodSample(f"old{i}", 1000, 1) for i in range(4)]
    for odd in (PodSample("odd", 100, 500), PodSample("odd", float("nan"), 3)):
        v = judge(
            pol, [PodSample("new", 1000, 2), odd, *old], meta, "v2", chart=CohortChart(), now=15
        )
        assert v.verdict == "pass" and v.chart is not None
        assert set(v.chart.pods) == {"new"} and v.chart.score == 0.0
