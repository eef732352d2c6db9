"""The rollout judge's memory (pure): a CUSUM of the new version's cohort against the old one.

One window's two-sample test at `confidence` is a test per evaluation, and a `fail` latches for
the version: evaluated every interval for the length of a rollout, a healthy canary was failed
in 9 of 100 ten-minute rollouts at 2 req/s with independent errors, and in 46-61 of 100 with
errors in clusters (a client retrying): each a paused or rolled-back release
(bench/results/rollout-judge.md). So a version fails only when its cohort's evidence,
accumulated at every evaluation like a pod's (core.sequential: the same charts, the same
threshold from `falseDrainsPerPodYear`, the same clip of h/4 per interval, evidence divided by
the fleet's overdispersion), also reaches the threshold: a healthy version's cohort is failed
about as often as one healthy pod is drained. The chart is kept by the leader only and starts
again with each new version and each term as leader (a real failure is then found a few
intervals later, never sooner).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from stickyguard.core import sequential
from stickyguard.core.analysis import PodSample, Track, events_since


@dataclass(frozen=True)
class CohortChart:
    """The new cohort's CUSUM (one statistic per chart of core.sequential) for one version, and
    what its next evaluation differences against."""

    new_hash: str = ""
    cusum: tuple[float, ...] = ()
    seen_time: float | None = None
    # pod -> (raw counters then or None, the window's event count then)
    pods: Mapping[str, tuple[tuple[float, float] | None, float]] = field(default_factory=dict)

    @property
    def score(self) -> float:
        return max(self.cusum, default=0.0)


def fleet_dispersion(tracks: Iterable[Track]) -> float:
    """The overdispersion the detector last estimated for the fleet (the median of its pods'
    running means; 1 when it has none yet)."""
    known = [max(1.0, t.dispersion) for t in tracks if t.dispersion_n > 0]
    return statistics.median(known) if known else 1.0


def advance(
    chart: CohortChart,
    new_hash: str,
    new_samples: Sequence[PodSample],
    baseline: float,
    absolute: float,
    relative: float,
    phi: float,
    h: float,
    now: float,
    window: float,
    interval: float,
) -> CohortChart:
    """The chart after this evaluation: the new cohort's events and bad events since the last
    one (exact from raw counters, else the window's share, as for a pod), tested against the
    old cohort's ratio `baseline`. A new version starts a new chart; time that did not move
    adds nothing."""
    if chart.new_hash != new_hash:
        chart = CohortChart(new_hash)
    elapsed = None if chart.seen_time is None else now - chart.seen_time
    if elapsed is not None and elapsed <= 0:
        return chart
    n = b = 0.0
    pods: dict[str, tuple[tuple[float, float] | None, float]] = {}
    for s in new_samples:
        if s.total is None or s.bad is None:
            continue
        previous, seen_total = chart.pods.get(s.pod, (None, None))
        new_n, new_b, counters = events_since(
            s, (s.total, s.bad), previous, seen_total, elapsed, window, interval
        )
        n, b = n + new_n, b + new_b
        pods[s.pod] = (counters, s.total)
    increments = tuple(
        sequential.llr(b, n, baseline, p1) / max(1.0, phi)
        for p1 in sequential.alternatives(baseline, absolute, relative)
    )
    return CohortChart(new_hash, sequential.update(chart.cusum, increments, h), now, pods)
