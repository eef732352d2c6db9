"""The policy model on plain data: defaults, every semantic error, PromQL safety."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from policies import INVALID, SAMPLES, load_sample, minimal
from stickyguard.core import promql
from stickyguard.core.policy import (
    Actions,
    Detection,
    LabelSelector,
    PolicyError,
    Requirement,
    Safety,
    parse_policy,
)


def errors_of(obj: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(PolicyError) as info:
        parse_policy(obj)
    return info.value.errors


def test_minimal_policy_gets_every_default() -> None:
    p = parse_policy(minimal())
    assert p.detection == Detection()
    assert p.safety == Safety()
    assert p.actions == Actions()
    assert p.actions.dry_run, "a policy acts only when its author says Enforce"
    assert p.prometheus.preset == "generic"
    assert p.prometheus.pod_label == "pod"
    assert p.prometheus.window == "2m"
    assert p.prometheus.series_selector == {"app": "web"}
    assert p.affinity.mode == "Cookie"


def test_haproxy_preset_defaults_pod_label_to_server() -> None:
    p = parse_policy(minimal(prometheus={"preset": "haproxy"}))
    assert p.prometheus.pod_label == "server"
    assert "by (server)" in p.prometheus.rendered_queries("ns")["total"]


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.stem)
def test_samples_parse(sample: Any) -> None:
    parse_policy(load_sample(sample))


@pytest.mark.parametrize(("case", "spec", "field"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_policies_name_the_field(case: str, spec: dict[str, Any], field: str) -> None:
    errs = errors_of(minimal(**spec))
    assert any(path.startswith(field) for path, _ in errs), errs


def test_every_error_is_reported_at_once() -> None:
    errs = errors_of(
        minimal(detection={"confidence": 2, "minRequests": 0}, safety={"minReadyPods": 0})
    )
    assert {p for p, _ in errs} == {
        "spec.detection.confidence",
        "spec.detection.minRequests",
        "spec.safety.minReadyPods",
    }


def test_unknown_fields_are_errors_not_silently_ignored() -> None:
    errs = errors_of(minimal(detection={"minRequest": 10}))
    assert errs == [("spec.detection.minRequest", "unknown field")]


def test_booleans_are_not_numbers() -> None:
    errs = errors_of(minimal(detection={"minRequests": True}))
    assert errs[0][0] == "spec.detection.minRequests"


def test_missing_metadata_and_selector() -> None:
    errs = errors_of({"spec": {}})
    paths = {p for p, _ in errs}
    assert {"metadata.name", "metadata.namespace", "spec.selector"} <= paths


def test_unknown_placeholder_in_template() -> None:
    errs = errors_of(
        minimal(
            prometheus={"queries": {"total": "sum by (pod) (x{{job}})", "bad": "sum by (pod) (y)"}}
        )
    )
    assert errs[0][0] == "spec.prometheus.queries.total"
    assert "{job}" in errs[0][1]


def test_degraded_sessions_needs_active_sessions() -> None:
    errs = errors_of(minimal(prometheus={"queries": {"degradedSessions": "sum by (pod) (x)"}}))
    assert errs[0][0] == "spec.prometheus.queries.degradedSessions"


CUSTOM = {"total": "sum by (pod) (rate(x[{window}]))", "bad": "sum by (pod) (rate(y[{window}]))"}


def test_custom_queries_may_give_the_raw_counters() -> None:
    counters = {"totalCounter": "sum by (pod) (x)", "badCounter": "sum by (pod) (y)"}
    p = parse_policy(minimal(prometheus={"queries": {**CUSTOM, **counters}}))
    rendered = p.prometheus.rendered_queries("ns")
    assert rendered["totalCounter"] == "sum by (pod) (x)"
    assert rendered["badCounter"] == "sum by (pod) (y)"
    assert "totalCounter" not in parse_policy(
        minimal(prometheus={"queries": CUSTOM})
    ).prometheus.rendered_queries("ns")


def test_counter_queries_come_in_pairs_and_with_the_rates() -> None:
    errs = errors_of(
        minimal(prometheus={"queries": {**CUSTOM, "totalCounter": "sum by (pod) (x)"}})
    )
    assert errs == [
        ("spec.prometheus.queries", "totalCounter and badCounter must be given together")
    ]
    errs = errors_of(
        minimal(
            prometheus={
                "queries": {"totalCounter": "sum by (pod) (x)", "badCounter": "sum by (pod) (y)"}
            }
        )
    )
    assert [p for p, _ in errs] == ["spec.prometheus.queries.totalCounter"]


def test_expressions_only_selector_needs_series_selector() -> None:
    spec = {"selector": {"matchExpressions": [{"key": "app", "operator": "Exists"}]}}
    errs = errors_of(minimal(**spec))
    assert errs[0][0] == "spec.prometheus.seriesSelector"
    spec["prometheus"] = {"seriesSelector": {"job": "web"}}
    assert parse_policy(minimal(**spec)).prometheus.series_selector == {"job": "web"}


@pytest.mark.parametrize(
    "selector",
    [
        {"matchLabels": {"app": "web", "stickyguard.dev/serving": "true"}},
        {
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "stickyguard.dev/serving", "operator": "Exists"}],
        },
    ],
)
def test_a_selector_on_the_operators_own_labels_is_rejected(selector: dict[str, Any]) -> None:
    # With the ServiceLabel method a drain removes stickyguard.dev/serving: the drained pod
    # would leave the selection, its budget and its restore (3 of 10 drained at 25%).
    errs = errors_of(minimal(selector=selector))
    assert [p for p, _ in errs] == ["spec.selector"]
    assert "must not name stickyguard.dev/serving" in errs[0][1]


@pytest.mark.parametrize("dim", ["node", "zone", "version", "replicaset", "example.com/pool"])
def test_dimensions_accept_builtins_and_label_keys(dim: str) -> None:
    assert parse_policy(minimal(detection={"dimensions": [dim]})).detection.dimensions == (dim,)


def test_dimension_rejects_garbage() -> None:
    assert errors_of(minimal(detection={"dimensions": ["no spaces!"]}))[0][0] == (
        "spec.detection.dimensions[0]"
    )


# --- PromQL safety --------------------------------------------------------------------------
HOSTILE = [
    'x"} or vector(1) or {a="',
    'x\\"} or up{',
    "line\nbreak",
    "back\\slash",
    '"',
    "{selector}",
]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_selector_values_stay_inside_one_string_literal(value: str) -> None:
    p = parse_policy(
        minimal(
            selector={"matchLabels": {"app": "web"}}, prometheus={"seriesSelector": {"app": value}}
        )
    )
    q = p.prometheus.rendered_queries("ns")["total"]
    literal = promql.escape_value(value)
    assert f"app={literal}" in q
    # Decoding the literal gives back exactly the value: nothing escaped the string.
    assert yaml.safe_load(literal) == value or value == "line\nbreak"
    # The rest of the query is exactly the template's structure.
    assert q.replace(literal, '"V"') == (
        'sum by (pod) (rate(http_requests_total{namespace="ns",app="V"}[2m]))'
    )


@pytest.mark.parametrize("label", ['app"}', "a b", "1x", "a-b", "pod)"])
def test_hostile_label_names_are_rejected(label: str) -> None:
    errs = errors_of(minimal(prometheus={"seriesSelector": {label: "x"}}))
    assert errs[0][0].startswith("spec.prometheus.seriesSelector")


@pytest.mark.parametrize("label", ["pod) or vector(1", "pod,code", ""])
def test_hostile_pod_label_rejected(label: str) -> None:
    errs = errors_of(minimal(prometheus={"podLabel": label}))
    if label:
        assert errs[0][0] == "spec.prometheus.podLabel"


def test_selector_labels_are_sanitized_like_kubernetes_discovery() -> None:
    p = parse_policy(minimal(selector={"matchLabels": {"app.kubernetes.io/name": "web"}}))
    assert p.prometheus.series_selector == {"app_kubernetes_io_name": "web"}


def test_render_rejects_unknown_placeholder() -> None:
    with pytest.raises(ValueError, match="unknown placeholder"):
        promql.render("{nope}", namespace="a", selector="b", window="1m", pod_label="pod")


def test_duration_seconds() -> None:
    assert promql.duration_seconds("1h30m") == 5400
    assert promql.duration_seconds("250ms") == 0.25
    with pytest.raises(ValueError):
        promql.duration_seconds("2 minutes")


# --- label selectors --------------------------------------------------------------------------
def test_label_selector_semantics() -> None:
    sel = LabelSelector(
        {"app": "web"},
        (
            Requirement("tier", "In", ("a", "b")),
            Requirement("canary", "DoesNotExist"),
            Requirement("zone", "NotIn", ("z1",)),
            Requirement("team", "Exists"),
        ),
    )
    assert sel.matches({"app": "web", "tier": "a", "team": "x"})
    assert not sel.matches({"app": "web", "tier": "c", "team": "x"})
    assert not sel.matches({"app": "web", "tier": "a", "team": "x", "canary": "1"})
    assert not sel.matches({"app": "web", "tier": "a", "team": "x", "zone": "z1"})
    assert not sel.matches({"app": "web", "tier": "a"})
    assert sel.to_label_selector() == ("app=web,tier in (a,b),!canary,zone notin (z1),team")
