"""Detection, classification, concentration and user impact (pure functions of snapshots).

Each evaluation turns a pod's window counts into evidence for a sequential detector (see
sequential.py and docs/analysis.md): the bad events that arrived since the last evaluation are
recovered from two consecutive window counts, a burst that stands out of the window's other
arrivals is capped (one retrying client cannot drain a pod), and the log-likelihood ratio of
those arrivals against the leave-one-out baseline, divided by the fleet's overdispersion, feeds a
CUSUM per pod. A pod *alarms* when
its CUSUM reaches the threshold derived from `falseDrainsPerPodYear` while it is an outlier now:
its window has at least `minRequests` events and a bad ratio at least `absoluteThreshold` and
`relativeThreshold` times the rest of the fleet's. It is *degraded* after `consecutive` alarms
in a row and cleared after `recoveryEvaluations` evaluations without one; only a degraded pod
that alarms in this very evaluation is offered for draining.

The exact binomial test of one window, Bonferroni-corrected for the number of pods, still marks
per-evaluation outliers: they are reported, kept out of the baseline and counted for the
concentrated/fleet-wide verdict, but they drain nothing by themselves.

The leave-one-out baseline excludes pods already found worse than the rest and is recomputed
until nothing changes, so several bad pods cannot hide each other (Envoy's success-rate rule
ejects nothing once more than about 22% of hosts are bad alike).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from stickyguard.core import sequential, users_check
from stickyguard.core.policy import Detection, Impact
from stickyguard.core.problems import MetricProblem
from stickyguard.core.stats import binomial_sf

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
DEFAULT_WINDOW_SECONDS = 120.0  # the policy's default window (2m)
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
    # The raw cumulative counters behind total and bad (presets read them): their differences
    # between evaluations are the exact events of each interval, whatever the window's shape.
    total_counter: float | None = None
    bad_counter: float | None = None


@dataclass(frozen=True)
class MetricsSnapshot:
    """What Prometheus said at one evaluation time. `problems` name the signal and the cause
    (unreachable, timeout, malformed answer, no series); a snapshot with a problem on `total` or
    `bad` must not be acted on."""

    time: float
    window_seconds: float
    samples: tuple[PodSample, ...]
    problems: tuple[MetricProblem, ...] = ()
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
    """One pod's detector memory, carried from one evaluation to the next (see `forget`)."""

    fails: int = 0  # alarms in a row
    passes: int = 0  # evaluations in a row without an alarm
    degraded: bool = False
    cusum: tuple[float, ...] = ()  # one statistic per chart (sequential.CHART_FACTORS)
    evidence_time: float | None = None  # when evidence was last added to the CUSUM
    seen_time: float | None = None  # when the pod's counts were last read
    counters: tuple[float, float] | None = None  # (total, bad) raw counters then
    seen_total: float | None = None  # the window's event count then (when without counters)
    jumps: tuple[tuple[float, float], ...] = ()  # (time, bad events arrived) within a window
    dispersion: float = 1.0  # running mean of the fleet's overdispersion (about an hour)
    dispersion_n: int = 0  # estimates in that mean (capped: it becomes a moving average)
    # Events and bad events since the CUSUM last stood at zero: the estimate of the pod's ratio
    # since its change began, which must itself clear the thresholds for an alarm.
    run: tuple[float, float] = (0.0, 0.0)
    # Evaluations and their summed excess of hurt sessions over the same span (session gauges),
    # and the excess of the last few evaluations (users_check.clear).
    hurt: tuple[float, float] = (0.0, 0.0)
    recent: tuple[float, ...] = ()
    # (time, leave-one-out baseline) a minute apart over the last hour: the CUSUM's floor
    # (sequential.baseline_floor).
    baselines: tuple[tuple[float, float], ...] = ()

    @property
    def score(self) -> float:
        return max(self.cusum, default=0.0)


def forget(tracks: Mapping[str, Track], pods: Iterable[str]) -> dict[str, Track]:
    """The tracks without these pods' memory. Callers forget a pod when they restore, evict or
    isolate it, and forget every pod on gaining leadership, so that a pod is drained again only
    on evidence gathered since, while it is an outlier now. A drained pod keeps its memory: it
    has no new traffic, and no new evidence is not evidence of health."""
    drop = set(pods)
    return {pod: t for pod, t in tracks.items() if pod not in drop}


class PodFinding(NamedTuple):
    pod: str
    node: str
    version: str
    total: float | None
    bad: float | None
    ratio: float | None
    baseline: float | None
    p_value: float | None
    outlier: bool  # an outlier of this window's test, or alarming
    degraded: bool  # offered for draining: degraded and alarming now
    status: str  # degraded | outlier | healthy | insufficient_data | no_data
    score: float | None = None  # the CUSUM (the largest chart's)
    threshold: float | None = None  # the CUSUM's alarm threshold


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


# Above this many events in one window a count is an exporter's bug, not traffic (a million
# requests per second for ten years); such a pod is not judged rather than overflow the maths.
MAX_EVENTS = 1e15


def _sane(total: float, bad: float) -> bool:
    return math.isfinite(total) and math.isfinite(bad) and 0 <= bad <= total <= MAX_EVENTS


def _judged(samples: Iterable[PodSample], min_requests: int) -> list[_Counts]:
    """Pods with enough sane data to be judged: finite counts, >= min_requests, bad <= total."""
    out = []
    for s in samples:
        if s.total is None or s.bad is None:
            continue
        sane = _sane(s.total, s.bad)
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


def events_since(
    s: PodSample,
    window_counts: tuple[float, float],
    previous: tuple[float, float] | None,
    seen_total: float | None,
    elapsed: float | None,
    window: float,
    interval: float,
) -> tuple[float, float, tuple[float, float] | None]:
    """(events, bad events) that arrived since the pod's last evaluation, and its counters now.

    Exact from the raw counters when the sample has them and the track holds the previous ones
    (a counter that went down was reset: what it holds now is new, as Prometheus' increase()
    reads it). Otherwise (a first look, or custom queries without counters) the window counts
    are shared out evenly: elapsed/window of them, so each event counts once on average; this
    never invents an arrival, and a fault older than the first look still shows. `previous`:
    the counters at the last evaluation; `seen_total`: the window's event count then."""
    n, b = window_counts
    now_counters = None
    tc, bc = s.total_counter, s.bad_counter
    if tc is not None and bc is not None and _sane(tc, bc):
        now_counters = (tc, bc)
    if now_counters is not None and previous is not None:
        new_n = now_counters[0] - previous[0] if now_counters[0] >= previous[0] else now_counters[0]
        new_b = now_counters[1] - previous[1] if now_counters[1] >= previous[1] else now_counters[1]
        return new_n, min(new_b, new_n), now_counters
    weight = sequential.window_weight(elapsed, window, interval)
    # Events leave the window evenly (traffic changes slowly), so what it holds beyond the
    # previous window's remainder is new; a drained pod's emptying window holds nothing new.
    new_n = n * weight if seen_total is None else max(0.0, n - seen_total * (1 - weight))
    return new_n, min(b * weight, new_n), now_counters


# The run's bad count, less this many of its standard deviations (one-sided, about 97.7%),
# must still clear the thresholds.
RUN_MARGIN_Z = 2.0


def run_clears(run: tuple[float, float], d: Detection, base: float, phi: float) -> bool:
    """The pod's ratio since its CUSUM last stood at zero clears both thresholds with a margin
    for its noise: a pod steadily just below `relativeThreshold` (2.5x the fleet, say) reaches
    the thresholds in a short run now and then, but not z standard deviations beyond them,
    while a fault well above them clears the margin after a few bad events. The deviation
    counts the overdispersion `phi`: with clustered errors a healthy pod's run of ten minutes
    at 3.5 times its own mean is noise (on 3- to 6-pod fleets a Poisson margin let such runs
    drain 2-4 healthy pods per pod-year)."""
    n, b = run
    low = b - RUN_MARGIN_Z * math.sqrt(max(phi * b, 0.0))
    return n > 0 and low >= d.absolute_threshold * n and low >= d.relative_threshold * base * n


def analyze(
    samples: Iterable[PodSample],
    meta: Mapping[str, PodMeta],
    detection: Detection,
    impact: Impact,
    tracks: Mapping[str, Track] | None = None,
    *,
    now: float | None = None,
    window_seconds: float = DEFAULT_WINDOW_SECONDS,
    sessions_expected: bool = False,
) -> Findings:
    """One evaluation. `tracks` is the detector memory returned by the previous evaluation (see
    `forget`); `now` is the evaluation time and
    `window_seconds` the window the counts cover (MetricsSnapshot.time and .window_seconds).
    Without `now`, evaluations are taken to be `intervalSeconds` apart. `sessions_expected`:
    the policy reads session gauges, so a pod whose gauges are missing is not drained on that
    evaluation (a pod that exports them is checked either way; see users_check)."""
    d = detection
    ordered = sorted(samples, key=lambda s: s.pod)  # results never depend on input order
    tracks = tracks or {}
    if now is None:
        seen = [t.seen_time for t in tracks.values() if t.seen_time is not None]
        now = (max(seen) if seen else 0.0) + d.interval_seconds
    sane = _judged(ordered, 0)
    raw_bad = {c.pod: c.b for c in sane}
    by_pod = {s.pod: s for s in ordered}
    arrivals: dict[str, tuple[tuple[float, float], ...]] = {}
    interval_events: dict[str, tuple[float, float]] = {}
    counters: dict[str, tuple[float, float] | None] = {}
    evidence_counts: list[_Counts] = []
    # The burst the window judged now sets aside is set in seconds (sequential.burst_span).
    burst_span = sequential.burst_span(d.interval_seconds, window_seconds)
    for c in sane:
        if d.one_shot:  # no history: the window is judged as it is
            evidence_counts.append(c)
            continue
        t = tracks.get(c.pod, Track())
        elapsed = None if t.seen_time is None else now - t.seen_time
        if elapsed is not None and elapsed <= 0:
            # Time did not move (a retried cycle, a clock stepped back): nothing new happened,
            # so nothing is added, and the pod keeps its memory as it was.
            interval_events[c.pod] = (0.0, 0.0)
            counters[c.pod] = t.counters
            arrivals[c.pod] = t.jumps
        else:
            new_n, new_b, counters[c.pod] = events_since(
                by_pod[c.pod],
                (c.n, c.b),
                t.counters,
                t.seen_total,
                elapsed,
                window_seconds,
                d.interval_seconds,
            )
            interval_events[c.pod] = (new_n, new_b)
            kept = tuple((ts, j) for ts, j in t.jumps if ts > now - window_seconds)
            arrivals[c.pod] = (*kept, (now, new_b))
        robust_bad = sequential.discount_burst(c.b, [j for _, j in arrivals[c.pod]], burst_span)
        evidence_counts.append(_Counts(c.pod, c.n, robust_bad))
    judged = [c for c in evidence_counts if c.n >= d.min_requests]
    flagged, evidence = find_outliers(judged, d)
    # The sequential detector's baseline: every pod with data, leave-one-out, without this
    # window's outliers and the pods already degraded (so bad pods cannot hide each other).
    excluded = flagged | {p for p, t in tracks.items() if t.degraded}
    # Raw window counts: the arrivals judged against it are never more than raw, so a baseline
    # lowered by the burst discount would make every pod look worse than the rest.
    ref = [c for c in sane if c.n > 0 and c.pod not in excluded]
    ref_n, ref_b = sum(c.n for c in ref), sum(c.b for c in ref)
    terms = sequential.pearson_terms([(c.n, c.b) for c in ref], _ratio(ref_b, ref_n))
    ref_index = {c.pod: i for i, c in enumerate(ref)}
    # Session gauges of the reference pods that export them, for the users' check.
    readings = {
        c.pod: users_check.reading(by_pod[c.pod].active_sessions, by_pod[c.pod].degraded_sessions)
        for c in evidence_counts
    }
    gauged = {c.pod: r for c in ref if isinstance(r := readings.get(c.pod), tuple)}
    ref_sessions = (sum(a for a, _ in gauged.values()), sum(h for _, h in gauged.values()))
    span = users_check.recent_span(window_seconds, d.interval_seconds)
    h = sequential.threshold(d.false_drains_per_pod_year, d.interval_seconds)
    new_tracks: dict[str, Track] = {}
    alarms: set[str] = set()
    held_by_users: set[str] = set()  # would alarm, but too few of their users are hurt
    for c in evidence_counts:
        t = tracks.get(c.pod, Track())
        is_judged = c.n >= d.min_requests
        rest_n, rest_b = ref_n, ref_b
        if c.pod not in excluded and c.n > 0:
            rest_n, rest_b = rest_n - c.n, rest_b - raw_bad[c.pod]
        base = (rest_b + _PRIOR_BAD) / (rest_n + _PRIOR_TOTAL)
        # Thin data on this pod is fine for a sequential test (evidence accumulates), but the
        # rest of the fleet must be large enough to be a baseline.
        comparable = rest_n >= d.min_requests and c.n > 0
        # One window rarely holds a cluster at low traffic: average the fleet's estimate over
        # about an hour of evaluations so clustered traffic is known before it strikes.
        disp_n = min(t.dispersion_n + 1, sequential.DISPERSION_MEMORY)
        estimate = sequential.dispersion(terms, ref_index.get(c.pod))
        if t.dispersion_n >= sequential.DISPERSION_SETTLED:
            # A settled mean moves by bounded steps: other pods turning bad at once must not
            # pass for clustering, while steady clustering still raises it within the hour.
            estimate = min(estimate, sequential.DISPERSION_STEP * max(1.0, t.dispersion))
        disp = t.dispersion + (estimate - t.dispersion) / disp_n
        phi = max(1.0, disp)
        cusum, evidence_time, run, hurt, recent = t.cusum, t.evidence_time, t.run, t.hurt, t.recent
        baselines = t.baselines
        gauges = readings[c.pod]
        checked = sessions_expected or gauges != users_check.MISSING
        excess = None
        if isinstance(gauges, tuple):
            mine = gauged.get(c.pod, (0.0, 0.0))
            rest_sessions = (ref_sessions[0] - mine[0], ref_sessions[1] - mine[1])
            excess = users_check.excess(gauges, rest_sessions)
        fresh = is_judged
        moved = d.one_shot or t.seen_time is None or now > t.seen_time
        if comparable and moved:
            # Evidence since the last evaluation: the bad events that arrived (the largest
            # severe fault's interval at most, see sequential.arrived_bad) among the events of one
            # interval, the window's traffic spread evenly (traffic changes slowly; bad events
            # are what we must not smear).
            if d.one_shot:
                new_n, new_b = c.n, c.b
            else:
                elapsed = None if t.seen_time is None else now - t.seen_time
                weight = sequential.window_weight(elapsed, window_seconds, d.interval_seconds)
                # Fresh events since the last look. A drained pod gets none (its counters stand
                # still), so it gains no evidence of health from its old traffic.
                new_n, _ = interval_events[c.pod]
                fresh = new_n >= d.min_requests * weight
            charts = sequential.alternatives(base, d.absolute_threshold, d.relative_threshold)
            if not d.one_shot:
                plausible = new_n * charts[-1]
                new_b = min(
                    new_n, sequential.arrived_bad([j for _, j in arrivals[c.pod]], plausible)
                )
            # The floor holds the baseline up only as far as the window allows: after a
            # long fleet-wide incident or a fall in the fleet's ratio, the hour's floor is
            # stale, and the rest of the fleet's window rules it out.
            floor = sequential.baseline_floor(t.baselines, now)
            null = max(base, min(floor, sequential.upper_ratio(rest_b, rest_n, phi)))
            baselines = sequential.remember_baseline(t.baselines, now, base)
            increments = tuple(sequential.llr(new_b, new_n, null, p1) / phi for p1 in charts)
            cusum, evidence_time = sequential.update(t.cusum, increments, h), now
            if max(cusum, default=0.0) <= 0.0:
                run, hurt = (0.0, 0.0), (0.0, 0.0)
            else:
                run = (t.run[0] + new_n, t.run[1] + min(new_n, new_b))
                if excess is not None:
                    hurt = (t.hurt[0] + 1.0, t.hurt[1] + excess)
            if excess is not None:
                recent = (*t.recent, excess)[-span:]
        outlier_now = (
            comparable
            and c.b > 0
            and c.b >= d.absolute_threshold * c.n
            and c.b >= d.relative_threshold * base * c.n
        )
        # The CUSUM's charts test the baseline against higher ratios, so a pod steadily between
        # the baseline and the thresholds (2x the fleet, say: other users, not a fault) gains
        # evidence too, and noise lets its window pass now and then. The ratio since its change
        # began is a long-run estimate: it must clear the same thresholds.
        clears = run_clears(run, d, base, phi)
        # A one-off report has no history: the window's exact test decides alone, and the
        # users' check looks at this window's excess only.
        if not checked:
            users_clear = True
        elif excess is None:
            users_clear = False  # gauges expected but missing or impossible: no drain now
        elif d.one_shot:
            users_clear = excess >= d.min_degraded_sessions - 1e-9
        else:
            users_clear = users_check.clear(hurt, recent, span, d.min_degraded_sessions)
        would = (
            c.pod in flagged
            if d.one_shot
            else outlier_now and clears and max(cusum, default=0.0) >= h - 1e-9
        )
        alarm = would and users_clear
        fails, passes, degraded = t.fails, t.passes, t.degraded
        if alarm:
            fails, passes = min(fails + 1, d.consecutive), 0
            degraded = degraded or fails >= d.consecutive
        elif is_judged and fresh and moved:  # recovery needs new data, not absence of evidence
            fails, passes = 0, min(passes + 1, d.recovery_evaluations)
            degraded = degraded and passes < d.recovery_evaluations
        if alarm:
            alarms.add(c.pod)
        elif would:
            held_by_users.add(c.pod)
        new_tracks[c.pod] = Track(
            fails,
            passes,
            degraded,
            cusum,
            evidence_time,
            max(now, t.seen_time) if t.seen_time is not None else now,
            counters.get(c.pod),
            c.n if not d.one_shot else None,
            arrivals.get(c.pod, ()),
            disp,
            disp_n,
            run,
            hurt,
            recent,
            baselines,
        )
    # A pod without data this time keeps its state: absence of evidence is not recovery.
    for s in ordered:
        if s.pod not in new_tracks and s.pod in tracks:
            new_tracks[s.pod] = tracks[s.pod]
    outliers = flagged | alarms
    # Pods compared: those with minRequests events; when fewer than two have that many (a quiet
    # service), every pod with data, as long as they hold 2 x minRequests events together.
    considered = judged if len(judged) >= 2 else [c for c in evidence_counts if c.n > 0]
    if sum(c.n for c in considered) < 2 * d.min_requests:
        considered = judged
    names = {c.pod for c in considered}
    raw_considered = [c for c in sane if c.pod in names]
    fleet = (
        _ratio(sum(c.b for c in raw_considered), sum(c.n for c in raw_considered))
        if raw_considered
        else None
    )
    # Pods bad beyond the absolute threshold in this window, proven outliers or not: when half
    # the fleet is hot, a fault is fleet-wide even in an evaluation where some of its pods have
    # not (or no longer) alarmed, so the verdict does not flap into "concentrated".
    hot = {
        c.pod
        for c in raw_considered
        if c.n >= d.min_requests and c.b > 0 and c.b >= d.absolute_threshold * c.n
    }
    if len(considered) < 2:
        classification = INSUFFICIENT
        reason = (
            f"{len(judged)} of {len(ordered)} pods have at least "
            f"{d.min_requests} events in the window; need 2 to compare"
        )
    elif outliers and len(outliers | hot) < d.fleet_wide_fraction * len(considered):
        classification = CONCENTRATED
        reason = f"{len(outliers)} of {len(considered)} pods are significantly worse than the rest"
    elif outliers or (fleet is not None and fleet >= d.absolute_threshold):
        classification = FLEET_WIDE
        reason = (
            f"the fleet is degraded alike ({fleet:.2%} bad); draining would help nobody"
            if fleet is not None
            else "the fleet is degraded alike"
        )
    else:
        classification = HEALTHY
        reason = "no pod is significantly worse than the rest"
    if held_by_users:
        # Said out loud: a pod that looks bad by its requests and is left serving must not
        # leave people guessing (nor hide session gauges that read 0 by mistake).
        reason += (
            f"; not drained, too few hurt users by the session gauges, or none read "
            f"(minDegradedSessions {d.min_degraded_sessions}): {', '.join(sorted(held_by_users))}"
        )
    degraded_pods = tuple(
        c.pod
        for c in considered
        if new_tracks[c.pod].degraded and c.pod in alarms and classification == CONCENTRATED
    )
    degraded_set = set(degraded_pods)
    pods = []
    none = PodMeta("")
    for s in ordered:
        m = meta.get(s.pod, none)
        reported_base, p = evidence.get(s.pod, (None, None))
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
        ratio = (
            _ratio(s.bad, s.total)
            if s.total is not None and s.bad is not None and s.total > 0 and _sane(s.total, s.bad)
            else None
        )
        track = new_tracks.get(s.pod)
        pods.append(
            PodFinding(
                s.pod,
                m.node,
                m.version,
                s.total,
                s.bad,
                ratio,
                reported_base,
                p,
                s.pod in outliers,
                s.pod in degraded_set,
                status,
                None if track is None or not track.cusum else round(track.score, 3),
                round(h, 3),
            )
        )
    raw = raw_considered
    conc = (
        concentration(raw, meta, outliers, d.dimensions) if classification == CONCENTRATED else None
    )
    total_bad = sum(c.b for c in raw)
    out_share = (
        sum(c.b for c in raw if c.pod in outliers) / total_bad
        if outliers and total_bad > 0
        else None
    )
    return Findings(
        pods=tuple(pods),
        degraded_pods=degraded_pods,
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
    """Detection for a one-off report (`analyze`): no history, so the window's exact binomial
    test decides alone, as it did before the sequential detector."""
    return replace(detection, consecutive=1, one_shot=True)
