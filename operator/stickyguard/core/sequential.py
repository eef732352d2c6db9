"""The sequential detector's maths (pure, no dependencies): a CUSUM per pod on the binomial
log-likelihood ratio of its bad events against the leave-one-out baseline (held up by a floor
from the pod's last hour), its threshold derived from a false-drain budget, per-interval
arrivals recovered from overlapping windows, the cap on bursts and the overdispersion of
clustered traffic. `analysis.py` wires these into an
evaluation; the reasoning and the derivation of the defaults are in docs/analysis.md.
"""

from __future__ import annotations

import collections
import math
import statistics
from collections.abc import Sequence

SECONDS_PER_YEAR = 365.25 * 86400.0
# Each pod runs one CUSUM per alternative p1 = factor x the smallest shift worth draining
# (max(absoluteThreshold, relativeThreshold x baseline)): the smallest catches mild faults, the
# larger ones catch severe faults sooner (a CUSUM is fastest for the shift it is tuned to).
CHART_FACTORS = (1.0, 3.0, 10.0)
_P1_MAX = 0.9
# The CUSUM is capped a little above the threshold so that a pod that was bad for an hour
# recovers in minutes once it is good again (the cap never delays an alarm).
CAP_FACTOR = 1.5
# The fewest intervals a drain's evidence comes from (see `update`).
MIN_EVIDENCE_INTERVALS = 4
# The longest burst of bad events (clients retrying) that the window judged now sets aside
# (`discount_burst`). In seconds, because retries last seconds, not evaluations: counted as
# two intervals it was 30 s at 15 s but 10 s at 5 s, where two clients retrying for 30 s
# drained the healthy pod they were pinned to at every storm.
BURST_SECONDS = 30.0
# Evaluations in the running mean of the overdispersion (240 x 15 s: an hour).
DISPERSION_MEMORY = 240
DISPERSION_SETTLED, DISPERSION_STEP = 20, 4.0
# The floor under the CUSUM's baseline (`baseline_floor`): a low quantile of the pod's
# leave-one-out baseline, one sample a minute over the last hour, once ten minutes are known.
FLOOR_SECONDS, FLOOR_SAMPLE_SECONDS, FLOOR_MIN_SAMPLES, FLOOR_QUANTILE = 3600.0, 60.0, 10, 0.25
# How far above the window's baseline the floor may hold it: the window's upper bound at this z.
FLOOR_UPPER_Z = 2.33


def threshold(false_drains_per_pod_year: float, interval_seconds: float) -> float:
    """CUSUM threshold h for a false-alarm budget.

    Lorden (1971): a CUSUM on exact log-likelihood ratios, stopped when it reaches h, has an
    average run length under the null of at least e^h observations. One observation per
    evaluation interval, and K charts sharing the budget (a union bound), give
    h = ln(seconds per year / (budget x interval)) + ln K."""
    if false_drains_per_pod_year <= 0 or interval_seconds <= 0:
        raise ValueError("the budget and the interval must be > 0")
    evaluations = SECONDS_PER_YEAR / (false_drains_per_pod_year * interval_seconds)
    return math.log(max(evaluations, 1.0)) + math.log(len(CHART_FACTORS))


def alternatives(baseline: float, absolute: float, relative: float) -> tuple[float, ...]:
    """The bad ratio each chart is tuned to; each is above the baseline (or the chart is inert)."""
    smallest = max(absolute, relative * baseline)
    return tuple(min(_P1_MAX, f * smallest) for f in CHART_FACTORS)


def remember_baseline(
    history: Sequence[tuple[float, float]], now: float, baseline: float
) -> tuple[tuple[float, float], ...]:
    """The (time, baseline) samples of the last hour, one a minute at most. Samples from the
    future (a clock stepped back) are dropped with the old ones."""
    kept = _last_hour(history, now)
    if kept and now - kept[-1][0] < FLOOR_SAMPLE_SECONDS:
        return kept
    return (*kept, (now, baseline))


def _last_hour(
    history: Sequence[tuple[float, float]], now: float
) -> tuple[tuple[float, float], ...]:
    return tuple((ts, b) for ts, b in history if now - FLOOR_SECONDS < ts <= now)


def baseline_floor(history: Sequence[tuple[float, float]], now: float) -> float:
    """The lowest baseline the CUSUM tests against: the lower quartile of the last hour's.

    One window of the rest of a small fleet with clustered errors now and then holds no
    cluster at all, and its baseline drops to nearly nothing (0.02% for a fleet at 0.5%):
    every bad event of the pod judged against it then weighs ln(p1/p0) ~ 4 nats, and a few
    clusters in a row drain a healthy pod. A baseline that was higher for most of the hour
    was not that low. The floor only ever raises the baseline, so it can slow detection but
    not add evidence. The lower quartile rises only once three quarters of the hour are
    higher (a fleet-wide incident of up to 45 minutes leaves it where it was) but falls once a
    quarter is lower (15 minutes): in between it is stale, and the caller caps it with what the
    window allows (`upper_ratio`). 0 until ten minutes are known (a new pod, a restarted
    operator; samples of the last hour only, so a pod back after a long gap is not judged
    against its old level): the window's baseline alone."""
    ordered = sorted(b for _, b in _last_hour(history, now))
    if len(ordered) < FLOOR_MIN_SAMPLES:
        return 0.0
    return ordered[int(FLOOR_QUANTILE * (len(ordered) - 1))]


def upper_ratio(bad: float, total: float, phi: float, z: float = FLOOR_UPPER_Z) -> float:
    """An upper confidence bound on the ratio behind `bad` of `total` events whose bad events
    come in clusters (overdispersion `phi`): the Poisson score bound on bad / phi independent
    events, scaled back. With no bad event and phi = 1 it is about 5.4 / total."""
    if total <= 0:
        return 1.0
    effective = max(bad, 0.0) / max(phi, 1.0)
    upper = effective + z * z / 2 + z * math.sqrt(effective + z * z / 4)
    return min(1.0, max(phi, 1.0) * upper / total)


def llr(bad: float, total: float, p0: float, p1: float) -> float:
    """log P(bad of total | p1) / P(bad of total | p0) for independent events: linear in the
    counts, so weighted or non-integer counts (rates x window) are fine."""
    if not 0.0 < p0 < p1 < 1.0 or total <= 0:
        return 0.0
    good = max(0.0, total - bad)
    return bad * math.log(p1 / p0) + good * (math.log1p(-p1) - math.log1p(-p0))


def intervals_in(seconds: float, interval_seconds: float) -> int:
    """The fewest evaluation intervals that cover `seconds` (at least one)."""
    if interval_seconds <= 0:
        raise ValueError("the interval must be > 0")
    return max(1, math.ceil(seconds / interval_seconds - 1e-9))


def burst_span(interval_seconds: float, window_seconds: float) -> int:
    """How many adjacent intervals `discount_burst` may set aside: BURST_SECONDS of them, but
    no more than a quarter of the window (and never fewer than two, the rule at 15 s). A burst
    can only be told from a fault when the window's typical level comes from outside it: on a
    window of eight 5 s intervals a 30 s storm *is* the typical level and drained its pod with
    any span, while setting six of eight aside only took a fault's first seconds for a burst
    (the demo's 5% pod was found 5 s later on two seeds of three)."""
    most = intervals_in(BURST_SECONDS, interval_seconds)  # raises on a bad interval
    return min(most, max(2, int(window_seconds / interval_seconds + 1e-9) // 4))


def update(cusum: Sequence[float], increments: Sequence[float], h: float) -> tuple[float, ...]:
    """One CUSUM step per chart: S <- min(cap, max(0, S + min(x, h / MIN_EVIDENCE_INTERVALS))).

    No interval gives more than its share of the threshold, so a drain always rests on evidence
    from at least MIN_EVIDENCE_INTERVALS intervals. Clustered bad events (a client's retries,
    one session's failing calls) have a heavy tail that the overdispersion factor, a mean,
    cannot tame: one cluster of 20 in an interval of a clean pod is worth most of h by itself.
    A real fault keeps giving evidence every interval, and the window judged now (see
    `discount_burst`) already needs faulty intervals beyond the burst it sets aside, so the
    clip delays no drain by more than an interval. The clip counts intervals, not seconds: in
    seconds (a minute) it would hold a drain at 5 s for a minute, three times the 20 s a
    severe fault needs (docs/analysis.md says which storms that leaves at 5 s)."""
    cap = CAP_FACTOR * h
    most = h / MIN_EVIDENCE_INTERVALS
    if not cusum:
        cusum = (0.0,) * len(increments)
    return tuple(
        min(cap, max(0.0, s + min(x, most))) for s, x in zip(cusum, increments, strict=True)
    )


def window_weight(elapsed: float | None, window: float, interval: float) -> float:
    """Share of a window's evidence that is new since the last evaluation. Windows overlap (a 2m
    window every 15 s holds each event 8 times), so each window counts elapsed/window: every
    event is counted once on average. A first evaluation counts one interval's worth; after a
    gap longer than the window, the window counts once (the gap's events are lost, not
    invented)."""
    if window <= 0:
        return 1.0
    step = interval if elapsed is None else elapsed
    return max(0.0, min(1.0, step / window))


def discount_burst(bad: float, jumps: Sequence[float], span: int = 2) -> float:
    """The window's bad count without its largest burst: the largest excess over the window's
    typical (median) arrival of up to `span` adjacent intervals that are all above it (see
    `burst_span`: a client retrying for up to ~30 s straddles two 15 s intervals, or six 5 s
    ones on a long enough window). A faulty pod spreads its bad answers over every interval, so
    it loses next to nothing, whatever the window's length in intervals; one retrying client on
    a healthy pod (median ~0) loses its whole burst and can never make the window an outlier by
    itself. An interval at or below the typical one ends a burst: a fault that fails in short
    bursts with quiet intervals between them is not one long burst (joined across the gaps,
    six intervals set aside on a 40 s window hid a pod failing 5 s in every 20 s for an hour).
    With only two intervals in the window a burst cannot be told from a fault, and half of the
    difference is discounted."""
    if not jumps:
        return max(0.0, bad)
    typical = statistics.median(jumps)
    run: collections.deque[float] = collections.deque(maxlen=max(1, span))
    biggest = 0.0
    for j in jumps:
        if j <= typical:
            run.clear()
            continue
        run.append(j - typical)
        biggest = max(biggest, sum(run))
    return max(0.0, bad - biggest)


def arrived_bad(jumps: Sequence[float], plausible: float) -> float:
    """The bad events that arrived since the last evaluation (the last of `jumps`), capped at
    `plausible`: what the most severe alternative (the largest chart's ratio) expects among the
    interval's events. A faulty pod below that ratio is never capped; a burst of retries counts
    no more than a severe fault's interval, and only the window judged now (see
    `discount_burst`) can tell the burst from a fault. The cap is never below one event: under
    about 7 events an interval (0.4 req/s at 15 s) the expectation is a fraction, and a fault's
    every bad answer counted as that fraction (a 5% pod at 0.3 req/s in a 0.5% fleet was found
    after 37 minutes at the median instead of 22, and one turning bad in the evening, as
    traffic fell, the next morning)."""
    if not jumps:
        return 0.0
    return max(0.0, min(jumps[-1], max(plausible, 1.0)))


def pearson_terms(counts: Sequence[tuple[float, float]], p: float) -> dict[int, float]:
    """Index -> (b - n p)^2 / (n p (1 - p)): each pod's share of the Pearson X^2 statistic."""
    if not 0.0 < p < 1.0:
        return {}
    return {
        i: (b - n * p) ** 2 / (n * p * (1.0 - p))
        for i, (n, b) in enumerate(counts)
        if n * p * (1.0 - p) > 0
    }


def dispersion(terms: dict[int, float], leave_out: int | None, min_pods: int = 2) -> float:
    """Variance inflation of bad counts across the fleet (Pearson X^2 per degree of freedom),
    floored at 1, leaving the judged pod out so that it cannot hide itself. Sessions and
    retries cluster bad events, so counts vary more than a binomial says; dividing the
    log-likelihood ratio by this factor (quasi-likelihood) keeps the evidence honest. Too few
    pods give no estimate (1). One evaluation of two or three pods is a poor estimate, but the
    caller averages about an hour of them, which is a good one: small fleets need the correction
    most (with a 4-pod floor, 3- and 4-pod fleets with clustered errors were drained hundreds of
    times per pod-year)."""
    total, count = sum(terms.values()), len(terms)
    if leave_out is not None and leave_out in terms:
        total, count = total - terms[leave_out], count - 1
    if count < min_pods:
        return 1.0
    return max(1.0, total / (count - 1))
