"""doctor's checks on plain facts: each broken setup fails its own check, with a fix."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import pytest

from stickyguard.core import doctor_checks as doctor
from stickyguard.core.doctor_facts import (
    FAIL,
    PASS,
    SKIP,
    WARN,
    Access,
    Facts,
    IngressFacts,
    PodFacts,
    ServiceFacts,
)
from stickyguard.core.names import API_VERSION, SERVING
from stickyguard.core.policy import Detection, parse_policy


def policy(**spec: Any) -> Any:
    body = {
        "apiVersion": API_VERSION,
        "kind": "StickyPolicy",
        "metadata": {"name": "web", "namespace": "shop", "generation": 1},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "actions": {"mode": "Enforce"},
            **spec,
        },
    }
    return parse_policy(body)


PODS = tuple(PodFacts(f"web-{i}", {"app": "web"}, True) for i in range(3))
HEALTHY = Facts(
    "shop",
    "web",
    policy=policy(),
    pods=PODS,
    services=(ServiceFacts("web", {"app": "web"}),),
    ingresses=(
        IngressFacts("web", {"nginx.ingress.kubernetes.io/affinity": "cookie"}, frozenset({"web"})),
    ),
    prometheus_url="http://prom:9090",
    series={"total": frozenset(p.name for p in PODS), "bad": frozenset()},
    window={"total": {p.name: 10.0 for p in PODS}, "bad": {PODS[0].name: 0.01}},
    scrape_age={p.name: 5.0 for p in PODS},
    access=tuple(replace(a, allowed=True) for a in doctor.required_access(policy())),
    evaluation_age=4.0,
    status_read=True,
)


def results(facts: Facts) -> dict[str, str]:
    return {c.name: c.result for c in doctor.diagnose(facts)}


def broken(facts: Facts) -> dict[str, str]:
    return {k: v for k, v in results(facts).items() if v != PASS}


def test_healthy_passes_everything() -> None:
    out = results(HEALTHY)
    assert out.pop("sessions") == SKIP  # this policy reads no session gauges (see below)
    assert set(out.values()) == {PASS}


@pytest.mark.parametrize(("age", "result"), [(4.0, PASS), (None, WARN), (600.0, WARN)])
def test_a_policy_no_operator_evaluates_is_reported(age: float | None, result: str) -> None:
    assert results(replace(HEALTHY, evaluation_age=age))["evaluated"] == result


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        (
            replace(HEALTHY, policy=None, policy_error="spec.safety.minReadyPods: must be >= 0"),
            "policy",
        ),
        (replace(HEALTHY, pods=()), "selector"),
        (replace(HEALTHY, services=(ServiceFacts("web", {"app": "other"}),)), "service"),
        (
            replace(HEALTHY, pods=(*PODS[:2], PodFacts("web-2", {"app": "web"}, False))),
            "drain-mechanism",
        ),
        (replace(HEALTHY, prometheus_url=None), "prometheus"),
        (replace(HEALTHY, prometheus_error="connection refused"), "prometheus"),
        (replace(HEALTHY, series={"total": frozenset({"web-0"}), "bad": frozenset()}), "series"),
        (replace(HEALTHY, query_errors={"total": "bad_data: parse error"}), "series"),
        (replace(HEALTHY, scrape_age={"web-0": 5.0, "web-1": 5.0, "web-2": 900.0}), "freshness"),
        (
            replace(HEALTHY, access=(Access("create", "pods/eviction", "shop", "evict", False),)),
            "rbac",
        ),
    ],
)
def test_each_break_fails_its_check_with_a_fix(facts: Facts, expected: str) -> None:
    out = broken(facts)
    assert out.get(expected) == FAIL
    assert all(v in (SKIP, WARN) for k, v in out.items() if k != expected), out
    check = next(c for c in doctor.diagnose(facts) if c.name == expected)
    assert check.fix


def test_bad_series_may_be_absent_for_pods_without_bad_events() -> None:
    assert (
        results(replace(HEALTHY, series={**HEALTHY.series, "bad": frozenset()}))["series"] == PASS
    )


def test_service_label_needs_the_serving_label_in_the_service_selector() -> None:
    p = policy(actions={"mode": "Enforce", "drain": {"method": "ServiceLabel"}})
    labelled = tuple(PodFacts(x.name, {"app": "web", SERVING: "true"}, False) for x in PODS)
    base = replace(HEALTHY, policy=p, pods=labelled)
    assert results(base)["drain-mechanism"] == FAIL
    ok = replace(base, services=(ServiceFacts("web", {"app": "web", SERVING: "true"}),))
    assert results(ok)["drain-mechanism"] == PASS
    partly = replace(ok, pods=(*labelled[:2], PodFacts("web-2", {"app": "web"}, False)))
    assert results(partly)["drain-mechanism"] == WARN


def test_client_ip_affinity_checks_the_service_and_source_nat() -> None:
    p = policy(affinity={"mode": "ClientIP"})
    base = replace(HEALTHY, policy=p, ingresses=())
    assert results(base)["affinity"] == FAIL
    lb = ServiceFacts("web", {"app": "web"}, "ClientIP", "LoadBalancer", "Cluster")
    assert results(replace(base, services=(lb,)))["affinity"] == WARN
    local = replace(lb, external_traffic_policy="Local")
    assert results(replace(base, services=(local,)))["affinity"] == PASS


def test_cookie_affinity_without_an_ingress_is_a_warning_not_a_failure() -> None:
    assert results(replace(HEALTHY, ingresses=()))["affinity"] == WARN


def test_required_access_follows_the_policy() -> None:
    def needs(p: Any) -> set[str]:
        return {f"{a.verb} {a.resource}" for a in doctor.required_access(p)}

    dry = needs(policy(actions={"mode": "DryRun"}))
    assert "patch pods" not in dry and "list pods" in dry
    full = needs(
        policy(
            actions={"mode": "Enforce", "cordonNode": True},
            workloadRef={"kind": "Deployment", "name": "web"},
        )
    )
    assert {
        "patch pods/status",
        "create pods/eviction",
        "patch nodes",
        "patch deployments.apps",
    } <= full


def test_render_prints_fixes_only_for_problems() -> None:
    text = doctor.render(doctor.diagnose(replace(HEALTHY, pods=())))
    assert "FAIL  selector" in text and "fix:" in text
    assert doctor.render(doctor.diagnose(HEALTHY)).count("fix:") == 0


def test_traefik_stickiness_is_read_from_the_service_not_the_ingress() -> None:
    # Traefik v3 takes service.sticky.cookie from the Service (tests/integration/test_traefik.py
    # shows it on the real controller); on the Ingress it does nothing.
    sticky = {"traefik.ingress.kubernetes.io/service.sticky.cookie": "true"}
    plain_ingress = (IngressFacts("web", {}, frozenset({"web"})),)
    on_service = replace(
        HEALTHY,
        services=(ServiceFacts("web", {"app": "web"}, annotations=sticky),),
        ingresses=plain_ingress,
    )
    assert results(on_service)["affinity"] == PASS
    on_ingress = replace(HEALTHY, ingresses=(IngressFacts("web", sticky, frozenset({"web"})),))
    checks = {c.name: c for c in doctor.diagnose(on_ingress)}
    assert checks["affinity"].result == WARN
    assert "move" in (checks["affinity"].fix or "")
    # Off ("false") on the Service is not stickiness either.
    off = replace(
        on_service,
        services=(
            ServiceFacts(
                "web", {"app": "web"}, annotations={**sticky, **dict.fromkeys(sticky, "false")}
            ),
        ),
    )
    assert results(off)["affinity"] == WARN


# --- session gauges ------------------------------------------------------------------------------
GAUGED = replace(
    HEALTHY,
    policy=policy(
        prometheus={
            "queries": {
                "activeSessions": "sum by (pod) (sessions_active)",
                "degradedSessions": "sum by (pod) (sessions_degraded)",
            }
        }
    ),
)


def sessions(active: list[float], hurt: list[float]) -> Facts:
    pods = [p.name for p in PODS]
    return replace(
        GAUGED,
        sessions={
            "activeSessions": dict(zip(pods, active, strict=True)),
            "degradedSessions": dict(zip(pods, hurt, strict=True)),
        },
    )


def sessions_check(facts: Facts) -> Any:
    return next(c for c in doctor.diagnose(facts) if c.name == "sessions")


def test_sessions_are_skipped_without_gauges_and_say_what_that_costs() -> None:
    check = sessions_check(HEALTHY)
    assert check.result == SKIP and "one user whose calls all fail" in check.detail


def test_a_short_interval_without_gauges_is_a_warning() -> None:
    assert HEALTHY.policy is not None
    fast = replace(HEALTHY, policy=replace(HEALTHY.policy, detection=Detection(interval_seconds=5)))
    check = sessions_check(fast)
    assert check.result == WARN
    assert "intervalSeconds is 5" in check.detail and "20 s" in check.detail
    assert "activeSessions" in check.fix
    ten = replace(HEALTHY, policy=replace(HEALTHY.policy, detection=Detection(interval_seconds=10)))
    assert sessions_check(ten).result == SKIP


def test_plausible_gauges_pass_with_their_totals() -> None:
    check = sessions_check(sessions([20, 25, 18], [1, 0, 2]))
    assert (check.result, check.detail) == (PASS, "63 active sessions, 3 of them hurt, on 3 pods")


@pytest.mark.parametrize("hurt", [[1, -1, 0], [1, math.nan, 0]])
def test_impossible_gauges_fail_naming_the_pod(hurt: list[float]) -> None:
    check = sessions_check(sessions([20, 25, 18], hurt))
    assert check.result == FAIL and check.detail.startswith("web-1:") and check.fix


def test_hurt_at_least_active_on_most_pods_looks_like_a_counter() -> None:
    check = sessions_check(sessions([20, 25, 18], [340, 25, 2]))
    assert check.result == WARN and "counts every session ever hurt" in check.detail
    assert "gauge that falls" in check.fix
    # One pod whose sessions are all hurt is what a bad pod looks like: no warning.
    assert sessions_check(sessions([20, 25, 18], [20, 0, 1])).result == PASS


def test_custom_queries_without_a_freshness_query_warn_that_staleness_is_unchecked() -> None:
    """With custom total/bad the preset's freshness query is gone: maxStalenessSeconds would be
    silently ignored, so the doctor says so and names the field that restores it."""
    custom = {
        "total": "sum by ({pod_label}) (rate(answers_total{{selector}}[{window}]))",
        "bad": 'sum by ({pod_label}) (rate(answers_total{{selector},quality="bad"}[{window}]))',
    }
    p = policy(prometheus={"preset": "custom", "queries": custom})
    assert not p.prometheus.staleness_checked
    check = next(c for c in doctor.diagnose(replace(HEALTHY, policy=p)) if c.name == "freshness")
    assert check.result == WARN and "queries.freshness" in check.fix
    fresh = {**custom, "freshness": "max by ({pod_label}) (timestamp(answers_total{{selector}}))"}
    q = policy(prometheus={"preset": "custom", "queries": fresh})
    assert q.prometheus.staleness_checked
    assert "freshness" in q.prometheus.rendered_queries("shop")
    assert results(replace(HEALTHY, policy=q))["freshness"] == PASS
    assert policy().prometheus.staleness_checked  # a preset has its own


def thresholds(total: list[float], bad: list[float]) -> Any:
    pods = [p.name for p in PODS]
    window = {
        "total": dict(zip(pods, total, strict=True)),
        "bad": dict(zip(pods, bad, strict=True)),
    }
    return next(
        c for c in doctor.diagnose(replace(HEALTHY, window=window)) if c.name == "thresholds"
    )


def test_an_absolute_threshold_below_the_usual_error_ratio_is_a_warning() -> None:
    # Every pod at 2% (the default absoluteThreshold is 1%): every verdict is fleet-wide.
    check = thresholds([10.0, 10.0, 10.0], [0.2, 0.2, 0.9])
    assert check.result == WARN and "2.00%" in check.detail and "fleet_wide" in check.detail
    assert "absoluteThreshold above it (about 6%)" in check.fix
    # One bad pod does not move the usual ratio; pods without a bad series count as 0.
    assert thresholds([10.0, 10.0, 10.0], [0.01, 0.02, 3.0]).result == PASS
    only_one = {"total": {p.name: 10.0 for p in PODS}, "bad": {PODS[0].name: 5.0}}
    (check,) = [
        c for c in doctor.diagnose(replace(HEALTHY, window=only_one)) if c.name == "thresholds"
    ]
    assert check.result == PASS
    # A pod whose bad value is not a number is left out, not taken for a healthy one.
    assert thresholds([10.0, 10.0, 10.0], [math.nan, 0.3, 0.3]).result == WARN


def test_the_threshold_check_needs_two_pods_with_traffic() -> None:
    assert thresholds([10.0, 0.0, math.inf], [0.5, 0.0, 0.0]).result == SKIP
    assert thresholds([0.0, 0.0, 0.0], [0.0, 0.0, 0.0]).result == SKIP
