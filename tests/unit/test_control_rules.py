"""Control-loop safety on plain data: lease expiry by observation, the gate from published
status, latched verdicts and the rollback target, guard budgets, long cooldowns, typed holds,
overlapping policies (issue #14)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from planner_fixtures import NOW, findings, plan_for, pods, policy
from stickyguard.adapters.lease import LeaseElector, NotLeader, Observation
from stickyguard.controller.gate import ARGO, PROMOTION, ROLLOUT, answer, gate_answer, limited
from stickyguard.controller.state import Published
from stickyguard.core import cycle
from stickyguard.core.names import rfc3339
from stickyguard.core.ownership import PolicyRef, claims
from stickyguard.core.planner import (
    DRAIN,
    PAUSE_ROLLOUT,
    ROLLBACK_ROLLOUT,
    ActionRecord,
    guard_hold,
    plan,
)
from stickyguard.core.policy import LabelSelector
from stickyguard.core.policy_status import build_status, events
from stickyguard.core.problems import Held, HoldCause
from stickyguard.core.rollout import (
    FAIL,
    INCONCLUSIVE,
    PAUSE,
    ROLLBACK,
    Cohort,
    GuardMemory,
    Revision,
    Verdict,
    Workload,
    decide,
    latched,
    remember,
    rollback_target,
)

# --- lease: a candidate times expiry from its own observation -------------------------------


def test_candidate_waits_a_full_term_from_its_own_observation() -> None:
    o = Observation()
    assert not o.expired(15, 0.0), "nothing observed yet"
    o.update("rv1", 100.0)
    assert not o.expired(15, 114.9)
    o.update("rv1", 110.0)  # same version seen again: the clock keeps running
    assert o.expired(15, 115.1)
    o.update("rv2", 116.0)  # the holder renewed: start over, whatever renewTime says
    assert not o.expired(15, 130.0)
    assert o.expired(15, 131.1)


class _LeaseStore:
    """Just enough of the coordination API for one elector: an empty namespace whose read takes
    `read_seconds` on the elector's clock (a slow apiserver)."""

    def __init__(self, clock: list[float], read_seconds: float) -> None:
        self.clock, self.read_seconds = clock, read_seconds
        self.lease: Any = None

    def read_namespaced_lease(self, name: str, namespace: str) -> Any:
        self.clock[0] += self.read_seconds
        if self.lease is None:
            raise ApiException(status=404)
        return self.lease

    def create_namespaced_lease(self, namespace: str, body: dict[str, Any]) -> None:
        self.lease = body


def test_holder_stops_a_margin_before_its_term_counted_from_before_the_read() -> None:
    clock = [100.0]
    elector = LeaseElector(client.ApiClient(), "ns", duration_seconds=15, clock=lambda: clock[0])
    elector.api = _LeaseStore(clock, read_seconds=3.0)  # type: ignore[assignment]
    assert elector.try_acquire()
    # The term started at 100 (before the 3 s read), and the holder stops a third of it
    # (5 s) early: it may write until 110, though its Lease says 103 + 15 as others see it.
    clock[0] = 109.9
    elector.fence()
    clock[0] = 110.0
    assert not elector.is_leader()
    with pytest.raises(NotLeader):
        elector.fence()


# --- the gate answers from published status -------------------------------------------------


def entry(verdict: str | None, age: float = 0.0, guarded: bool = True) -> Published:
    status: dict[str, Any] = {"lastEvaluationTime": rfc3339(NOW - age)}
    if verdict is not None:
        status["rollout"] = {"verdict": verdict, "reason": "r", "newHash": "h2"}
    return Published(PolicyRef("ns", "x", 0.0, None), status, 15.0, guarded)


@pytest.mark.parametrize(
    ("verdict", "rollout", "promotion"),
    [
        ("pass", 200, 200),
        ("inconclusive", 200, 412),  # no evidence: a check does not fail, promotion waits
        ("fleet_wide", 200, 412),
        ("fail", 412, 412),
    ],
)
def test_flagger_rollout_fails_only_on_fail_and_promotion_needs_a_pass(
    verdict: str, rollout: int, promotion: int
) -> None:
    pub = {("ns", "web"): entry(verdict)}
    assert gate_answer(pub, "ns", "web", ROLLOUT, NOW)[0] == rollout
    assert gate_answer(pub, "ns", "web", PROMOTION, NOW)[0] == promotion
    status, body = gate_answer(pub, "ns", "web", ARGO, NOW)
    assert status == 200 and body["verdict"] == verdict


def test_gate_unknown_stale_and_unevaluated() -> None:
    pub = {
        ("ns", "old"): entry("pass", age=100),
        ("ns", "new"): entry(None),
        ("ns", "plain"): entry("pass", guarded=False),
    }
    assert gate_answer(pub, "ns", "nope", ROLLOUT, NOW)[0] == 404
    assert gate_answer(pub, "ns", "nope", ARGO, NOW)[0] == 404
    for name in ("old", "new", "plain"):
        status, body = gate_answer(pub, "ns", name, ROLLOUT, NOW)
        assert status == 503 and body["verdict"] == "unknown", name
        status, body = gate_answer(pub, "ns", name, ARGO, NOW)
        assert status == 200 and body["verdict"] == "unknown" and body["pass"] is False


def test_a_replica_whose_watch_has_not_listed_a_policy_answers_as_the_others() -> None:
    # Replica A's watch has the policy, replica B (just started) has nothing yet: B reads the
    # policy from the API server for the request and answers the same.
    synced = {("ns", "web"): entry("fail")}
    api = {("ns", "web"): entry("fail")}

    def lookup(namespace: str, name: str) -> Published | None:
        return api.get((namespace, name))

    for kind in (ROLLOUT, PROMOTION, ARGO):
        assert answer({}, lookup, "ns", "web", kind, NOW) == gate_answer(
            synced, "ns", "web", kind, NOW
        )
    # A policy that does not exist is still unknown; one that cannot be read fails closed.
    assert answer({}, lookup, "ns", "nope", ROLLOUT, NOW)[0] == 404

    def down(namespace: str, name: str) -> Published | None:
        raise LookupError("API error 503 Service Unavailable")

    status, body = answer({}, down, "ns", "web", ROLLOUT, NOW)
    assert status == 503 and body["verdict"] == "unknown" and "cannot read" in body["reason"]
    status, body = answer({}, down, "ns", "web", ARGO, NOW)
    assert status == 200 and body["pass"] is False
    # The cache answers when it has the policy: no read.
    assert answer(synced, down, "ns", "web", ROLLOUT, NOW)[0] == 412


def test_the_gates_lookups_are_limited() -> None:
    # The gate needs no credentials and each lookup is a request with the operator's identity:
    # malformed names are never looked up, and a miss is remembered for a few seconds.
    asked: list[tuple[str, str]] = []

    def lookup(namespace: str, name: str) -> Published | None:
        asked.append((namespace, name))
        return entry("pass") if name == "web" else None

    look = limited(lookup)
    assert look("ns", "nope") is None and look("ns", "nope") is None
    assert look("NS", "x") is None and look("ns", "a/b") is None and look("ns", "") is None
    assert look("ns", "web") is not None and look("ns", "web") is not None
    assert asked == [("ns", "nope"), ("ns", "web"), ("ns", "web")]


# --- verdict latch and rollback target ------------------------------------------------------

EMPTY = Cohort(0, 0.0, 0.0, None)


def verdict(v: str) -> Verdict:
    return Verdict(v, EMPTY, Cohort(4, 1000.0, 1.0, None), None, v, None, 0.5)


def workload(new: str, revisions: list[tuple[str, int, int]], **kw: Any) -> Workload:
    revs = tuple(Revision(h, r, a, a) for h, r, a in revisions)
    rev = next(r for r in revs if r.hash == new)
    return Workload(
        "web",
        paused=False,
        new_hash=new,
        revision=str(rev.revision),
        rolling=True,
        new_ready=1,
        revisions=revs,
        **kw,
    )


def test_a_failed_version_stays_failed_until_the_rollout_changes() -> None:
    w = workload("h2", [("h1", 1, 4), ("h2", 2, 1)])
    mem = remember(GuardMemory(), w, verdict(FAIL))
    assert mem.failed == ("h2",)
    # Drained, it has no traffic left: still fail.
    v = latched(w, verdict(INCONCLUSIVE), mem)
    assert v is not None and v.verdict == FAIL and "stays failed" in v.reason
    v = latched(w, None, mem)
    assert v is not None and v.verdict == FAIL
    # A new version starts afresh.
    w3 = workload("h3", [("h1", 1, 4), ("h2", 2, 0), ("h3", 3, 1)])
    v = latched(w3, verdict(INCONCLUSIVE), mem)
    assert v is not None and v.verdict == INCONCLUSIVE


def test_our_pause_of_a_revision_is_a_latch_even_when_status_lost_it() -> None:
    """The pause and the status are two writes: a crash or a failed status write between them
    must not let a recovered version pass (nor become a rollback target) later."""
    w = workload("h2", [("h1", 1, 4), ("h2", 2, 1)])
    paused = dataclasses.replace(w, paused=True, paused_by_us=True, paused_revision="2")
    assert remember(GuardMemory(), paused, verdict("pass")).failed == ("h2",)
    assert remember(GuardMemory(), paused, None).failed == ("h2",)
    # A hold that ended (resumed) and then a pause for a failure: our pause again.
    after_hold = dataclasses.replace(paused, hold_started=NOW - 100, hold_done=True)
    assert remember(GuardMemory(), after_hold, verdict("pass")).failed == ("h2",)
    # Not ours, another revision's, or a hold (a pause that judges nothing): no latch.
    for other in (
        dataclasses.replace(paused, paused_by_us=False),
        dataclasses.replace(paused, paused_revision="1"),
        dataclasses.replace(paused, hold_started=NOW - 10),
        dataclasses.replace(paused, paused=False),
    ):
        assert remember(GuardMemory(), other, verdict("pass")).failed == ()


def test_a_lone_cohort_blames_no_version() -> None:
    w = workload("h1", [("h1", 1, 4)])
    alone = Verdict(FAIL, Cohort(4, 1000.0, 50.0, None), EMPTY, None, "x", None, 1.0)
    assert remember(GuardMemory(), w, alone).failed == ()


def test_rollback_goes_to_the_last_known_good_never_to_a_failed_one() -> None:
    p = policy(actions={"rollout": {"onCanaryDegraded": "Rollback"}})
    # good rev 1 completes and is remembered
    w1 = dataclasses.replace(workload("h1", [("h1", 1, 4)]), rolling=False, complete=True)
    mem = remember(GuardMemory(), w1, verdict("pass"))
    assert mem.known_good == ("h1",)
    # bad rev 2 fails
    w2 = workload("h2", [("h1", 1, 3), ("h2", 2, 1)])
    mem = remember(mem, w2, verdict(FAIL))
    # bad rev 3 (rev 2 still has pods): back to 1, never to 2
    w3 = workload("h3", [("h1", 1, 2), ("h2", 2, 1), ("h3", 3, 1)])
    mem = remember(mem, w3, verdict(FAIL))
    target = rollback_target(w3, mem)
    assert target is not None and target.hash == "h1"
    action, why = decide(p, w3, latched(w3, verdict(FAIL), mem), NOW, mem)
    assert action == ROLLBACK and "revision 1" in why


def test_without_a_known_good_target_the_guard_pauses_instead() -> None:
    p = policy(actions={"rollout": {"onCanaryDegraded": "Rollback"}})
    w = workload("h3", [("h2", 2, 0), ("h3", 3, 1)])
    mem = GuardMemory(failed=("h2", "h3"))
    assert rollback_target(w, mem) is None
    assert decide(p, w, verdict(FAIL), NOW, mem)[0] == PAUSE


def test_a_person_resuming_our_pause_is_respected_for_that_revision() -> None:
    w = workload("h2", [("h1", 1, 4), ("h2", 2, 1)], paused_by_us=True, paused_revision="2")
    assert decide(policy(), w, verdict(FAIL), NOW)[0] is None
    other = dataclasses.replace(w, paused_revision="1")
    assert decide(policy(), other, verdict(FAIL), NOW)[0] == PAUSE


# --- budgets: guard actions, long cooldowns, recorded drains -----------------------------------


def test_guard_actions_spend_max_actions_per_hour_and_wait_for_the_cooldown() -> None:
    p = policy(safety={"maxActionsPerHour": 2, "cooldownSeconds": 600})
    assert guard_hold(p, ROLLBACK_ROLLOUT, "web", [], {}, NOW) is None
    two = [ActionRecord(NOW - 1000, DRAIN, "a"), ActionRecord(NOW - 900, DRAIN, "b")]
    held = guard_hold(p, PAUSE_ROLLOUT, "web", two, {}, NOW)
    assert held is not None and held.cause == HoldCause.MAX_ACTIONS_PER_HOUR
    recent = [ActionRecord(NOW - 100, ROLLBACK_ROLLOUT, "web")]
    held = guard_hold(p, ROLLBACK_ROLLOUT, "web", recent, {}, NOW)
    assert held is not None and held.cause == HoldCause.COOLDOWN


def test_a_day_long_cooldown_holds_beyond_the_hour_of_history() -> None:
    p = policy(safety={"cooldownSeconds": 86400})
    f = findings(p, [0.2] + [0.001] * 9)
    last = {DRAIN: NOW - 7200}  # two hours ago: out of recentActions, in lastActions
    pl = plan(p, pods(10), f, None, [], NOW, last_times=last)
    assert [a.kind for a in pl.actions if a.kind == DRAIN] == []
    assert pl.blocked[0].cause == HoldCause.COOLDOWN
    assert guard_hold(p, PAUSE_ROLLOUT, "w", [], {PAUSE_ROLLOUT: NOW - 7200}, NOW) is not None


def test_last_actions_round_trip_through_status() -> None:
    status: dict[str, Any] = {}
    cycle.record_actions(status, [ActionRecord(NOW - 10, DRAIN, "a")], {"pause": NOW - 9000})
    assert set(status["lastActions"]) == {"drain", "pause"}
    assert cycle.last_times_from_status(status) == {"drain": NOW - 10, "pause": NOW - 9000}


def test_drains_recorded_on_pods_count_even_when_the_status_lost_them() -> None:
    states = pods(3)
    states[0] = dataclasses.replace(states[0], drained_by="p", drained_at=NOW - 60)
    hist = cycle.with_recorded_drains([], states, NOW)
    assert [(r.action, r.pod) for r in hist] == [(DRAIN, "pod-00")]
    assert cycle.with_recorded_drains(hist, states, NOW) == hist  # no double count
    # Drained, restored and drained again within the hour, the second status lost: the
    # status's older record of the pod does not stand for the new drain.
    older = [ActionRecord(NOW - 900, DRAIN, "pod-00")]
    again = cycle.with_recorded_drains(older, states, NOW)
    assert [(r.time, r.pod) for r in again] == [(NOW - 900, "pod-00"), (NOW - 60, "pod-00")]
    # Times are kept to the second in status: a record a fraction older is the same drain.
    same = [ActionRecord(NOW - 60.4, DRAIN, "pod-00")]
    assert cycle.with_recorded_drains(same, states, NOW) == tuple(same)


# --- typed holds decide Events, not their text ------------------------------------------------


def test_event_reason_comes_from_the_cause_not_the_pod_name() -> None:
    p = policy()
    pl = plan_for(p, pods(3), None)
    blocked = (Held(HoldCause.MAX_DRAINED_PERCENT, "metrics-gw-1: not drained: budget"),)
    pl = dataclasses.replace(pl, blocked=blocked)
    st = build_status(p, pods(3), None, "x", pl, {}, NOW)
    evs = [e.reason for e in events({}, st, pl) if "metrics-gw" in e.message]
    assert evs == ["BudgetBlocked"]


# --- overlapping policies ---------------------------------------------------------------------


def sel(**labels: str) -> LabelSelector:
    return LabelSelector(match_labels=labels)


def test_the_oldest_policy_owns_a_pod_both_select() -> None:
    a = PolicyRef("ns", "a", 100.0, sel(app="web"))
    b = PolicyRef("ns", "b", 200.0, sel(app="web"))
    pods_ = {"web-1": {"app": "web"}, "other": {"app": "x"}}
    assert claims(b, [a, b], pods_) == {"web-1": "a"}
    assert claims(a, [a, b], pods_) == {}
    # same creation time: by name
    b0 = dataclasses.replace(b, created=100.0)
    assert claims(b0, [a, b0], pods_) == {"web-1": "a"}
    # a policy being deleted or not parsing claims nothing
    assert claims(b, [dataclasses.replace(a, deleting=True)], pods_) == {}
    assert claims(b, [dataclasses.replace(a, selector=None)], pods_) == {}
    assert claims(b, [dataclasses.replace(a, namespace="other")], pods_) == {}


def test_claimed_pods_are_not_drained_and_the_status_says_conflict() -> None:
    p = policy(safety={"maxDrainedPercent": 50})
    f = findings(p, [0.2] + [0.001] * 5)
    claimed = {"pod-00": "older"}
    pl = plan(p, pods(6), f, None, [], NOW, claimed=claimed)
    assert not [a for a in pl.actions if a.pod == "pod-00"]
    st = build_status(p, pods(6), f, None, pl, {}, NOW, claimed=claimed)
    c = next(c for c in st["conditions"] if c["type"] == "Conflict")
    assert c["status"] == "True" and "older" in c["message"]


def test_drains_by_another_policy_count_against_max_drained_percent() -> None:
    p = policy(safety={"maxDrainedPercent": 25})
    f = findings(p, [0.001, 0.2] + [0.001] * 6)
    states = pods(8)
    states[0] = dataclasses.replace(states[0], drained_by="other", serving=False, ready=False)
    pl = plan(p, states, f, None, [], NOW)
    # floor(8 * 25%) = 2; one is drained by the other policy, so one more at most
    assert [a.pod for a in pl.actions if a.kind == DRAIN] == ["pod-01"]
    states[2] = dataclasses.replace(states[2], drained_by="other", serving=False, ready=False)
    pl = plan(p, states, f, None, [], NOW)
    assert [a.pod for a in pl.actions if a.kind == DRAIN] == []
