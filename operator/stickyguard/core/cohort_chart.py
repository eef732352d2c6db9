"""The rollout judge's memory (pure): a CUSUM of the new version's cohort against the old one.

One window's two-sample test at `confidence` is a test per evaluation, and a `fail` latches for
the version: evaluated every interval for the length of a rollout, a healthy canary was failed
in 9 of 100 ten-minute rollouts at 2 req/s with independent errors, and in 46-61 of 100 with
errors in clusters (a client retrying): each a paused or rolled-back release
(bench/results/rollout-judge.md). So a version fails only on the evidence a pod is drained on
(core.sequential, core.analysis): a CUSUM of the cohort's arrivals since the last evaluation,
with the same charts, the same threshold from `falseDrainsPerPodYear` and the same clip of h/4
per interval, divided by the fleet's overdispersion; tested against the old cohort's ratio
held up by the detector's hour-long floor; a run since the chart left zero that clears the
thresholds with a margin; and a window that is worse without its largest burst. A healthy
version is then failed about as rarely as a healthy pod is drained. A new version's pod that
the detector itself judged degraded is the version's evidence too (drained, it stops feeding
the chart) when the version's other pods with data agree. The chart is kept by the leader only
and starts again with each new version and each term as leader (a real failure is then found a
few intervals later, never sooner).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from stickyguard.core import sequential
from stickyguard.core.analysis import PodSample, Track, events_since


class PodMemory(NamedTuple):
    """What the chart keeps of one new pod between evaluations."""

    counters: tuple[float, float] | None  # raw (total, bad) counters then
    seen_total: float  # the window's event count then
    jumps: tuple[tuple[float, float], ...] = ()  # (time, bad events arrived) within a window


@dataclass(frozen=True)
class CohortChart:
    """The new cohort's CUSUM (one statistic per chart of core.sequential) for one version, and
    what its next evaluation goes on from."""

    new_hash: str = ""
    cusum: tuple[float, ...] = ()
    seen_time: float | None = None
    pods: Mapping[str, PodMemory] = field(default_factory=dict)
    # Events and bad events since the CUSUM last stood at zero (analysis.run_clears).
    run: tuple[float, float] = (0.0, 0.0)
    # The fleet's overdispersion when the chart began: the version it judges cannot raise it.
    phi: float | None = None

    @property
    def score(self) -> float:
        return max(self.cusum, default=0.0)


@dataclass(frozen=True)
class DetectorView:
    """What the pod detector's memory says that the judge uses."""

    phi: float = 1.0  # the fleet's overdispersion
    floor: float = 0.0  # the old cohort's baseline floor over the last hour
    degraded: frozenset[str] = frozenset()  # new pods the detector judged degraded


def detector_view(
    tracks: Mapping[str, Track], new_pods: Iterable[str], old_pods: Iterable[str], now: float
) -> DetectorView:
    """The fleet's overdispersion (the median of the pods' running means; 1 without any), the
    median of the old pods' baseline floors, and the new pods the detector judged degraded."""
    known = [t for t in tracks.values() if t.dispersion_n > 0]
    floors = [sequential.baseline_floor(tracks[p].baselines, now) for p in old_pods if p in tracks]
    return DetectorView(
        statistics.median(max(1.0, t.dispersion) for t in known) if known else 1.0,
        statistics.median(floors) if floors else 0.0,
        frozenset(p for p in new_pods if p in tracks and tracks[p].degraded),
    )


def start(chart: CohortChart, new_hash: str, view: DetectorView) -> CohortChart:
    """The chart for `new_hash`: this one, or a new one. A chart keeps the overdispersion of its
    first evaluation for the version's whole rollout; after a change of leader that is 1 (the
    detector's memory is empty). Measured by a review: waiting for a settled estimate instead
    let the bad version's own pods inflate it (15 of 20 bad versions not failed within 15
    minutes), while charts kept at 1 failed none of the healthy canaries tried (5 settings of
    20 runs, 2 of 40, clustered errors)."""
    if chart.new_hash != new_hash:
        return CohortChart(new_hash, phi=view.phi)
    return chart if chart.phi is not None else replace(chart, phi=view.phi)


def advance(
    chart: CohortChart,
    new_samples: Sequence[PodSample],
    null: float,
    charts: Sequence[float],
    phi: float,
    h: float,
    now: float,
    window: float,
    interval: float,
) -> CohortChart:
    """The chart after this evaluation: the new cohort's events and bad events since the last
    one (exact from raw counters, else the window's share, as for a pod), tested against the
    ratio `null` with each alternative of `charts`. Time that did not move adds nothing."""
    elapsed = None if chart.seen_time is None else now - chart.seen_time
    if elapsed is not None and elapsed <= 0:
        return chart
    n = b = 0.0
    pods: dict[str, PodMemory] = {}
    for s in new_samples:
        if s.total is None or s.bad is None:
            continue
        before = chart.pods.get(s.pod)
        new_n, new_b, counters = events_since(
            s,
            (s.total, s.bad),
            before.counters if before else None,
            before.seen_total if before else None,
            elapsed,
            window,
            interval,
        )
        n, b = n + new_n, b + new_b
        kept = tuple((t, j) for t, j in (before.jumps if before else ()) if t > now - window)
        pods[s.pod] = PodMemory(counters, s.total, (*kept, (now, new_b)))
    increments = tuple(sequential.llr(b, n, null, p1) / max(1.0, phi) for p1 in charts)
    cusum = sequential.update(chart.cusum, increments, h)
    run = (0.0, 0.0) if max(cusum, default=0.0) <= 0 else (chart.run[0] + n, chart.run[1] + b)
    return CohortChart(chart.new_hash, cusum, now, pods, run, chart.phi)


def robust_bad(chart: CohortChart, new_samples: Sequence[PodSample], span: int) -> dict[str, float]:
    """Each new pod's bad events in the window without its largest burst (one client retrying
    is not a version's fault; sequential.discount_burst)."""
    out = {}
    for s in new_samples:
        if s.bad is None:
            continue
        memory = chart.pods.get(s.pod)
        jumps = [j for _, j in memory.jumps] if memory else []
        out[s.pod] = sequential.discount_burst(s.bad, jumps, span)
    return out
