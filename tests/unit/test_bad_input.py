"""The bad-input catalogue (docs/bad-input.md) on plain data: every string field of a policy
with hostile PromQL, absurd thresholds, and hostile query answers. Each class is rejected with
a message naming the field or cause, or made harmless."""

from __future__ import annotations

import math
import re
from typing import Any

import pytest

from policies import minimal
from stickyguard.adapters.prometheus import QueryError, parse_vector
from stickyguard.core.analysis import PodMeta, PodSample, analyze, single_shot
from stickyguard.core.planner import PodState, plan
from stickyguard.core.policy import Detection, Impact, PolicyError, parse_policy

PAYLOAD = 'x"} or vector(1) or {a="'
STRING = re.compile(r'"(?:\\.|[^"\\])*"')

# Every string field of the spec that a user controls, as (path, spec fragment).
STRING_FIELDS: list[tuple[str, dict[str, Any]]] = [
    ("selector.matchLabels value", {"selector": {"matchLabels": {"app": PAYLOAD}}}),
    ("selector.matchLabels key", {"selector": {"matchLabels": {PAYLOAD: "web"}}}),
    (
        "selector.matchExpressions values",
        {
            "selector": {
                "matchExpressions": [{"key": "app", "operator": "In", "values": [PAYLOAD]}]
            },
            "prometheus": {"seriesSelector": {"app": "web"}},
        },
    ),
    ("prometheus.seriesSelector value", {"prometheus": {"seriesSelector": {"app": PAYLOAD}}}),
    ("prometheus.seriesSelector key", {"prometheus": {"seriesSelector": {PAYLOAD: "x"}}}),
    ("prometheus.podLabel", {"prometheus": {"podLabel": PAYLOAD}}),
    ("prometheus.window", {"prometheus": {"window": "5m]) or vector(1"}}),
    ("prometheus.url", {"prometheus": {"url": "http://p:9090/?q=" + PAYLOAD}}),
    ("prometheus.preset", {"prometheus": {"preset": PAYLOAD}}),
    ("affinity.cookieName", {"affinity": {"mode": "Cookie", "cookieName": PAYLOAD}}),
    ("affinity.headerName", {"affinity": {"mode": "Header", "headerName": PAYLOAD}}),
    ("detection.dimensions", {"detection": {"dimensions": [PAYLOAD]}}),
    ("workloadRef.name", {"workloadRef": {"kind": "Deployment", "name": PAYLOAD}}),
]


def outside_string_literals(query: str) -> str:
    return STRING.sub('""', query)


@pytest.mark.parametrize(("path", "spec"), STRING_FIELDS, ids=[f[0] for f in STRING_FIELDS])
def test_promql_injection_through_every_string_field(path: str, spec: dict[str, Any]) -> None:
    """Either the policy is rejected, naming a field, or the payload never reaches PromQL
    outside a string literal."""
    try:
        policy = parse_policy(minimal(**spec))
    except PolicyError as e:
        assert e.errors and all(field.startswith("spec.") for field, _ in e.errors), e.errors
        return
    for name, query in policy.prometheus.rendered_queries("shop").items():
        code = outside_string_literals(query)
        assert "vector(1)" not in code and " or " not in code, (path, name, query)


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"detection": {"minRequests": -1}}, "spec.detection.minRequests"),
        ({"detection": {"minRequests": 10**12}}, "spec.detection.minRequests"),
        ({"detection": {"absoluteThreshold": 1.5}}, "spec.detection.absoluteThreshold"),
        ({"detection": {"relativeThreshold": 0}}, "spec.detection.relativeThreshold"),
        ({"detection": {"consecutive": 0}}, "spec.detection.consecutive"),
        ({"detection": {"intervalSeconds": 10**9}}, "spec.detection.intervalSeconds"),
        ({"safety": {"maxDrainedPercent": 101}}, "spec.safety.maxDrainedPercent"),
        ({"safety": {"minReadyPods": -3}}, "spec.safety.minReadyPods"),
        ({"safety": {"maxActionsPerHour": -1}}, "spec.safety.maxActionsPerHour"),
        ({"prometheus": {"window": "999999d"}}, "spec.prometheus.window"),
        ({"prometheus": {"timeoutSeconds": 0}}, "spec.prometheus.timeoutSeconds"),
        ({"detection": {"confidence": "0.99"}}, "spec.detection.confidence"),
        ({"safety": {"minReadyPods": True}}, "spec.safety.minReadyPods"),
    ],
)
def test_absurd_thresholds_are_rejected_naming_the_field(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(PolicyError) as e:
        parse_policy(minimal(**spec))
    assert field in [f for f, _ in e.value.errors], e.value.errors


def series(pod: Any, value: Any) -> dict[str, Any]:
    return {"metric": {"pod": pod}, "value": [1.0, value]}


@pytest.mark.parametrize(
    ("answer", "cause"),
    [
        ({"not": "a list"}, "expected an instant vector"),
        ([{"metric": "x"}], "malformed series"),
        ([{"metric": {"job": "a"}, "value": [1, "1"]}], "has no 'pod' label"),
        ([series("a", "abc")], "non-numeric sample"),
        ([series("a", None)], "non-numeric sample"),
        ([{"metric": {"pod": "a"}, "values": [[1, "1"]]}], "malformed sample"),
        ([series("a", "1"), series("a", "2")], "several series for pod a"),
    ],
)
def test_malformed_query_answers_are_query_errors_naming_the_cause(answer: Any, cause: str) -> None:
    with pytest.raises(QueryError, match=re.escape(cause)):
        parse_vector(answer, "pod")


@pytest.mark.parametrize("raw", ["NaN", "+Inf", "-Inf", "-40", "1e308"])
def test_nan_inf_negative_and_huge_values_are_never_judged(raw: str) -> None:
    """Prometheus can legitimately answer these (a counter reset, a division by zero); they
    parse, and the analysis treats the pod as insufficient data instead of judging it."""
    value = parse_vector([series("odd", raw)], "pod").values["odd"]
    assert value == float(raw) or (math.isnan(value) and raw == "NaN")
    samples = [PodSample(f"p{i}", 1000.0, 1.0) for i in range(9)]
    samples.append(PodSample("odd", 1000.0, value))  # bad = NaN/Inf/negative/above total
    f = analyze(samples, {}, single_shot(Detection()), Impact())
    odd = next(p for p in f.pods if p.pod == "odd")
    assert odd.status == "insufficient_data" and not odd.degraded


def test_pods_on_missing_nodes_are_analyzed_without_attribution() -> None:
    """A pod's node was deleted (or never known): no zone, and concentration cannot blame it."""
    samples = [PodSample(f"p{i}", 2000.0, 2.0) for i in range(9)] + [PodSample("bad", 2000, 400)]
    meta = {s.pod: PodMeta(s.pod, node="gone-node" if s.pod == "bad" else "n1") for s in samples}
    f = analyze(samples, meta, single_shot(Detection()), Impact())
    assert f.degraded_pods == ("bad",)
    no_meta = analyze(samples, {}, single_shot(Detection()), Impact())
    assert no_meta.degraded_pods == ("bad",)


def test_a_pod_that_vanished_is_not_planned_for() -> None:
    """Findings name a pod the cluster no longer lists (deleted mid-cycle): nothing is planned
    for it, and the budget counts only pods that exist."""
    policy = parse_policy(minimal(actions={"mode": "Enforce"}, safety={"cooldownSeconds": 0}))
    samples = [PodSample(f"p{i}", 2000.0, 2.0) for i in range(9)] + [PodSample("ghost", 2000, 400)]
    f = analyze(samples, {}, single_shot(Detection()), Impact())
    assert "ghost" in f.degraded_pods
    states = [PodState(f"p{i}", ready=True) for i in range(9)]
    out = plan(policy, states, f, None, [], 1000.0, {}, frozenset())
    assert all(a.pod != "ghost" for a in out.actions)
