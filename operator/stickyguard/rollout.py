"""The rollout guard (pure): compares the new ReplicaSet's pods with the rest and decides.

Cohorts: `new` is the pods of the workload's newest ReplicaSet (by pod-template-hash), `old`
every other selected pod (older ReplicaSets, or a Flagger primary). The new cohort fails when
its pooled bad ratio passes the policy's absolute and relative thresholds against the old one
and an exact binomial test says so at `confidence`; when the old cohort is degraded as much,
the verdict is `fleet_wide` and the new version is not blamed. Session impact and the
stickiness drift (the new cohort's share of active sessions against its share of pods) are
reported with the verdict.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stickyguard.analysis import PodMeta, PodSample
from stickyguard.policy import Policy
from stickyguard.stats import binomial_sf

PASS, FAIL, INCONCLUSIVE, FLEET_WIDE = "pass", "fail", "inconclusive", "fleet_wide"
PAUSE, ROLLBACK, RESUME, HOLD = "pause", "rollback", "resume", "hold"
GUARD_REASONS = {
    PAUSE: "RolloutPaused",
    ROLLBACK: "RolledBack",
    RESUME: "RolloutResumed",
    HOLD: "RolloutHeld",
}


@dataclass(frozen=True)
class Workload:
    """What the cluster says about the guarded Deployment."""

    name: str
    paused: bool
    new_hash: str  # pod-template-hash of the newest ReplicaSet
    revision: str
    rolling: bool  # old ReplicaSets still have pods
    new_ready: int
    hold_started: float | None = None  # stickyguard.dev/hold-started for this revision
    hold_done: bool = False  # the hold of this revision has ended
    paused_by_us: bool = False


@dataclass(frozen=True)
class Cohort:
    pods: int
    total: float
    bad: float
    sessions: float | None

    @property
    def ratio(self) -> float | None:
        return self.bad / self.total if self.total > 0 else None


@dataclass(frozen=True)
class Verdict:
    verdict: str
    new: Cohort
    old: Cohort
    p_value: float | None
    reason: str
    session_share: float | None  # the new cohort's share of active sessions
    pod_share: float


def cohorts(
    samples: Sequence[PodSample], meta: Mapping[str, PodMeta], new_hash: str
) -> tuple[Cohort, Cohort]:
    acc = {True: [0, 0.0, 0.0, 0.0, True], False: [0, 0.0, 0.0, 0.0, True]}
    for s in samples:
        m = meta.get(s.pod)
        is_new = m is not None and m.labels.get("pod-template-hash") == new_hash
        a = acc[is_new]
        a[0] += 1
        if (
            s.total is not None
            and s.bad is not None
            and math.isfinite(s.total)
            and math.isfinite(s.bad)
            and 0 <= s.bad <= s.total
        ):
            a[1] += s.total
            a[2] += s.bad
        if s.active_sessions is None:
            a[4] = False
        else:
            a[3] += s.active_sessions

    def make(a: list[float | bool]) -> Cohort:
        return Cohort(int(a[0]), float(a[1]), float(a[2]), float(a[3]) if a[4] and a[0] else None)

    return make(acc[True]), make(acc[False])


def judge(
    policy: Policy, samples: Sequence[PodSample], meta: Mapping[str, PodMeta], new_hash: str
) -> Verdict:
    d = policy.detection
    new, old = cohorts(samples, meta, new_hash)
    pods = new.pods + old.pods
    pod_share = new.pods / pods if pods else 0.0
    sessions = (new.sessions or 0) + (old.sessions or 0)
    session_share = (
        new.sessions / sessions
        if new.sessions is not None and old.sessions is not None and sessions > 0
        else None
    )

    def verdict(v: str, reason: str, p: float | None = None) -> Verdict:
        return Verdict(v, new, old, p, reason, session_share, pod_share)

    if new.pods == 0 or new.total < d.min_requests:
        return verdict(
            INCONCLUSIVE,
            f"the new version has {new.total:.0f} events in the window; {d.min_requests} needed",
        )
    new_ratio = new.bad / new.total
    if old.total < d.min_requests:
        if new_ratio >= d.absolute_threshold:
            return verdict(
                FAIL, f"the new version answers {new_ratio:.2%} bad with nothing to compare it with"
            )
        return verdict(INCONCLUSIVE, "too little traffic on the previous version to compare")
    baseline = (old.bad + 0.5) / (old.total + 1.0)
    p = binomial_sf(new.bad, new.total, baseline)
    worse = (
        new_ratio >= d.absolute_threshold
        and new_ratio >= d.relative_threshold * baseline
        and p < 1.0 - d.confidence
    )
    if worse:
        return verdict(
            FAIL,
            f"new version {new_ratio:.2%} bad vs {old.bad / old.total:.2%} for "
            f"the previous one (p={p:.1g})",
            p,
        )
    if old.bad / old.total >= d.absolute_threshold and new_ratio >= d.absolute_threshold:
        return verdict(
            FLEET_WIDE,
            f"old and new versions are degraded alike "
            f"({old.bad / old.total:.2%} vs {new_ratio:.2%}): not the "
            "new version's fault",
            p,
        )
    return verdict(PASS, f"new version {new_ratio:.2%} bad vs {old.bad / old.total:.2%}", p)


def decide(policy: Policy, w: Workload, v: Verdict | None, now: float) -> tuple[str | None, str]:
    """The guard's action for this evaluation (None: leave the Deployment alone) and why."""
    hold = policy.actions.rollout.hold_seconds
    on_fail = policy.actions.rollout.on_canary_degraded
    if v is not None and v.verdict == FAIL and (w.rolling or w.paused):
        if on_fail == "Pause" and not w.paused:
            return PAUSE, v.reason
        if on_fail == "Rollback" and w.rolling:
            return ROLLBACK, v.reason
        return None, v.reason
    if hold and w.rolling and not w.hold_done:
        if w.hold_started is None:
            if w.new_ready > 0 and not w.paused:
                return HOLD, f"holding the rollout {hold}s for session-aware analysis"
            return None, "waiting for the first new pods"
        if now - w.hold_started >= hold and w.paused and w.paused_by_us:
            if v is not None and v.verdict in (PASS, FLEET_WIDE):
                return RESUME, f"held {hold}s: {v.reason}"
            return None, f"hold over but the verdict is {v.verdict if v else 'unknown'}"
    return None, v.reason if v else "no metrics"


def _cohort(c: Cohort) -> dict[str, Any]:
    return {
        "pods": c.pods,
        "requests": round(c.total, 1),
        "bad": round(c.bad, 1),
        "badRatio": None if c.ratio is None else round(c.ratio, 6),
    }


def rollout_status(w: Workload, v: Verdict | None, action: str | None, why: str) -> dict[str, Any]:
    """status.rollout: cohorts, verdict and evidence."""
    out: dict[str, Any] = {
        "workload": w.name,
        "revision": w.revision,
        "newHash": w.new_hash,
        "rolling": w.rolling,
        "paused": w.paused,
        "verdict": v.verdict if v else "unknown",
        "reason": why,
    }
    if action:
        out["action"] = action
    if v is not None:
        out["newCohort"] = _cohort(v.new)
        out["oldCohort"] = _cohort(v.old)
        if v.p_value is not None:
            out["pValue"] = float(f"{v.p_value:.3g}")
        out["podShare"] = round(v.pod_share, 4)
        if v.session_share is not None:
            out["sessionShare"] = round(v.session_share, 4)
    return out
