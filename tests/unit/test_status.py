"""Status and Events on plain data: condition shape, stable transition times, transitions only."""

from __future__ import annotations

from planner_fixtures import NOW, findings, plan_for, pods, policy
from stickyguard.core.policy_status import build_status, events, meaningful


def test_conditions_have_metav1_shape() -> None:
    p = policy()
    f = findings(p, [0.2] + [0.001] * 5)
    st = build_status(p, pods(6), f, None, plan_for(p, pods(6), f), {}, NOW)
    types = [c["type"] for c in st["conditions"]]
    assert types == ["Ready", "MetricsAvailable", "Degraded", "Concentrated", "Conflict"]
    for c in st["conditions"]:
        assert set(c) == {
            "type",
            "status",
            "reason",
            "message",
            "observedGeneration",
            "lastTransitionTime",
        }
        assert c["status"] in ("True", "False", "Unknown")
        assert c["reason"][0].isupper() and " " not in c["reason"]
    assert st["classification"] == "concentrated"
    assert st["drained"][0]["pod"] == "pod-00" and st["drained"][0]["phase"] == "Draining"


def test_second_identical_cycle_writes_and_posts_nothing_new() -> None:
    p = policy()
    f = findings(p, [0.001] * 6)
    pl = plan_for(p, pods(6), f)
    first = build_status(p, pods(6), f, None, pl, {}, NOW)
    second = build_status(p, pods(6), f, None, pl, first, NOW + 15)
    assert meaningful(first) == meaningful(second)
    assert [c["lastTransitionTime"] for c in first["conditions"]] == [
        c["lastTransitionTime"] for c in second["conditions"]
    ]
    assert events(first, second, pl) == []


def test_metrics_loss_is_one_warning_then_silence() -> None:
    p = policy()
    f = findings(p, [0.001] * 6)
    ok = build_status(p, pods(6), f, None, plan_for(p, pods(6), f), {}, NOW)
    pl = plan_for(p, pods(6), None, "total: Prometheus unreachable")
    lost = build_status(p, pods(6), None, "total: Prometheus unreachable", pl, ok, NOW + 15)
    evs = events(ok, lost, pl)
    assert [(e.type, e.reason) for e in evs] == [("Warning", "MetricsUnavailable")]
    again = build_status(p, pods(6), None, "total: Prometheus unreachable", pl, lost, NOW + 30)
    assert events(lost, again, pl) == []
    assert (
        next(c for c in lost["conditions"] if c["type"] == "MetricsAvailable")["status"] == "False"
    )


def test_would_drain_event_only_when_new() -> None:
    p = policy(actions={"mode": "DryRun"})
    f = findings(p, [0.2] + [0.001] * 5)
    pl = plan_for(p, pods(6), f)
    first = build_status(p, pods(6), f, None, pl, {}, NOW)
    assert [e.reason for e in events({}, first, pl) if e.reason == "WouldDrain"] == ["WouldDrain"]
    second = build_status(p, pods(6), f, None, pl, first, NOW + 15)
    assert not [e for e in events(first, second, pl) if e.reason == "WouldDrain"]
    assert first["pods"]["drained"] == 0
