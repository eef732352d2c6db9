"""Detection, classification, concentration and user impact (pure functions of snapshots).

A pod is *degraded* when, in the window, it has at least `minRequests` events and its bad ratio
is (1) at least `absoluteThreshold`, (2) at least `relativeThreshold` times the rest of the
fleet's (leave-one-out), and (3) significantly above the rest by an exact binomial test,
Bonferroni-corrected for the number of pods judged — for `consecutive` evaluations in a row
(hysteresis); it is cleared after `recoveryEvaluations` clean evaluations.

The leave-one-out baseline excludes pods already found worse than the rest and is recomputed
until nothing changes, so several bad pods cannot hide each other (Envoy's success-rate rule
ejects nothing once more than about 22% of hosts are bad alike).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from stickyguard.policy import Detection, Impact
from stickyguard.stats import binomial_sf

HEALTHY, CONCENTRATED, FLEET_WIDE, INSUFFICIENT = (
    "healthy",
    "concentrated",
    "fleet_wide",
    "insufficient_data",
)
# Pseudo-counts on the baseline (half a bad event in one extra request) keep a perfect rest of
# the fleet from making a single bad event "infinitely" significant.
_PRIOR_BAD, _PRIOR_TOTAL = 0.5, 1.0
_MAX_PASSES = 8
_BUILTIN_DIMENSIONS = frozenset({"node", "zone", "version", "replicaset"})


@dataclass(frozen=True)
class PodSample:
    """One pod's signals over the window. Counts are events in the window (rate × window).
    None means the signal was not configured or had no series for this pod: never zero."""

    pod: str
    total: float | None
    bad: float | None
    active_sessions: float | None = None
    degraded_sessions: float | None = None
    affinity_misses: float | None = None


@dataclass(frozen=True)
class MetricsSnapshot:
    """What Prometheus said at one evaluation time. `problems` name the signal and the cause
    (unreachable, timeout, malformed answer, no series); a snapshot with a problem on `total` or
    `bad` must not be acted on."""

    time: float
    window_seconds: float
    samples: tuple[PodSample, ...]
    problems: tuple[str, ...] = ()
    queries: Mapping[str, str] = field(default_factory=dict)
    stale_pods: tuple[str, ...] = ()

    @property
    def usable(self) -> bool:
        return not self.problems and any(s.total is not None for s in self.samples)


@dataclass(frozen=True)
class PodMeta:
    pod: str
    node: str = ""
    zone: str = ""
    version: str = ""
    replicaset: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)

    def dimension(self, name: str) -> str:
        if name in _BUILTIN_DIMENSIONS:
            return str(getattr(self, name))
        return self.labels.get(name, "")


class Track(NamedTuple):
    """Hysteresis state of one pod across evaluations."""

    fails: int = 0
    passes: int = 0
    degraded: bool = False


class PodFinding(NamedTuple):
    pod: str
    node: str
    version: str
    total: float | None
    bad: float | None
    ratio: float | None
    baseline: float | None
    p_value: float | None
    outlier: bool  # failed every test in this evaluation
    degraded: bool  # after hysteresis
    status: str  # degraded | outlier | healthy | insufficient_data | no_data


@dataclass(frozen=True)
class Concentration:
    dimension: str
    value: str
    share: float


@dataclass(frozen=True)
class UserImpact:
    bad_request_ratio: float
    affected_session_ratio: float | None
    amplification: float | None
    method: str  # measured | estimated


@dataclass(frozen=True)
class Findings:
    pods: tuple[PodFinding, ...]
    degraded_pods: tuple[str, ...]
    outlier_pods: tuple[str, ...]
    fleet_bad_ratio: float | None
    classification: str
    concentration: Concentration | None
    impact: UserImpact | None
    bad_share_of_outliers: float | None
    tracks: Mapping[str, Track]
    reason: str


def _ratio(bad: float, total: float) -> float:
    return bad / total if total > 0 else 0.0


class _Counts(NamedTuple):
    pod: str
    n: float
    b: float


def _judged(samples: Iterable[PodSample], min_requests: int) -> list[_Counts]:
    """Pods with enough sane data to be judged: finite counts, >= min_requests, bad <= total."""
    out = []
    for s in samples:
        if s.total is None or s.bad is None:
            continue
        sane = math.isfinite(s.total) and math.isfinite(s.bad) and 0 <= s.bad <= s.total
        if sane and s.total >= min_requests:
            out.append(_Counts(s.pod, s.total, s.bad))
    return out


def find_outliers(
    judged: Sequence[_Counts], d: Detection
) -> tuple[set[str], dict[str, tuple[float, float]]]:
    """Pods failing every test in this evaluation, and each judged pod's (baseline, p-value)."""
    alpha = (1.0 - d.confidence) / max(len(judged), 1)
    total_n = sum(c.n for c in judged)
    total_b = sum(c.b for c in judged)
    # Only pods past the absolute threshold can ever be flagged; the passes visit just those.
    candidates = [c for c in judged if c.n > 0 and c.b >= d.absolute_threshold * c.n]

    def judge(
        c: _Counts, flagged_n: float, flagged_b: float, flagged: set[str]
    ) -> tuple[float, float]:
        rest_n, rest_b = total_n - flagged_n, total_b - flagged_b
        if c.pod not in flagged:
            rest_n, rest_b = rest_n - c.n, rest_b - c.b
        baseline = (rest_b + _PRIOR_BAD) / (rest_n + _PRIOR_TOTAL)
        p_value = 1.0
        if (
            c.n > 0
            and c.b >= d.absolute_threshold * c.n
            and c.b >= d.relative_threshold * baseline * c.n
        ):
            p_value = binomial_sf(c.b, c.n, baseline)  # the exact tail, for few pods only
        return baseline, p_value

    flagged: set[str] = set()
    flagged_n = flagged_b = 0.0
    for _ in range(_MAX_PASSES):
        now = {c.pod for c in candidates if judge(c, flagged_n, flagged_b, flagged)[1] < alpha}
        if now == flagged:
            break
        flagged = now
        flagged_n = sum(c.n for c in candidates if c.pod in flagged)
        flagged_b = sum(c.b for c in candidates if c.pod in flagged)
    evidence = {c.pod: judge(c, flagged_n, flagged_b, flagged) for c in judged}
    return flagged, evidence


@functools.lru_cache(maxsize=4096)
def _step(track: Track, outlier: bool, consecutive: int, recovery: int) -> Track:
    # Counts are capped where they stop mattering, so steady states stay few and cacheable.
    if outlier:
        fails = min(track.fails + 1, consecutive)
        return Track(fails, 0, track.degraded or fails >= consecutive)
    passes = min(track.passes + 1, recovery)
    return Track(0, passes, track.degraded and passes < recovery)


def _advance(track: Track, outlier: bool, d: Detection) -> Track:
    return _step(track, outlier, d.consecutive, d.recovery_evaluations)


def concentration(
    judged: Sequence[_Counts],
    meta: Mapping[str, PodMeta],
    outliers: set[str],
    dimensions: Sequence[str],
) -> Concentration | None:
    """The dimension value holding the most excess bad events relative to its traffic."""
    ref = [c for c in judged if c.pod not in outliers]
    base = _ratio(sum(c.b for c in ref), sum(c.n for c in ref))
    excess = {c.pod: max(0.0, c.b - c.n * base) for c in judged}
    total_excess = sum(excess.values())
    traffic = sum(c.n for c in judged)
    if total_excess <= 0 or traffic <= 0:
        return None
    best: tuple[float, Concentration] | None = None
    none = PodMeta("")
    for dim in dimensions:
        groups: dict[str, list[float]] = {}
        for c in judged:
            value = meta.get(c.pod, none).dimension(dim)
            if value:
                acc = groups.setdefault(value, [0.0, 0.0])
                acc[0] += excess[c.pod]
                acc[1] += c.n
        for value, (ex, tr) in sorted(groups.items()):
            share = ex / total_excess
            lift = share - tr / traffic  # a value every pod shares has no lift
            if lift > 1e-9 and (best is None or lift > best[0] + 1e-12):
                best = (lift, Concentration(dim, value, share))
    if best is not None:
        return best[1]
    worst = max(judged, key=lambda s: (excess[s.pod], s.pod))
    return Concentration("pod", worst.pod, excess[worst.pod] / total_excess)


def user_impact(samples: Sequence[PodSample], impact: Impact) -> UserImpact | None:
    """Share of sessions hit and the amplification over the share of requests hit:
    measured when every pod exports session gauges, else estimated per pod as
    P(session hit) = 1 - (1 - e_p)^k for sessions of k requests pinned to pod p."""
    return _impact(_judged(samples, 0), {s.pod: s for s in samples}, impact)


def _impact(
    counts: Sequence[_Counts], by_pod: Mapping[str, PodSample], impact: Impact
) -> UserImpact | None:
    with_data = [c for c in counts if c.n > 0]
    n = sum(c.n for c in with_data)
    if n <= 0:
        return None
    bad_ratio = sum(c.b for c in with_data) / n
    active = [by_pod[c.pod].active_sessions for c in with_data]
    degraded = [by_pod[c.pod].degraded_sessions for c in with_data]
    if all(a is not None and d is not None for a, d in zip(active, degraded, strict=True)):
        total_active = sum(a for a in active if a is not None)
        if total_active > 0:
            hit = sum(d for d in degraded if d is not None)
            affected = min(1.0, hit / total_active)
            return UserImpact(bad_ratio, affected, _amp(affected, bad_ratio), "measured")
    weights, hits = 0.0, 0.0
    for c, a in zip(with_data, active, strict=True):
        e = min(1.0, c.b / c.n)
        if a is not None and a > 0:
            sessions, k = a, max(1.0, c.n / a)
        else:
            k = impact.requests_per_session
            sessions = c.n / k
        weights += sessions
        hits += sessions * (1.0 - (1.0 - e) ** k)
    affected = hits / weights if weights > 0 else 0.0
    return UserImpact(bad_ratio, affected, _amp(affected, bad_ratio), "estimated")


def _amp(affected: float, bad_ratio: float) -> float | None:
    return affected / bad_ratio if bad_ratio > 0 else None


def analyze(
    samples: Iterable[PodSample],
    meta: Mapping[str, PodMeta],
    detection: Detection,
    impact: Impact,
    tracks: Mapping[str, Track] | None = None,
) -> Findings:
    """One evaluation. `tracks` is the hysteresis state from the previous evaluation."""
    ordered = sorted(samples, key=lambda s: s.pod)  # results never depend on input order
    tracks = tracks or {}
    sane = _judged(ordered, 0)
    judged = [c for c in sane if c.n >= detection.min_requests]
    outliers, evidence = find_outliers(judged, detection)
    new_tracks = {
        s.pod: _advance(tracks.get(s.pod, Track()), s.pod in outliers, detection) for s in judged
    }
    # A pod without data this time keeps its state: absence of evidence is not recovery.
    for s in ordered:
        if s.pod not in new_tracks and s.pod in tracks:
            new_tracks[s.pod] = tracks[s.pod]
    fleet = _ratio(sum(c.b for c in judged), sum(c.n for c in judged)) if judged else None
    if len(judged) < 2:
        classification = INSUFFICIENT
        reason = (
            f"{len(judged)} of {len(ordered)} pods have at least "
            f"{detection.min_requests} events in the window; need 2 to compare"
        )
    elif outliers and len(outliers) < detection.fleet_wide_fraction * len(judged):
        classification = CONCENTRATED
        reason = f"{len(outliers)} of {len(judged)} pods are significantly worse than the rest"
    elif outliers or (fleet is not None and fleet >= detection.absolute_threshold):
        classification = FLEET_WIDE
        reason = (
            f"the fleet is degraded alike ({fleet:.2%} bad); draining would help nobody"
            if fleet is not None
            else "the fleet is degraded alike"
        )
    else:
        classification = HEALTHY
        reason = "no pod is significantly worse than the rest"
    degraded = tuple(
        s.pod for s in judged if new_tracks[s.pod].degraded and classification == CONCENTRATED
    )
    degraded_set = set(degraded)
    pods = []
    none = PodMeta("")
    for s in ordered:
        m = meta.get(s.pod, none)
        base, p = evidence.get(s.pod, (None, None))
        if s.pod in degraded_set:
            status = "degraded"
        elif s.pod in outliers:
            status = "outlier"
        elif s.total is None or s.bad is None:
            status = "no_data"
        elif s.pod not in evidence:
            status = "insufficient_data"
        else:
            status = "healthy"
        ratio = _ratio(s.bad, s.total) if s.total and s.bad is not None else None
        pods.append(
            PodFinding(
                s.pod,
                m.node,
                m.version,
                s.total,
                s.bad,
                ratio,
                base,
                p,
                s.pod in outliers,
                s.pod in degraded_set,
                status,
            )
        )
    conc = (
        concentration(judged, meta, outliers, detection.dimensions)
        if classification == CONCENTRATED
        else None
    )
    total_bad = sum(c.b for c in judged)
    out_share = (
        sum(c.b for c in judged if c.pod in outliers) / total_bad
        if outliers and total_bad > 0
        else None
    )
    return Findings(
        pods=tuple(pods),
        degraded_pods=degraded,
        outlier_pods=tuple(sorted(outliers)),
        fleet_bad_ratio=fleet,
        classification=classification,
        concentration=conc,
        impact=_impact(sane, {s.pod: s for s in ordered}, impact),
        bad_share_of_outliers=out_share,
        tracks=new_tracks,
        reason=reason,
    )


def single_shot(detection: Detection) -> Detection:
    """Detection for a one-off report (`analyze`): no history, so no hysteresis."""
    return replace(detection, consecutive=1)
