"""`stickyguard status` tables from StickyPolicy objects (plain dicts)."""

from __future__ import annotations

from typing import Any

from stickyguard.core.status_table import render


def obj(ns: str, name: str, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"namespace": ns, "name": name, "generation": 2},
        "spec": {"actions": {"mode": "Enforce"}},
        "status": {"observedGeneration": 2, **status},
    }


NOW = 1_800_000_000.0
TS = "2027-01-15T08:00:00Z"


def test_policies_and_drained_pods() -> None:
    a = obj(
        "shop",
        "checkout",
        classification="concentrated",
        lastEvaluationTime=TS,
        pods={"total": 6, "ready": 5, "drained": 1},
        impact={"badRequestRatio": 0.008, "affectedSessionRatio": 0.3, "amplification": 37.5},
        drained=[
            {"pod": "web-1", "node": "n2", "phase": "Draining", "since": TS, "reason": "20% bad"}
        ],
        conditions=[
            {"type": "Ready", "status": "True"},
            {"type": "MetricsAvailable", "status": "True"},
        ],
    )
    b = obj(
        "a-ns",
        "search",
        conditions=[{"type": "Ready", "status": "False", "reason": "InvalidPolicy"}],
    )
    lines = render([a, b], NOW).splitlines()
    assert lines[0].split()[:3] == ["NAMESPACE", "NAME", "MODE"]
    assert lines[1].split()[:2] == ["a-ns", "search"] and "InvalidPolicy" in lines[1]
    row = lines[2].split()
    assert row[:6] == ["shop", "checkout", "Enforce", "concentrated", "5/6", "1"]
    assert row[6:10] == ["0.8%", "30.0%", "x37.5", "OK"]
    drained = [line for line in lines if "web-1" in line]
    assert drained and drained[0].split()[:5] == ["shop", "checkout", "web-1", "n2", "Draining"]


def test_stale_and_empty() -> None:
    stale = obj("x", "y", lastEvaluationTime=TS)
    stale["status"]["observedGeneration"] = 1
    assert "Stale" in render([stale], NOW)
    assert render([], NOW) == "No StickyPolicies found."


def test_wide_lists_what_is_blocked() -> None:
    o = obj("x", "y", blocked=["web-2: not drained: maxDrainedPercent 25 allows 1 of 6"])
    assert "maxDrainedPercent" not in render([o], NOW)
    assert "maxDrainedPercent" in render([o], NOW, wide=True)
