"""Users as the unit of evidence (pure): with session gauges, a pod is drained only when it hurts
several more of its users than the rest of the fleet's share predicts. Requests cannot tell one
failing client (a broken account, a client retrying for minutes) from a failing pod; users can.
`analysis.py` wires this into an evaluation; the reasoning and the measurements are in
docs/analysis.md ("Users as the unit of evidence").
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

# The gauges of one pod at one evaluation could not be read (no series, a failed query) or
# cannot be true (negative, not finite): no evidence either way, so no drain on this evaluation.
MISSING, INVALID = "missing", "invalid"
# The recent path looks back this many windows' worth of evaluations and needs this many times
# minDegradedSessions on average (see `clear`).
RECENT_WINDOWS, RECENT_FACTOR = 2.0, 2.0
# A fleet whose every session is hurt has no share to compare with; past this the pod's excess
# is scaled as if 90% were.
SHARE_CAP = 0.9

Reading = tuple[float, float] | str


def reading(active: float | None, hurt: float | None) -> Reading:
    """(active, hurt) sessions as usable numbers, or MISSING / INVALID. More hurt than active
    is clamped: users who left after their errors are hurt but no longer active, and the two
    gauges are read at slightly different moments."""
    if active is None or hurt is None:
        return MISSING
    if not (math.isfinite(active) and math.isfinite(hurt)) or active < 0 or hurt < 0:
        return INVALID
    return active, min(hurt, active)


def excess(mine: tuple[float, float], rest: tuple[float, float]) -> float:
    """Hurt sessions on the pod beyond what the rest of the fleet's share of hurt sessions
    predicts (`rest`: their active and hurt sessions), in units of sessions that could still be
    hurt: (hurt − active × share) / (1 − share). Scaling by what is left to hurt keeps a pod of
    two sessions, both failing, from falling short of 2 when the fleet's share is a few
    percent."""
    active, hurt = mine
    share = min(SHARE_CAP, rest[1] / rest[0]) if rest[0] > 0 else 0.0
    return (hurt - active * share) / (1.0 - share)


def recent_span(window_seconds: float, interval_seconds: float) -> int:
    """Evaluations the recent path averages: two windows (16 at the defaults, 2m and 15 s)."""
    if interval_seconds <= 0:
        return 4
    return max(4, round(RECENT_WINDOWS * window_seconds / interval_seconds))


def clear(run: tuple[float, float], recent: Sequence[float], span: int, minimum: int) -> bool:
    """The users' check of one evaluation, from the excess of hurt sessions of the evaluations
    since the pod's CUSUM last stood at zero (`run`: their count and sum) and of the last `span`
    evaluations (`recent`).

    The run's mean must be at least `minimum`: one failing user is one excess session on average
    however long it lasts, while the background's hurt sessions average out, and a faulty pod
    hurts many of its users at once. A pod that had a failing user for hours before a real
    fault carries a long run whose mean moves slowly, so a recent path passes too: the last two
    windows' mean at RECENT_FACTOR × `minimum`, once half of them are there (one user plus the
    background reaching twice the bar for two windows running is rare)."""
    n, total = run
    if n > 0 and total / n >= minimum - 1e-9:
        return True
    return len(recent) >= span / 2 and statistics.fmean(recent) >= RECENT_FACTOR * minimum - 1e-9
