"""The operator's own metrics: what one evaluation records, budget causes, forgetting."""

from __future__ import annotations

import math

import pytest

from stickyguard.controller import telemetry
from stickyguard.core.analysis import PodSample, analyze, single_shot
from stickyguard.core.policy import Detection, Impact
from stickyguard.core.problems import Held, HoldCause, MetricProblem, MetricProblemKind


def value(name: str, **labels: str) -> float | None:
    return telemetry.REGISTRY.get_sample_value(name, labels)


@pytest.mark.parametrize("cause", list(HoldCause))
def test_blocked_actions_are_counted_by_their_typed_cause(cause: HoldCause) -> None:
    # The message may say anything (a pod called metrics-gw-1 included): the label is the kind.
    telemetry.record_evaluation(
        "t",
        "typed",
        result="ok",
        seconds=0.1,
        now=1.0,
        blocked=[Held(cause, "metrics-gw-1: not drained: metrics unavailable failed: ")],
    )
    assert (
        value(
            "stickyguard_actions_blocked_total", namespace="t", policy="typed", reason=cause.value
        )
        == 1
    )
    telemetry.forget("t", "typed")


def test_an_evaluation_with_findings_sets_every_policy_series() -> None:
    samples = [PodSample(f"p{i}", 2000, 2000 * (0.3 if i == 0 else 0.001)) for i in range(10)]
    findings = analyze(samples, {}, single_shot(Detection()), Impact())
    labels = {"namespace": "shop", "policy": "checkout"}
    telemetry.record_evaluation(
        "shop",
        "checkout",
        result="ok",
        seconds=0.2,
        now=1000.0,
        findings=findings,
        actions=["drain"],
        blocked=[
            Held(
                HoldCause.MAX_DRAINED_PERCENT,
                "p3: not drained: maxDrainedPercent 10 allows 1 of 10 pods drained at once",
            )
        ],
        drained=1,
    )
    assert value("stickyguard_evaluations_total", **labels, result="ok") == 1
    assert value("stickyguard_evaluation_duration_seconds_count", **labels) == 1
    assert value("stickyguard_actions_total", **labels, action="drain") == 1
    assert value("stickyguard_actions_blocked_total", **labels, reason="maxDrainedPercent") == 1
    assert value("stickyguard_drained_pods", **labels) == 1
    assert value("stickyguard_metrics_available", **labels) == 1
    assert value("stickyguard_last_evaluation_timestamp_seconds", **labels) == 1000.0
    assert value("stickyguard_policy_classification", **labels, classification="concentrated") == 1
    assert value("stickyguard_policy_classification", **labels, classification="healthy") == 0
    assert value("stickyguard_pods", **labels, status="degraded") == 1
    assert value("stickyguard_pods", **labels, status="healthy") == 9
    amp = value("stickyguard_amplification_ratio", **labels)
    assert amp is not None and amp > 1
    assert value("stickyguard_bad_request_ratio", **labels) == pytest.approx(
        findings.fleet_bad_ratio
    )

    telemetry.forget("shop", "checkout")
    assert value("stickyguard_evaluations_total", **labels, result="ok") is None
    assert value("stickyguard_amplification_ratio", **labels) is None


def test_metrics_unavailable_counts_query_errors_by_signal_and_leaves_impact_unknown() -> None:
    labels = {"namespace": "shop", "policy": "search"}
    telemetry.record_evaluation(
        "shop",
        "search",
        result="metrics_unavailable",
        seconds=1.0,
        now=5.0,
        query_problems=[
            MetricProblem("total", MetricProblemKind.SERVER_ERROR, "HTTP 500"),
            MetricProblem("bad", MetricProblemKind.TIMEOUT, "timed out"),
        ],
    )
    assert value("stickyguard_metrics_available", **labels) == 0
    assert value("stickyguard_prometheus_query_errors_total", **labels, signal="total") == 1
    assert value("stickyguard_prometheus_query_errors_total", **labels, signal="bad") == 1
    assert value("stickyguard_policy_classification", **labels, classification="unknown") == 1
    assert value("stickyguard_amplification_ratio", **labels) is None
    telemetry.forget("shop", "search")


def test_an_invalid_policy_only_counts_the_evaluation() -> None:
    labels = {"namespace": "shop", "policy": "broken"}
    telemetry.record_evaluation("shop", "broken", result="invalid_policy", seconds=0.01, now=1.0)
    assert value("stickyguard_evaluations_total", **labels, result="invalid_policy") == 1
    assert value("stickyguard_metrics_available", **labels) is None
    assert not math.isnan(value("stickyguard_last_evaluation_timestamp_seconds", **labels) or 0)
    telemetry.forget("shop", "broken")
