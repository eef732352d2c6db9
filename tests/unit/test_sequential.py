"""The sequential detector over time, on seeded noisy counts: it never drains a healthy fleet,
it is not fooled by one retrying client, it is fast on real faults, and it forgets. Each guard
is shown able to fail: with the threshold or the burst cap mutated, the same test drains."""

from __future__ import annotations

import itertools
import math
import random
import statistics
from collections.abc import Callable, Iterator

import pytest

from stickyguard.core import analysis, sequential
from stickyguard.core.analysis import PodSample, Track, analyze, forget
from stickyguard.core.policy import Detection, Impact
from traffic import Counts, healthy

INTERVAL, WINDOW = 15.0, 8  # a 2m window read every 15 s, as the simulator's scraper


def evaluations(
    counts: Counts,
    pods: int,
    steps: int,
    seed: int,
    d: Detection | None = None,
    with_counters: bool = True,
    window: int = WINDOW,
) -> Iterator[tuple[float, tuple[str, ...]]]:
    """(time, pods offered for draining) per evaluation, `d.interval_seconds` apart (15 s by
    default) over a window of `window` intervals; an offered pod is forgotten, as the
    caller does once it is drained and later restored. Samples carry the raw counters, as the
    presets' queries give them, unless `with_counters` is False (custom queries)."""
    rng = random.Random(seed)
    d = d or Detection()
    interval = float(d.interval_seconds)
    names = [f"pod-{i:02d}" for i in range(pods)]
    history: list[list[tuple[int, int]]] = [[] for _ in names]
    cumulative = [[0.0, 0.0] for _ in names]
    tracks: dict[str, Track] = {}
    for step in range(steps):
        samples = []
        for i, name in enumerate(names):
            n, b = counts(rng, i, step)
            history[i].append((n, b))
            del history[i][:-window]
            cumulative[i][0] += n
            cumulative[i][1] += b
            samples.append(
                PodSample(
                    name,
                    float(sum(n for n, _ in history[i])),
                    float(sum(b for _, b in history[i])),
                    total_counter=cumulative[i][0] if with_counters else None,
                    bad_counter=cumulative[i][1] if with_counters else None,
                )
            )
        now = (step + 1) * interval
        f = analyze(samples, {}, d, Impact(), tracks, now=now, window_seconds=window * interval)
        tracks = forget(f.tracks, f.degraded_pods)
        yield now, f.degraded_pods


def drains(counts: Counts, pods: int, hours: float, seed: int) -> int:
    steps = int(hours * 3600 / INTERVAL)
    return sum(len(offered) for _, offered in evaluations(counts, pods, steps, seed))


# --- the threshold ------------------------------------------------------------------------------
def test_threshold_is_derived_from_the_false_drain_budget() -> None:
    h = sequential.threshold(0.01, 15)
    assert h == pytest.approx(math.log(365.25 * 86400 / (0.01 * 15)) + math.log(3))
    assert 20 < h < 21
    # Ten times the budget lowers the threshold by ln 10; a longer interval raises fewer alarms.
    assert sequential.threshold(0.1, 15) == pytest.approx(h - math.log(10))
    assert sequential.threshold(0.01, 30) < h


# --- a healthy fleet is never drained (the properties of the issue) ---------------------------
NULL_CASES = [
    ("poisson-1rps-0.5pct", healthy(1.0, 0.005)),
    ("poisson-0.2rps-2pct", healthy(0.2, 0.02)),
    ("clustered-1rps-2pct", healthy(1.0, 0.02, cluster=3.0)),
]


@pytest.mark.parametrize("margin", [True, False], ids=["all-guards", "no-run-margin"])
@pytest.mark.parametrize(("case", "counts"), NULL_CASES, ids=[c[0] for c in NULL_CASES])
def test_property_identical_noisy_pods_are_never_drained(
    case: str, counts: Counts, margin: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No drain with every guard on, nor with the run's noise margin off: the CUSUM and the
    window judged now hold these fleets by themselves. 72 pod-hours cannot show a rate of 0.01
    per pod-year (bench/bench_null.py measures that over 49 pod-years); what they show is slack:
    without the margin, these fleets stay undrained down to a threshold of about 8 instead of
    20, and drain at 3 (the test below)."""
    if not margin:
        monkeypatch.setattr(analysis, "RUN_MARGIN_Z", 0.0)
    assert drains(counts, pods=12, hours=6, seed=7) == 0


def test_the_null_property_can_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    """A threshold too low for the number of evaluations drains healthy pods in the same run,
    once the run's noise margin (a second guard, which alone holds them off here) is gone."""
    monkeypatch.setattr(sequential, "threshold", lambda budget, interval: 3.0)
    monkeypatch.setattr(analysis, "RUN_MARGIN_Z", 0.0)
    assert drains(healthy(1.0, 0.005), pods=12, hours=6, seed=7) > 0


# --- one retrying client -------------------------------------------------------------------------
def with_retry_storm(base: Counts, pod: int, step: int, size: int) -> Counts:
    def draw(rng: random.Random, p: int, s: int) -> tuple[int, int]:
        n, b = base(rng, p, s)
        return (n + size, b + size) if (p, s) == (pod, step) else (n, b)

    return draw


def test_one_client_retrying_does_not_drain_a_healthy_pod() -> None:
    storm = with_retry_storm(healthy(2.0, 0.005), pod=3, step=200, size=15)
    assert drains(storm, pods=12, hours=1.5, seed=11) == 0


def test_the_retry_guard_can_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the burst cap (on the evidence and on the window judged now) and the clip of one
    interval's evidence, the same storm drains the pod it landed on."""
    monkeypatch.setattr(sequential, "arrived_bad", lambda jumps, plausible=0.0: jumps[-1])
    monkeypatch.setattr(sequential, "discount_burst", lambda bad, jumps, span=2: bad)
    monkeypatch.setattr(sequential, "MIN_EVIDENCE_INTERVALS", 1)
    storm = with_retry_storm(healthy(2.0, 0.005), pod=3, step=200, size=15)
    assert drains(storm, pods=12, hours=1.5, seed=11) > 0


def test_one_interval_alone_never_drains(monkeypatch: pytest.MonkeyPatch) -> None:
    """The clip holds by itself: with both burst caps off, a storm confined to one interval
    still gives at most a quarter of the threshold."""
    monkeypatch.setattr(sequential, "arrived_bad", lambda jumps, plausible=0.0: jumps[-1])
    monkeypatch.setattr(sequential, "discount_burst", lambda bad, jumps, span=2: bad)
    storm = with_retry_storm(healthy(2.0, 0.005), pod=3, step=200, size=15)
    assert drains(storm, pods=12, hours=1.5, seed=11) == 0


def with_storms(base: Counts, interval: float, seconds: float, per_second: float) -> Counts:
    """Every ten minutes, clients retrying together (`per_second` failures a second, all bad)
    for `seconds` on one healthy pod, a different pod each time."""
    every, lasting = round(600 / interval), round(seconds / interval)

    def draw(rng: random.Random, p: int, s: int) -> tuple[int, int]:
        n, b = base(rng, p, s)
        if p == (s // every) % 10 and 10 <= s % every < 10 + lasting:
            extra = round(per_second * interval)
            return n + extra, b + extra
        return n, b

    return draw


@pytest.mark.parametrize("span", [None, 2], ids=["seconds", "two-intervals"])
def test_clients_retrying_for_30s_drain_nothing_at_5s(
    monkeypatch: pytest.MonkeyPatch, span: int | None
) -> None:
    """Two clients retrying together for 30 s (2 failures a second) on a healthy pod, at 5 s
    intervals: the 30 s set aside by "outlier now" covers the storm, as two intervals do at
    15 s. Counted as two intervals (10 s at 5 s), every storm drained its pod."""
    if span is not None:
        real = sequential.discount_burst
        monkeypatch.setattr(
            sequential, "discount_burst", lambda bad, jumps, _=2: real(bad, jumps, span)
        )
    storms = with_storms(healthy(2.0, 0.005, interval=5), interval=5, seconds=30, per_second=2)
    d = Detection(interval_seconds=5)
    steps = round(3600 / 5)  # six storms
    drained = sum(len(o) for _, o in evaluations(storms, 10, steps, seed=7, d=d, window=24))
    if span is None:
        assert drained == 0
    else:
        assert drained >= 3, "the mutated guard must fail"


def test_cusum_step_is_clipped_to_a_share_of_the_threshold() -> None:
    h, k = 21.0, sequential.MIN_EVIDENCE_INTERVALS
    # A huge increment gives h/k; k of them reach h exactly; a negative one is not clipped.
    assert sequential.update((0.0,), (1000.0,), h) == (pytest.approx(h / k),)
    s: tuple[float, ...] = (0.0,)
    for _ in range(k):
        assert s[0] < h - 1e-6
        s = sequential.update(s, (1000.0,), h)
    assert s[0] == pytest.approx(h)
    assert sequential.update((4.0,), (-3.0,), h) == (pytest.approx(1.0),)


def test_the_burst_set_aside_is_set_in_seconds() -> None:
    """Two intervals at 15 s; the same 30 s at other intervals, on a window long enough."""
    burst = sequential.BURST_SECONDS
    spans = [sequential.intervals_in(burst, i) for i in (5, 10, 15, 20, 30, 120)]
    assert spans == [6, 3, 2, 2, 1, 1]
    with pytest.raises(ValueError):
        sequential.intervals_in(burst, 0)
    # A quarter of the window at most, never fewer than two: 15 s is two on any window.
    assert [sequential.burst_span(15, w) for w in (30, 120, 600)] == [2, 2, 2]
    assert [sequential.burst_span(5, w) for w in (20, 40, 60, 120, 600)] == [2, 2, 3, 6, 6]
    assert sequential.burst_span(10, 120) == 3


def test_a_burst_of_up_to_span_intervals_is_set_aside() -> None:
    quiet = [0.0] * 18
    # A 30 s storm at 5 s intervals: six intervals of 5 bad answers.
    storm = quiet[:6] + [5.0] * 6 + quiet[:6]
    assert sequential.discount_burst(30.0, storm, span=6) == 0.0
    assert sequential.discount_burst(30.0, storm, span=2) == 20.0
    # A fault spread over every interval loses only its excess over the median.
    fault = [2.0, 3.0, 2.0, 2.0, 1.0, 2.0, 2.0, 2.0]
    assert sequential.discount_burst(16.0, fault, span=2) == 15.0
    assert sequential.discount_burst(16.0, fault, span=1) == 15.0
    # A dip never adds evidence back.
    assert sequential.discount_burst(4.0, [2.0, 0.0, 2.0], span=3) == 4.0
    # A quiet interval ends a burst: a fault failing in short bursts is not one long burst.
    periodic = [0.0, 5.0, 0.0, 0.0, 0.0, 5.0, 0.0, 0.0, 0.0, 5.0, 0.0, 0.0]
    assert sequential.discount_burst(15.0, periodic, span=6) == 10.0
    # The longest run counted is `span`.
    assert sequential.discount_burst(20.0, [0.0] * 6 + [4.0] * 5, span=3) == 8.0


def test_at_15s_the_burst_is_the_largest_interval_or_pair() -> None:
    """Two intervals at the default interval: the rule the null benchmark (bench/results/null.md)
    and the simulator's figures were measured with, the largest excess of one interval or two
    adjacent ones over the median."""
    rng = random.Random(5)
    for _ in range(3000):
        jumps = [float(rng.choice([0, 0, 0, 1, 2, 3, 5, 8])) for _ in range(rng.randint(0, 10))]
        typical = statistics.median(jumps) if jumps else 0.0
        excess = [j - typical for j in jumps]
        pairs = [a + b for a, b in itertools.pairwise(excess)]
        expected = max(0.0, sum(jumps) + 1 - max([*excess, *pairs, 0.0]))
        assert sequential.discount_burst(sum(jumps) + 1, jumps, span=2) == pytest.approx(expected)


def with_periodic_fault(base: Counts, pod: int, start: int, every: int, lasting: int) -> Counts:
    """From step `start`, `pod` fails every request for `lasting` steps in every `every`."""

    def draw(rng: random.Random, p: int, s: int) -> tuple[int, int]:
        n, b = base(rng, p, s)
        if p == pod and s >= start and (s - start) % every < lasting:
            return n, n
        return n, b

    return draw


@pytest.mark.parametrize("window", [8, 24], ids=["40s", "2m"])
def test_a_fault_failing_in_short_bursts_is_drained_at_5s(window: int) -> None:
    """5 s of failures in every 20 s (a quarter of the answers) at 20 req/s, 5 s intervals:
    drained within a few minutes on both window shapes. Six intervals set aside on the 40 s
    window, with bursts joined across the quiet intervals between them, hid it for an hour;
    the rule itself (a quiet interval ends a burst) is checked on plain data above."""
    fault = with_periodic_fault(
        healthy(20.0, 0.001, interval=5), pod=3, start=120, every=4, lasting=1
    )
    d = Detection(interval_seconds=5)
    found = next(
        (
            t
            for t, o in evaluations(fault, 10, 120 + 72, seed=1, d=d, window=window)
            if "pod-03" in o
        ),
        None,
    )
    assert found is not None and found - 120 * 5 <= 180, found


# --- verdicts the thresholds promise -------------------------------------------------------------
def pod_at(base: Counts, pod: int, ratio: float) -> Counts:
    """One pod's bad events at `ratio` instead of the fleet's, from the start."""

    def draw(rng: random.Random, p: int, s: int) -> tuple[int, int]:
        n, b = base(rng, p, s)
        if p == pod:
            b = sum(1 for _ in range(n) if rng.random() < ratio)
        return n, b

    return draw


def test_a_pod_at_twice_the_fleet_is_rarely_drained(monkeypatch: pytest.MonkeyPatch) -> None:
    """2x the fleet is below relativeThreshold (3x): users of another kind, not a fault. The
    charts test the baseline against higher ratios, so such a pod gains evidence at high traffic;
    the run's ratio check removes most of those drains (not all: see docs/analysis.md, known
    limits). Without the check the same runs drain it several times as often."""
    twice = pod_at(healthy(10.0, 0.005), pod=0, ratio=0.01)
    seeds = (101, 102, 103)
    checked = sum(drains(twice, pods=10, hours=6, seed=s) for s in seeds)
    monkeypatch.setattr(analysis, "run_clears", lambda run, d, base, phi=1.0: True)
    unchecked = sum(drains(twice, pods=10, hours=6, seed=s) for s in seeds)
    assert unchecked >= 10 and checked * 3 <= unchecked, (checked, unchecked)


def test_a_pod_just_below_the_relative_threshold_is_seldom_drained(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """2.5x the fleet at 10 req/s: the run's ratio, which starts where the CUSUM last stood at
    zero (an upswing, by construction), reaches 3x now and then; with a margin of two of its
    standard deviations it seldom does. Without the margin the same runs drain it four times
    as often (docs/analysis.md, known limits)."""
    near = pod_at(healthy(10.0, 0.005), pod=0, ratio=0.0125)
    seeds = (101, 102, 103)
    margin = sum(drains(near, pods=10, hours=6, seed=s) for s in seeds)
    monkeypatch.setattr(analysis, "RUN_MARGIN_Z", 0.0)
    bare = sum(drains(near, pods=10, hours=6, seed=s) for s in seeds)
    assert bare >= 30 and margin * 3 <= bare, (margin, bare)


def test_the_run_margin_counts_the_overdispersion() -> None:
    """A false drain seen on a 4-pod fleet at 10 req/s with errors in clusters (mean 3, 0.5%):
    the other three pods' window held no cluster (baseline 0.02%), and the healthy pod's run
    since its CUSUM last stood at zero was 81 bad events in 4,654 (1.7%, 3.5 times its own
    mean, ten clustered minutes). With a Poisson margin it clears 1%; with the fleet's
    overdispersion (about 5) it does not."""
    d, run, base = Detection(), (4654.0, 81.0), 0.0002
    assert analysis.run_clears(run, d, base, phi=1.0)
    assert not analysis.run_clears(run, d, base, phi=4.9)
    # A real fault's run clears it with the same phi: 5% over ten minutes at 10 req/s.
    assert analysis.run_clears((6000.0, 300.0), d, 0.005, phi=4.9)


def test_dispersion_is_estimated_from_two_pods() -> None:
    terms = {0: 4.0, 1: 6.0, 2: 5.0}
    assert sequential.dispersion(terms, leave_out=2) == pytest.approx(10.0)
    assert sequential.dispersion({0: 4.0}, leave_out=None) == 1.0
    # Each estimate is floored before the hour's mean (a margin kept on purpose: see
    # docs/analysis.md, clustered traffic).
    assert sequential.dispersion({0: 0.2, 1: 0.4, 2: 0.3}, leave_out=None) == 1.0


# --- the floor under the baseline ---------------------------------------------------------------
def test_the_baseline_is_remembered_once_a_minute_for_an_hour() -> None:
    history: tuple[tuple[float, float], ...] = ()
    for second in range(0, 7200, 15):
        history = sequential.remember_baseline(history, float(second), 0.005)
    assert len(history) == 60
    assert all(7200 - 15 - 3600 < ts <= 7200 - 15 for ts, _ in history)
    assert [b - a for (a, _), (b, _) in itertools.pairwise(history)] == [60.0] * 59
    # A clock stepped back drops the samples from its future.
    stepped = sequential.remember_baseline(history, 3700.0, 0.001)
    assert stepped == tuple((ts, b) for ts, b in history if ts <= 3700.0)
    assert sequential.remember_baseline(stepped, 3800.0, 0.001)[-1] == (3800.0, 0.001)


def test_the_floor_is_the_lower_quartile_of_the_hour() -> None:
    minutes = [(60.0 * i, 0.005) for i in range(60)]
    now = 3540.0  # the last sample
    assert sequential.baseline_floor(minutes[:9], now) == 0.0  # under ten minutes: no floor
    assert sequential.baseline_floor(minutes, now) == pytest.approx(0.005)
    # Only the last hour counts: a pod back after an hour's gap starts without a floor.
    assert sequential.baseline_floor(minutes, now + 3600.0) == 0.0
    # A fleet-wide incident of 45 minutes in the hour leaves the floor where it was...
    incident = [(ts, 0.03 if i >= 15 else b) for i, (ts, b) in enumerate(minutes)]
    assert sequential.baseline_floor(incident, now) == pytest.approx(0.005)
    # ... and a window of the rest of a small fleet without a single cluster does not lower it.
    quiet = [(ts, 0.0002 if i % 5 == 0 else b) for i, (ts, b) in enumerate(minutes)]
    assert sequential.baseline_floor(quiet, now) == pytest.approx(0.005)


def _last_evidence(final: Callable[[int], tuple[float, float]], remember: bool) -> float:
    """An hour of a 4-pod fleet at 10 req/s, 0.5% bad in clusters of mean 3 (seeded), then one
    interval where pod i gets (events, bad) = final(i) and its window holds this interval's bad
    events only (the others' windows empty of them): the pod-00's strongest chart's gain."""
    rng, draw = random.Random(5), healthy(10.0, 0.005, cluster=3.0)
    history: list[list[tuple[float, float]]] = [[] for _ in range(4)]
    counters = [[0.0, 0.0] for _ in range(4)]
    tracks: dict[str, Track] = {}
    before = 0.0
    for step in range(241):
        last = step == 240
        samples = []
        for i in range(4):
            n, b = final(i) if last else draw(rng, i, step)
            history[i] = [*history[i], (n, b)][-WINDOW:]
            counters[i][0] += n
            counters[i][1] += b
            window_bad = b if last else sum(x for _, x in history[i])
            total = sum(x for x, _ in history[i])
            samples.append(
                PodSample(f"pod-{i:02d}", total, window_bad, None, None, None, *counters[i])
            )
        if last:
            before = max(tracks["pod-00"].cusum)
            if not remember:
                tracks = {p: t._replace(baselines=()) for p, t in tracks.items()}
        f = analyze(samples, {}, Detection(), Impact(), tracks, now=15.0 * (step + 1))
        tracks = f.tracks
    return max(tracks["pod-00"].cusum) - before


def test_a_baseline_emptied_by_clusters_weighs_no_more_than_the_hour_s() -> None:
    """A small fleet with clustered errors: the other three pods' window holds no bad event
    (the baseline falls to 0.014%) while pod-00 has one cluster of 3 in its interval. Against
    the window's baseline alone the cluster is strong evidence; against the hour's floor, which
    the window cannot rule out with clusters this large, a fraction of it."""
    cluster = lambda i: (150.0, 3.0 if i == 0 else 0.0)  # noqa: E731
    alone, floored = _last_evidence(cluster, remember=False), _last_evidence(cluster, remember=True)
    assert floored * 3 < alone, (floored, alone)


def test_the_window_bounds_the_floor_from_above() -> None:
    """The floor is stale once the fleet's ratio falls for good (a long fleet-wide incident
    ended, a fix rolled out): a window that rules it out caps it, so a fault in the minutes
    after is not tested against the old level."""
    minutes = [(60.0 * i, 0.03) for i in range(60)]
    assert sequential.baseline_floor(minutes, 3540.0) == pytest.approx(0.03)
    # 2,640 events with 3 bad: 3% is ruled out; the bound is about 0.4%.
    assert 0.003 < sequential.upper_ratio(3.0, 2640.0, 1.0) < 0.005
    # With no bad event and clusters of about 5, a 0.5% fleet of 3,600 events is not.
    assert sequential.upper_ratio(0.0, 3600.0, 5.0) > 0.006
    assert sequential.upper_ratio(0.0, 0.0, 1.0) == 1.0


# --- low traffic ---------------------------------------------------------------------------------
def _found_at(counts: Counts, seeds: range) -> float:
    """Median time a 5% pod-00 is first offered for draining (no healthy pod ever is)."""
    times = []
    for seed in seeds:
        found = math.inf
        for now, offered in evaluations(counts, pods=12, steps=int(7200 / INTERVAL), seed=seed):
            assert set(offered) <= {"pod-00"}, offered
            if offered:
                found = now
                break
        times.append(found)
    return statistics.median(times)


def test_at_low_traffic_every_bad_answer_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    """At 0.3 req/s an interval holds 4.5 events, and the cap on bad arrivals (what the most
    severe chart expects: 0.68 of an event) counted each bad answer of a faulty pod as a
    fraction of one; a cap of at least one event finds it in about two thirds of the time."""
    slow = pod_at(healthy(0.3, 0.005), pod=0, ratio=0.05)
    seeds = range(1, 11)
    now = _found_at(slow, seeds)
    monkeypatch.setattr(
        sequential,
        "arrived_bad",
        lambda jumps, plausible: max(0.0, min(jumps[-1], plausible)) if jumps else 0.0,
    )
    before = _found_at(slow, seeds)
    assert now <= 1500 and before >= 1800, (now, before)
