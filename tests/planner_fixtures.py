"""Plain-data fixtures for planner and status tests."""

from __future__ import annotations

from typing import Any

from stickyguard.core.analysis import Findings, PodSample, Track, analyze, single_shot
from stickyguard.core.planner import Plan, PodState, plan
from stickyguard.core.policy import Policy, parse_policy

NOW = 1_000_000.0


def policy(**spec: Any) -> Policy:
    body: dict[str, Any] = {
        "selector": {"matchLabels": {"app": "web"}},
        "detection": {"consecutive": 1},
        "actions": {"mode": "Enforce"},
        "safety": {"cooldownSeconds": 0},
    }
    for k, v in spec.items():
        body[k] = {**body.get(k, {}), **v}
    return parse_policy({"metadata": {"name": "p", "namespace": "ns"}, "spec": body})


def pods(n: int, **overrides: Any) -> list[PodState]:
    return [
        PodState(f"pod-{i:02d}", node=f"n{i % 3}", has_gate=True, **overrides) for i in range(n)
    ]


def findings(p: Policy, ratios: list[float], tracks: dict[str, Track] | None = None) -> Findings:
    # The planner's tests need findings, not the detector's history: one window decides.
    samples = [PodSample(f"pod-{i:02d}", 2000, 2000 * r) for i, r in enumerate(ratios)]
    return analyze(samples, {}, single_shot(p.detection), p.impact, tracks)


def plan_for(
    p: Policy, states: list[PodState], f: Findings | None, problem: str | None = None
) -> Plan:
    return plan(p, states, f, problem, [], NOW)
