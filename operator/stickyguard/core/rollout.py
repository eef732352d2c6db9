"""The rollout guard (pure): compares the new ReplicaSet's pods with the rest and decides.

Cohorts: `new` is the pods of the workload's newest ReplicaSet (by pod-template-hash, or
rollouts-pod-template-hash for an Argo Rollout), `old` every other selected pod (older
ReplicaSets, a Rollout's stable ReplicaSet, or a Flagger primary). Without an old cohort
(no rollout) or with too little data on it, the verdict is `inconclusive`, never `fail`. The
new cohort fails when its pooled bad ratio passes the policy's absolute and relative
thresholds against the old one and an exact binomial test says so at `confidence`; when the
old cohort is degraded as much, the verdict is `fleet_wide` and the new version is not blamed.
Session impact and the stickiness drift (the new cohort's share of active sessions against its
share of pods) are reported with the verdict.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from stickyguard.core import sequential
from stickyguard.core.analysis import PodMeta, PodSample, Track, run_clears
from stickyguard.core.cohort_chart import CohortChart, advance, detector_view, robust_bad, start
from stickyguard.core.containment import CONTAIN as CONTAIN_MODE
from stickyguard.core.containment import PAUSE as PAUSE_MODE
from stickyguard.core.containment import ROLLBACK as ROLLBACK_MODE
from stickyguard.core.containment import GuardMode, guard_mode
from stickyguard.core.gitops import UNMANAGED, Management
from stickyguard.core.names import POD_TEMPLATE_HASH
from stickyguard.core.policy import Policy
from stickyguard.core.stats import binomial_sf

PASS, FAIL, INCONCLUSIVE, FLEET_WIDE = "pass", "fail", "inconclusive", "fleet_wide"
PAUSE, ROLLBACK, RESUME, HOLD, CONTAIN = "pause", "rollback", "resume", "hold", "contain"
GUARD_REASONS = {
    PAUSE: "RolloutPaused",
    ROLLBACK: "RolledBack",
    RESUME: "RolloutResumed",
    HOLD: "RolloutHeld",
    CONTAIN: "VersionContained",
}


@dataclass(frozen=True)
class Revision:
    """One ReplicaSet of the guarded workload."""

    hash: str  # pod-template-hash
    revision: int
    replicas: int  # its current spec.replicas
    available: int
    images: tuple[str, ...] = ()  # container images of its pod template


@dataclass(frozen=True)
class Workload:
    """What the cluster says about the guarded Deployment or Rollout."""

    name: str
    paused: bool
    new_hash: str  # the hash label's value on the new version's ReplicaSet and pods
    revision: str
    rolling: bool  # old ReplicaSets still have pods
    new_ready: int
    hold_started: float | None = None  # stickyguard.dev/hold-started for this revision
    hold_done: bool = False  # the hold of this revision has ended
    paused_by_us: bool = False
    revisions: tuple[Revision, ...] = ()  # every ReplicaSet, oldest first
    # The newest ReplicaSet is fully available and no older one has pods left.
    complete: bool = False
    paused_revision: str = ""  # the revision our pause was for (stickyguard.dev/paused-revision)
    kind: str = "Deployment"  # or "Rollout" (Argo Rollouts: judged only, never acted on)
    hash_label: str = POD_TEMPLATE_HASH  # the pod label holding new_hash
    management: Management = UNMANAGED  # the GitOps tool that manages it, if any


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
    # The new cohort's chart after this evaluation (None: judged on the window alone).
    chart: CohortChart | None = None
    threshold: float | None = None  # what the chart must reach for a `fail`


def is_new(m: PodMeta | None, new_hash: str, hash_label: str = POD_TEMPLATE_HASH) -> bool:
    """Whether the pod belongs to the new version's cohort."""
    return m is not None and m.labels.get(hash_label) == new_hash


def counted(s: PodSample) -> bool:
    """Whether the sample's window counts are usable: present, finite and bad <= total."""
    return (
        s.total is not None
        and s.bad is not None
        and math.isfinite(s.total)
        and math.isfinite(s.bad)
        and 0 <= s.bad <= s.total
    )


def cohorts(
    samples: Sequence[PodSample],
    meta: Mapping[str, PodMeta],
    new_hash: str,
    hash_label: str = POD_TEMPLATE_HASH,
) -> tuple[Cohort, Cohort]:
    """(new, old): pods whose `hash_label` is `new_hash`, and every other sampled pod."""
    acc = {True: [0, 0.0, 0.0, 0.0, True], False: [0, 0.0, 0.0, 0.0, True]}
    for s in samples:
        a = acc[is_new(meta.get(s.pod), new_hash, hash_label)]
        a[0] += 1
        if counted(s) and s.total is not None and s.bad is not None:
            a[1] += s.total
            a[2] += s.bad
        if s.active_sessions is None:
            a[4] = False
        else:
            a[3] += s.active_sessions

    def make(a: list[float | bool]) -> Cohort:
        return Cohort(int(a[0]), float(a[1]), float(a[2]), float(a[3]) if a[4] and a[0] else None)

    return make(acc[True]), make(acc[False])


def compare_cohorts(new: Cohort, old: Cohort, phi: float = 1.0) -> float:
    """P-value that the new version is no worse than the old: given all the bad events of both,
    how unlikely it is that at least the new version's share of them fell on it when each lands
    on a version in proportion to its events (the conditional test of two Poisson rates).

    Both ratios are estimates: testing the new version against the old one's ratio as if it were
    known fails a healthy version whenever a small old cohort happens to have had no bad events
    during a fleet-wide outage (50 old events at 5%: 0 bad one time in 13, and the guard's
    `fail` is for good). Conditioning on the total makes the old cohort's size count. Bad
    events that come in clusters of overdispersion `phi` count as bad / phi independent ones."""
    bad = new.bad + old.bad
    events = new.total + old.total
    if bad <= 0 or events <= 0:
        return 1.0
    scale = max(1.0, phi)
    return binomial_sf(new.bad / scale, bad / scale, new.total / events)


def judge(
    policy: Policy,
    samples: Sequence[PodSample],
    meta: Mapping[str, PodMeta],
    new_hash: str,
    hash_label: str = POD_TEMPLATE_HASH,
    *,
    chart: CohortChart | None = None,
    now: float = 0.0,
    window_seconds: float = 120.0,
    tracks: Mapping[str, Track] | None = None,
) -> Verdict:
    """The verdict on the new version. With a `chart` (the guard's, carried from the previous
    evaluation) a `fail` also needs the version's accumulated evidence (core.cohort_chart);
    without one (a one-off look) the window's test decides alone. `tracks`: the pod detector's
    memory (the fleet's overdispersion, the old pods' baseline floor, new pods it judged
    degraded)."""
    d = policy.detection
    new, old = cohorts(samples, meta, new_hash, hash_label)
    # The new pods whose counts the cohort holds: the chart and the burst discount read these.
    new_samples = [
        s for s in samples if is_new(meta.get(s.pod), new_hash, hash_label) and counted(s)
    ]
    new_pods = {s.pod for s in new_samples}
    old_pods = [s.pod for s in samples if not is_new(meta.get(s.pod), new_hash, hash_label)]
    view = detector_view(tracks or {}, new_pods, old_pods, now)
    h = sequential.threshold(d.false_drains_per_pod_year, d.interval_seconds)
    baseline = (old.bad + 0.5) / (old.total + 1.0)
    after = None if chart is None else start(chart, new_hash, view)
    phi = view.phi if after is None or after.phi is None else min(view.phi, after.phi)
    if after is not None and new.pods and old.pods and old.total >= d.min_requests:
        # As a pod's CUSUM: the old cohort's ratio, held up by its hour-long floor as far as
        # its window allows (a window of the old pods without their usual clusters is not
        # their level).
        null = max(baseline, min(view.floor, sequential.upper_ratio(old.bad, old.total, phi)))
        after = advance(
            after,
            new_samples,
            null,
            sequential.alternatives(null, d.absolute_threshold, d.relative_threshold),
            phi,
            h,
            now,
            window_seconds,
            d.interval_seconds,
        )

    pods = new.pods + old.pods
    pod_share = new.pods / pods if pods else 0.0
    sessions = (new.sessions or 0) + (old.sessions or 0)
    session_share = (
        new.sessions / sessions
        if new.sessions is not None and old.sessions is not None and sessions > 0
        else None
    )

    def verdict(v: str, reason: str, p: float | None = None) -> Verdict:
        return Verdict(
            v, new, old, p, reason, session_share, pod_share, after, None if after is None else h
        )

    if new.pods == 0 or new.total < d.min_requests:
        return verdict(
            INCONCLUSIVE,
            f"the new version has {new.total:.0f} events in the window; {d.min_requests} needed",
        )
    new_ratio = new.bad / new.total
    if old.pods == 0:
        return verdict(INCONCLUSIVE, "no rollout in progress: no previous version to compare")
    if old.total < d.min_requests:
        # Without a comparison a bad new version cannot be told from a fleet-wide outage (a
        # dependency down would roll back a healthy version): never fail on this.
        return verdict(
            INCONCLUSIVE,
            f"the previous version has {old.total:.0f} events in the window; "
            f"{d.min_requests} needed to compare",
        )

    def past(bad: float, total: float) -> bool:
        return (
            bad >= d.absolute_threshold * total and bad >= d.relative_threshold * baseline * total
        )

    # With a chart, the window is judged without each new pod's largest burst, as a pod's is.
    span = sequential.burst_span(d.interval_seconds, window_seconds)
    per_pod = {} if after is None else robust_bad(after, new_samples, span)
    bad = new.bad if after is None else sum(per_pod.values())
    p = compare_cohorts(replace(new, bad=bad), old, phi)
    past_thresholds = past(bad, new.total)
    worse = past_thresholds and p < 1.0 - d.confidence
    if after is not None:
        # The version's own evidence, or the detector's on its pods when their badness is the
        # cohort's: every other new pod with data is past the thresholds too (one pod on a bad
        # node is not its version). A canary the detector drained stops feeding the chart.
        proven = worse and after.score >= h - 1e-9 and run_clears(after.run, d, baseline, phi)
        drained = (
            past_thresholds
            and bool(view.degraded)
            and all(
                s.total < d.min_requests or past(per_pod[s.pod], s.total)
                for s in new_samples
                if s.pod not in view.degraded and s.pod in per_pod and s.total is not None
            )
        )
        if worse and not (proven or drained):
            short = (
                f"its evidence since it began is {after.score:.1f} of the {h:.1f} that fail it"
                if after.score < h - 1e-9
                else "its ratio since its evidence began does not yet clear the thresholds "
                "with a margin"
            )
            return verdict(
                INCONCLUSIVE,
                f"new version {new_ratio:.2%} bad vs {old.bad / old.total:.2%} in this window "
                f"(p={p:.1g}), but {short}",
                p,
            )
        how = "" if proven or not drained else "; the detector judged its pods degraded"
        worse = proven or drained
    else:
        how = ""
    if worse:
        return verdict(
            FAIL,
            f"new version {new_ratio:.2%} bad vs {old.bad / old.total:.2%} for "
            f"the previous one (p={p:.1g}){how}",
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


@dataclass(frozen=True)
class GuardMemory:
    """What the guard remembers across evaluations and replicas, in status.rollout: versions
    (pod-template-hashes) once judged `fail`, and versions seen fully available and never
    judged `fail` (rollback targets), newest first."""

    failed: tuple[str, ...] = ()
    known_good: tuple[str, ...] = ()

    def to_status(self) -> dict[str, list[str]]:
        return {"failedHashes": list(self.failed), "knownGoodHashes": list(self.known_good)}


MEMORY_LIMIT = 20  # hashes kept per list; ReplicaSet history is 10 by default


def guard_memory(section: Mapping[str, Any] | None) -> GuardMemory:
    section = section or {}
    return GuardMemory(
        tuple(str(h) for h in section.get("failedHashes") or []),
        tuple(str(h) for h in section.get("knownGoodHashes") or []),
    )


def remember(
    memory: GuardMemory,
    w: Workload,
    v: Verdict | None,
    contained: Collection[str] = (),
) -> GuardMemory:
    """Latch a failing version; record a completed, never-failed one as known good. Only a
    verdict that compared the new version with another one latches: a lone cohort judged
    against the absolute threshold (a degraded fleet, no rollout) blames no version. Our own
    pause of this revision (outside a hold) latches too, whatever status says, and so does our
    containment of it: `contained` are the versions the policy's contained pods record."""
    failed, good = memory.failed, memory.known_good
    compared = v is not None and v.old.pods > 0
    # Our pause annotation on this revision (not a hold's) is the latch written with the action
    # itself: it survives a crash or a lost status write between the pause and the status.
    paused_as_failed = (
        w.paused
        and w.paused_by_us
        and w.paused_revision == w.revision
        and (w.hold_started is None or w.hold_done)
    )
    judged_failed = compared and v is not None and v.verdict == FAIL
    # The pods' contained annotation is written with the containment itself: after a lost
    # status write, its drained pods carry no traffic and a fresh verdict would be
    # inconclusive, which would put the failed version back in front of users.
    contained_as_failed = w.new_hash in contained
    if (
        (judged_failed or paused_as_failed or contained_as_failed)
        and w.new_hash
        and w.new_hash not in failed
    ):
        failed = (w.new_hash, *failed)[:MEMORY_LIMIT]
    good = tuple(h for h in good if h not in failed)
    if w.complete and w.new_hash and w.new_hash not in failed and w.new_hash not in good:
        good = (w.new_hash, *good)[:MEMORY_LIMIT]
    return GuardMemory(failed, good)


_NO_COHORT = Cohort(0, 0.0, 0.0, None)


def latched(w: Workload, v: Verdict | None, memory: GuardMemory) -> Verdict | None:
    """The verdict to act and answer on: once a version failed it stays failed until the
    rollout changes, whatever traffic it has left (drained pods leave no evidence)."""
    if w.new_hash not in memory.failed or (v is not None and v.verdict == FAIL):
        return v
    now_says = f" (now: {v.verdict}, {v.reason})" if v is not None else ""
    reason = (
        f"version {w.new_hash} was judged failing; it stays failed until the rollout "
        f"changes{now_says}"
    )
    if v is None:
        return Verdict(FAIL, _NO_COHORT, _NO_COHORT, None, reason, None, 0.0)
    return replace(v, verdict=FAIL, reason=reason)


def rollback_target(w: Workload, memory: GuardMemory) -> Revision | None:
    """The last known-good ReplicaSet: the newest older one that was seen fully available and
    never judged `fail`. Without such a record (the policy is newer than the rollout), the
    newest older one still serving that never failed. Never a failed one."""
    older = [r for r in w.revisions if r.hash != w.new_hash and r.hash not in memory.failed]
    newest_first = sorted(older, key=lambda r: -r.revision)
    for r in newest_first:
        if r.hash in memory.known_good:
            return r
    return next((r for r in newest_first if r.available > 0), None)


def revert_target(w: Workload, memory: GuardMemory) -> Revision | None:
    """The version to tell people to revert to: the rollback target, else the newest older
    ReplicaSet that never failed (seen available or not: a Git revert goes back to it)."""
    target = rollback_target(w, memory)
    if target is not None:
        return target
    older = [r for r in w.revisions if r.hash != w.new_hash and r.hash not in memory.failed]
    return max(older, key=lambda r: r.revision, default=None)


def decide(
    policy: Policy,
    w: Workload,
    v: Verdict | None,
    now: float,
    memory: GuardMemory | None = None,
    mode: GuardMode | None = None,
) -> tuple[str | None, str]:
    """The guard's action for this evaluation (None: leave the Deployment alone) and why.
    `v` is the latched verdict; `mode` what this Deployment allows (core.containment.guard_mode,
    from the policy and the workload's GitOps management when not given). A rollback without a
    known-good target pauses instead. Contain goes on while the failed version is the current
    one, rolling or not: it changes no Deployment field, only keeps that version's pods out."""
    memory = memory or GuardMemory()
    if w.kind == "Rollout":
        # Argo Rollouts owns the Rollout: it pauses or aborts on the gate's verdict.
        return None, v.reason if v else "no metrics"
    mode = mode or guard_mode(policy, w.name, w.management)
    hold = policy.actions.rollout.hold_seconds if mode.hold else 0
    on_fail = mode.on_fail
    if v is not None and v.verdict == FAIL and on_fail == CONTAIN_MODE:
        return CONTAIN, v.reason
    if v is not None and v.verdict == FAIL and (w.rolling or w.paused):
        # A person resumed the rollout we paused: respect it for this revision.
        overridden = w.paused_by_us and not w.paused and w.paused_revision == w.revision
        if on_fail == ROLLBACK_MODE and w.rolling:
            target = rollback_target(w, memory)
            if target is not None:
                return ROLLBACK, f"{v.reason}; back to revision {target.revision}"
            if not w.paused and not overridden:
                return PAUSE, f"{v.reason}; no known-good ReplicaSet to roll back to"
            return None, f"{v.reason}; no known-good ReplicaSet to roll back to"
        if on_fail in (PAUSE_MODE, ROLLBACK_MODE) and not w.paused and not overridden:
            return PAUSE, v.reason
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
        if v.chart is not None and v.threshold is not None:
            out["evidence"] = round(v.chart.score, 2)
            out["evidenceThreshold"] = round(v.threshold, 2)
        out["podShare"] = round(v.pod_share, 4)
        if v.session_share is not None:
            out["sessionShare"] = round(v.session_share, 4)
    return out
