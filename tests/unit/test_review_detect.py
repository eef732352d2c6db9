"""Adversarial review of the sequential detector (branch review-detect): each test is a defect
found by driving `analyze` with inputs the product meets in production. They are expected to
fail until the detector is fixed (strict xfail: a fix makes them pass and the marker must go)."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from stickyguard.core.analysis import PodSample, Track, analyze, forget
from stickyguard.core.policy import Detection, Impact

INTERVAL, WINDOW = 15.0, 120.0


def _windows(
    n: np.ndarray, b: np.ndarray, k: int, intervals: int = 8, scale: float = 1.0
) -> list[tuple[float, float]]:
    """Window counts at evaluation k from per-interval arrivals (steps x pods): the sum of the
    last `intervals` intervals times `scale`."""
    lo = max(0, k + 1 - intervals)
    return [
        (float(n[lo : k + 1, j].sum() * scale), float(b[lo : k + 1, j].sum() * scale))
        for j in range(n.shape[1])
    ]


def _drains(
    n: np.ndarray,
    b: np.ndarray,
    *,
    intervals: int = 8,
    scale: float = 1.0,
    skip: frozenset[int] = frozenset(),
    start: int = 0,
) -> list[tuple[int, str]]:
    """(evaluation, pod) offered for draining; an offered pod is forgotten, as the caller does."""
    d = Detection()
    tracks: dict[str, Track] = {}
    out: list[tuple[int, str]] = []
    for k in range(start, n.shape[0]):
        if k in skip:
            continue
        samples = [
            PodSample(f"pod-{j:02d}", tot, bad)
            for j, (tot, bad) in enumerate(_windows(n, b, k, intervals, scale))
        ]
        f = analyze(samples, {}, d, Impact(), tracks, now=(k + 1) * INTERVAL, window_seconds=WINDOW)
        tracks = forget(f.tracks, f.degraded_pods)
        out += [(k, p) for p in f.degraded_pods]
    return out


def _healthy(
    seed: int, pods: int, steps: int, rate: float, ratio: float
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = rng.poisson(rate * INTERVAL, size=(steps, pods)).astype(float)
    return n, rng.binomial(n.astype(np.int64), ratio).astype(float)


# --- 1. Prometheus rate() windows: one bad event is booked about ten times ----------------------
# rate(x[2m]) * 120 with 15 s scrapes: the 8 samples of the range span 105 s and Prometheus
# extrapolates x 120/105, so the window holds 7 intervals x 8/7, not 8. The arrival estimator
# assumes an event leaves after 8 evaluations: at the 7th the count drops, the rise is clamped
# at 0, at the 8th the "leaving" 0.9 x jump is added back as a phantom arrival, and so on every
# window (0.9, 0.81, ...): about 10 bad events for one.
def test_one_bad_event_in_prometheus_rate_windows_is_booked_once() -> None:
    tracks: dict[str, Track] = {}
    booked = 0.0
    for k in range(60):
        bad = 8 / 7 if 10 <= k < 17 else 0.0
        samples = [PodSample(f"pod-{i}", 240.0, bad if i == 0 else 0.0) for i in range(6)]
        f = analyze(samples, {}, Detection(), Impact(), tracks, now=15.0 * (k + 1))
        tracks = dict(f.tracks)
        booked += tracks["pod-0"].jumps[-1][1]
    assert booked == pytest.approx(8 / 7, abs=0.2)  # observed: 5.96 (and counting)


def test_healthy_fleet_on_prometheus_rate_windows_is_never_drained() -> None:
    """20 identical pods, 1 req/s, 0.5% bad, 8 h (6.7 pod-days); the same counts summed over
    exact 8-interval windows drain nothing. Observed: 438 false drains per pod-year at 24 h."""
    n, b = _healthy(seed=1, pods=20, steps=8 * 240, rate=1.0, ratio=0.005)
    assert _drains(n, b, intervals=8) == []  # the simulator's exact windows: fine
    assert _drains(n, b, intervals=7, scale=8 / 7) == []  # what rate()*window returns


# --- 2. Missed evaluations (cycle late by 15-30 s) are the same phantom -------------------------


def test_missed_evaluations_do_not_drain_a_healthy_fleet() -> None:
    """Exact windows, but 30% of the evaluations do not happen (a slow cycle, API throttling).
    Observed: 57 false drains in 40 pod-days (two seeds at 24 h); 5% missed: 4 in 40."""
    n, b = _healthy(seed=0, pods=20, steps=8 * 240, rate=1.0, ratio=0.005)
    rnd = random.Random(0)
    skip = frozenset(k for k in range(n.shape[0]) if rnd.random() < 0.3)
    assert _drains(n, b, skip=skip) == []


# --- 3. A fault present before the first look is invisible --------------------------------------
# J_k = b_k - b_{k-1} + 0.9 J_{k-8}: for a constant window count the estimate decays by 0.9 a
# window; a pod first seen with a full window books one interval's worth, then ~nothing.


def test_a_pod_already_bad_when_first_seen_is_drained() -> None:
    """12 pods at 2 req/s, 0.1% bad; pod-00 at 5% since before the operator started (a restart,
    a new leader: memory is forgotten). Seen from its onset it is drained in 90 s; here never in
    100 min, though it is an outlier in every evaluation."""
    steps, pods = 420, 12
    n = np.full((steps, pods), 30.0)
    b = np.full((steps, pods), 0.03)
    b[:, 0] = 1.5
    drained = _drains(n, b, start=20)
    assert drained and drained[0][1] == "pod-00" and (drained[0][0] - 20) * INTERVAL <= 300


def test_a_4pct_pod_in_a_1pct_fleet_seen_late_is_drained_in_reasonable_time() -> None:
    """Poisson version: 12 pods at 20 req/s with 1% bad (4xx counted as bad), pod-00 at 4% from
    before the first evaluation. Observed over seeds 0-7: 5 of 8 not drained in 2 h (the same
    pod is drained in 120-270 s when its onset is seen)."""
    rng = np.random.default_rng(1)
    n = rng.poisson(20 * INTERVAL, size=(520, 12)).astype(float)
    b = rng.binomial(n.astype(np.int64), 0.01).astype(float)
    b[:, 0] = rng.binomial(n[:, 0].astype(np.int64), 0.04)
    drained = _drains(n, b, start=40)
    assert drained and drained[0][1] == "pod-00" and (drained[0][0] - 40) * INTERVAL <= 600


# --- 4. Recovery without fresh traffic when time does not advance -------------------------------


@pytest.mark.parametrize("times", [(15.0, 15.0, 15.0), (15.0, 5.0, -5.0)], ids=["same", "back"])
def test_a_drained_pod_does_not_recover_when_time_stands_still(times: tuple[float, ...]) -> None:
    d = Detection(recovery_evaluations=2)
    track = Track(degraded=True, seen_time=0.0, seen_total=240.0, evidence_time=0.0)
    tracks = {"pod-00": track}
    for now in times:
        samples = [PodSample("pod-00", 210.0, 26.25)]  # drained: its window only empties
        samples += [PodSample(f"pod-{i:02d}", 240.0, 0.0) for i in range(1, 6)]
        tracks = dict(analyze(samples, {}, d, Impact(), tracks, now=now).tracks)
    assert tracks["pod-00"].degraded and tracks["pod-00"].passes == 0


# --- 5. A half-fleet fault flaps into "concentrated" and drains --------------------------------


def test_a_fault_on_half_the_fleet_drains_nothing() -> None:
    """10 pods at 2 req/s, 5 of them at 5% bad for an hour: fleet-wide. Whenever one of the 5
    misses an alarm, 4 < 0.5 x 10 makes the verdict concentrated and the other 4 are offered.
    Observed over seeds 0-3: drains offered in 16-42 of 240 evaluations."""
    rng = np.random.default_rng(3)
    n = rng.poisson(2 * INTERVAL, size=(280, 10)).astype(float)
    b = rng.binomial(n.astype(np.int64), 0.001).astype(float)
    b[40:, :5] = rng.binomial(n[40:, :5].astype(np.int64), 0.05)
    assert _drains(n, b) == []


# --- 6. Absurd but finite counts crash the evaluation --------------------------------------------
def test_a_huge_finite_count_does_not_crash_the_evaluation() -> None:
    """Two exporters reporting 1e200 (finite, bad <= total, below every threshold) make every
    evaluation of the policy raise OverflowError in sequential.pearson_terms: no detection at
    all for any pod of the policy."""
    samples = [PodSample("pod-00", 1e200, 1e197), PodSample("pod-01", 1e200, 2e197)]
    samples += [PodSample(f"pod-{i:02d}", 240.0, 0.0) for i in range(2, 6)]
    f = analyze(samples, {}, Detection(), Impact(), {}, now=15.0)
    assert all(p.score is None or math.isfinite(p.score) for p in f.pods)


@pytest.mark.parametrize(("total", "bad"), [(100.0, -1.0), (100.0, 150.0), (100.0, math.nan)])
def test_an_unjudgeable_pod_reports_no_ratio_outside_0_1(total: float, bad: float) -> None:
    samples = [PodSample("pod-00", total, bad)]
    samples += [PodSample(f"pod-{i:02d}", 240.0, 1.0) for i in range(1, 6)]
    f = analyze(samples, {}, Detection(), Impact(), {}, now=15.0)
    r = f.pods[0].ratio
    assert r is None or (math.isfinite(r) and 0.0 <= r <= 1.0)
