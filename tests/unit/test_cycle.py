"""The one cycle step on plain snapshots: what it decides, what it remembers, what it reports
once the writes are done, and that it never acts on unusable metrics."""

from __future__ import annotations

from planner_fixtures import NOW, policy
from stickyguard.core import sequential
from stickyguard.core.analysis import MetricsSnapshot, PodMeta, PodSample, Track
from stickyguard.core.cycle import (
    ClusterSnapshot,
    Decision,
    Memory,
    decide,
    history_from_status,
    remember,
    settle,
)
from stickyguard.core.names import rfc3339
from stickyguard.core.planner import (
    DRAIN,
    EVICT,
    ISOLATE,
    MARK_SERVING,
    RESTORE,
    Action,
    ActionRecord,
    Plan,
    PodState,
)
from stickyguard.core.problems import Held, HoldCause, MetricProblem, MetricProblemKind


def cluster(n: int = 6, **state: object) -> ClusterSnapshot:
    names = [f"pod-{i:02d}" for i in range(n)]
    return ClusterSnapshot(
        tuple(PodState(x, node=f"n{i}", has_gate=True, **state) for i, x in enumerate(names)),
        {x: PodMeta(x, node=f"n{i}") for i, x in enumerate(names)},
    )


def metrics(
    ratios: list[float], problems: tuple[MetricProblem, ...] = (), at: float = NOW
) -> MetricsSnapshot:
    samples = tuple(PodSample(f"pod-{i:02d}", 2000, 2000 * r) for i, r in enumerate(ratios))
    return MetricsSnapshot(at, 120, samples, problems)


BAD = [0.3] + [0.001] * 5


def decide_bad(history: tuple[ActionRecord, ...] = ()) -> Decision:
    """Cycles 15 s apart on the same bad metrics, ending at NOW: a drain rests on evidence from
    at least sequential.MIN_EVIDENCE_INTERVALS intervals, so the cycles before the last plan
    none, however bad the pod looks."""
    k = sequential.MIN_EVIDENCE_INTERVALS
    memory, d = Memory(), None
    for i in range(k):
        at = NOW - 15 * (k - 1 - i)
        d = decide(policy(), cluster(), metrics(BAD, at=at), memory, history, at)
        drains = [a.pod for a in d.plan.actions if a.kind == DRAIN]
        assert i == k - 1 or drains == [], f"cycle {i} drained {drains}"
        memory = d.memory
    assert d is not None
    return d


def test_decides_a_drain_and_remembers_each_pod() -> None:
    d = decide_bad()
    assert d.problem is None
    assert [(a.kind, a.pod) for a in d.plan.actions if a.kind != MARK_SERVING] == [
        (DRAIN, "pod-00")
    ]
    assert set(d.memory.tracks) == {f"pod-{i:02d}" for i in range(6)}


def test_memory_of_pods_that_left_is_dropped() -> None:
    first = decide(policy(), cluster(), metrics(BAD), Memory(), (), NOW)
    smaller = cluster(4)
    second = decide(policy(), smaller, metrics([0.001] * 4), first.memory, (), NOW + 15)
    assert set(second.memory.tracks) == set(smaller.meta)


def test_unusable_metrics_keep_memory_and_act_on_nothing() -> None:
    first = decide(policy(), cluster(), metrics(BAD), Memory(), (), NOW)
    broken = metrics(
        BAD,
        problems=(
            MetricProblem("total", MetricProblemKind.UNREACHABLE, "Prometheus at x is unreachable"),
        ),
    )
    d = decide(policy(), cluster(), broken, first.memory, (), NOW + 15)
    assert d.findings is None and d.problem is not None and "unreachable" in d.problem
    assert not [a for a in d.plan.actions if a.kind == DRAIN]
    assert d.memory == first.memory


def test_no_prometheus_and_no_pods_are_problems_not_findings() -> None:
    d = decide(policy(), cluster(), None, Memory(), (), NOW, prometheus_configured=False)
    assert d.problem is not None and "Prometheus URL" in d.problem
    empty = ClusterSnapshot((), {})
    assert decide(policy(), empty, metrics([]), Memory(), (), NOW).problem == (
        "the selector matches no pods"
    )


def test_history_is_read_from_status_and_kept_one_hour() -> None:
    status = {
        "recentActions": [
            {"time": rfc3339(NOW - 100), "action": DRAIN, "pod": "a"},
            {"time": rfc3339(NOW - 4000), "action": DRAIN, "pod": "b"},
            {"time": "garbage", "action": DRAIN, "pod": "c"},
        ]
    }
    assert [r.pod for r in history_from_status(status, NOW)] == ["a"]


def test_settle_reports_only_what_was_done() -> None:
    p = policy()
    c = cluster()
    d = decide_bad((ActionRecord(NOW - 10, DRAIN, "x"),))
    drain = next(a for a in d.plan.actions if a.kind == DRAIN)
    failed = settle(
        p,
        c,
        d,
        [],
        [Held(HoldCause.ACTION_FAILED, f"{drain.pod}: drain failed: API error 500")],
        {},
        NOW,
    )
    assert [r["pod"] for r in failed.status["recentActions"]] == ["x"]
    assert any("drain failed" in b for b in failed.status["blocked"])
    assert not [e for e in failed.events if e.reason == "Drained"]
    done = settle(p, c, d, [drain], [], {}, NOW)
    assert [r["pod"] for r in done.status["recentActions"]] == ["x", "pod-00"]
    assert [e.pod for e in done.events if e.reason == "Drained"] == ["pod-00"]


def test_pods_restored_evicted_or_isolated_start_again_from_no_evidence() -> None:
    """After the plan's writes, a pod restored, evicted or isolated loses its detector memory
    (it is drained again only on evidence gathered since); a drained pod keeps its own (why it
    stays drained); a write that failed (not in `done`) forgets nothing."""
    tracks = {p: Track(degraded=True, cusum=(30.0,)) for p in "abcde"}
    decision = Decision(None, None, Plan((), (), ()), Memory(tracks), (), {})
    done = [Action(RESTORE, "a", ""), Action(EVICT, "b", ""), Action(ISOLATE, "c", "")]
    after = remember(decision, [*done, Action(DRAIN, "d", "")])
    assert set(after.tracks) == {"d", "e"} and after.tracks["d"] == tracks["d"]
    assert remember(decision, []).tracks == tracks
