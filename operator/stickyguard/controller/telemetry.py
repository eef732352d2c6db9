"""The operator's own Prometheus metrics (`/metrics`): what it evaluated, found, did and was
stopped from doing, per policy. The alerts in manifests/components/monitoring build on these
names; renaming one is a breaking change (docs/operations.md lists them)."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from stickyguard.core.analysis import Findings
from stickyguard.core.problems import Held, MetricProblem

REGISTRY = CollectorRegistry(auto_describe=True)
_P = ("namespace", "policy")

EVALUATIONS = Counter(
    "stickyguard_evaluations_total",
    "Policy evaluations, by result (ok, metrics_unavailable, invalid_policy, error).",
    [*_P, "result"],
    registry=REGISTRY,
)
DURATION = Histogram(
    "stickyguard_evaluation_duration_seconds",
    "Wall time of one evaluation: read pods and metrics, analyze, plan, act, write status.",
    _P,
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 15, 30, 60),
    registry=REGISTRY,
)
QUERY_ERRORS = Counter(
    "stickyguard_prometheus_query_errors_total",
    "Prometheus queries that failed or returned unusable data, by signal.",
    [*_P, "signal"],
    registry=REGISTRY,
)
PODS = Gauge(
    "stickyguard_pods",
    "Selected pods by their finding in the last evaluation "
    "(healthy, outlier, degraded, insufficient_data, no_data).",
    [*_P, "status"],
    registry=REGISTRY,
)
CLASSIFICATION = Gauge(
    "stickyguard_policy_classification",
    "1 for the policy's current classification (healthy, concentrated, fleet_wide, "
    "insufficient_data, unknown), 0 for the others.",
    [*_P, "classification"],
    registry=REGISTRY,
)
ACTIONS = Counter(
    "stickyguard_actions_total",
    "Actions carried out: drain, evict, isolate, restore, cordon.",
    [*_P, "action"],
    registry=REGISTRY,
)
BLOCKED = Counter(
    "stickyguard_actions_blocked_total",
    "Actions wanted but not taken, by the budget or cause that stopped them.",
    [*_P, "reason"],
    registry=REGISTRY,
)
DRAINED = Gauge(
    "stickyguard_drained_pods", "Pods currently drained by the policy.", _P, registry=REGISTRY
)
AMPLIFICATION = Gauge(
    "stickyguard_amplification_ratio",
    "Share of sessions affected divided by share of requests bad (NaN when unknown).",
    _P,
    registry=REGISTRY,
)
AFFECTED = Gauge(
    "stickyguard_affected_session_ratio",
    "Share of sessions pinned to degraded pods (measured or estimated).",
    _P,
    registry=REGISTRY,
)
BAD_RATIO = Gauge(
    "stickyguard_bad_request_ratio", "Fleet-wide bad request ratio.", _P, registry=REGISTRY
)
METRICS_AVAILABLE = Gauge(
    "stickyguard_metrics_available",
    "1 when the last evaluation could read every required signal, else 0.",
    _P,
    registry=REGISTRY,
)
LAST_EVALUATION = Gauge(
    "stickyguard_last_evaluation_timestamp_seconds",
    "Unix time of the policy's last evaluation.",
    _P,
    registry=REGISTRY,
)
PROMETHEUS_QUERIES = Counter(
    "stickyguard_prometheus_queries_total",
    "Queries sent to Prometheus (one per signal per evaluation).",
    registry=REGISTRY,
)
KUBE_REQUESTS = Counter(
    "stickyguard_kube_api_requests_total",
    "Kubernetes API requests made by the reconcile loop (kopf's own watch and status patches "
    "are not included), by HTTP method.",
    ["method"],
    registry=REGISTRY,
)
LEADER = Gauge(
    "stickyguard_leader", "1 while this replica holds the leader Lease.", registry=REGISTRY
)

POD_STATUSES = ("healthy", "outlier", "degraded", "insufficient_data", "no_data")
CLASSIFICATIONS = ("healthy", "concentrated", "fleet_wide", "insufficient_data", "unknown")
_lock = threading.Lock()


def record_evaluation(
    namespace: str,
    policy: str,
    *,
    result: str,
    seconds: float,
    now: float,
    findings: Findings | None = None,
    query_problems: Iterable[MetricProblem] = (),
    actions: Iterable[str] = (),
    blocked: Iterable[Held] = (),
    drained: int | None = None,
) -> None:
    """Everything one evaluation contributes to the metrics."""
    labels = (namespace, policy)
    with _lock:
        EVALUATIONS.labels(*labels, result).inc()
        DURATION.labels(*labels).observe(seconds)
        LAST_EVALUATION.labels(*labels).set(now)
        if result == "invalid_policy":
            return
        METRICS_AVAILABLE.labels(*labels).set(1.0 if result == "ok" else 0.0)
        for problem in query_problems:
            QUERY_ERRORS.labels(*labels, problem.signal).inc()
        for kind in actions:
            ACTIONS.labels(*labels, kind).inc()
        for held in blocked:
            BLOCKED.labels(*labels, held.cause.value).inc()
        if drained is not None:
            DRAINED.labels(*labels).set(drained)
        current = findings.classification if findings is not None else "unknown"
        for c in CLASSIFICATIONS:
            CLASSIFICATION.labels(*labels, c).set(1.0 if c == current else 0.0)
        if findings is None:
            return
        counts = dict.fromkeys(POD_STATUSES, 0)
        for p in findings.pods:
            counts[p.status] = counts.get(p.status, 0) + 1
        for status, n in counts.items():
            PODS.labels(*labels, status).set(n)
        impact = findings.impact
        nan = float("nan")
        AMPLIFICATION.labels(*labels).set(
            impact.amplification if impact and impact.amplification is not None else nan
        )
        AFFECTED.labels(*labels).set(
            impact.affected_session_ratio
            if impact and impact.affected_session_ratio is not None
            else nan
        )
        BAD_RATIO.labels(*labels).set(
            findings.fleet_bad_ratio if findings.fleet_bad_ratio is not None else nan
        )


def forget(namespace: str, policy: str) -> None:
    """Drops a deleted policy's series so dashboards and alerts do not see ghosts."""
    with _lock:
        for metric in (
            EVALUATIONS,
            DURATION,
            QUERY_ERRORS,
            PODS,
            CLASSIFICATION,
            ACTIONS,
            BLOCKED,
            DRAINED,
            AMPLIFICATION,
            AFFECTED,
            BAD_RATIO,
            METRICS_AVAILABLE,
            LAST_EVALUATION,
        ):
            for sample_labels in _label_sets(metric):
                if sample_labels[:2] == (namespace, policy):
                    metric.remove(*sample_labels)


def _label_sets(metric: Counter | Gauge | Histogram) -> list[tuple[str, ...]]:
    # prometheus_client has no public way to list a metric's children.
    return [tuple(labels) for labels in metric._metrics]


def count_kube_requests(api: Any) -> None:
    """Counts every request the Kubernetes client `api` makes (wraps its call_api)."""
    original = api.call_api

    def counted(resource_path: str, method: str, *args: Any, **kwargs: Any) -> Any:
        KUBE_REQUESTS.labels(method).inc()
        return original(resource_path, method, *args, **kwargs)

    api.call_api = counted


def serve(port: int, addr: str = "0.0.0.0") -> None:
    start_http_server(port, addr=addr, registry=REGISTRY)
