"""Reading per-pod signals from Prometheus into a MetricsSnapshot (the imperative shell).

One query per signal per evaluation, each aggregated by pod; never one query per pod. Every
failure (unreachable, timeout, HTTP error, malformed answer, no series, series without the pod
label, duplicate pods) becomes a named problem in the snapshot: nothing is ever read as zero,
with one deliberate exception: a pod that has a fresh `total` series but no `bad` series had no
bad events (error counters such as code="5xx" only exist once something failed).
"""

from __future__ import annotations

import math
import time as _time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import requests
from prometheus_api_client import PrometheusApiClientException, PrometheusConnect
from urllib3.exceptions import ReadTimeoutError
from urllib3.util.retry import Retry

from stickyguard.core import promql
from stickyguard.core.analysis import MetricsSnapshot, PodMeta, PodSample
from stickyguard.core.policy import Policy
from stickyguard.core.problems import MetricProblem, MetricProblemKind

RATE_SIGNALS = ("total", "bad", "affinityMisses")  # per-second rates, multiplied by the window


class QueryError(RuntimeError):
    """A query failed; `kind` says how (decisions use it), the message says it for people."""

    def __init__(self, message: str, kind: MetricProblemKind = MetricProblemKind.MALFORMED):
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Vector:
    values: dict[str, float]


def parse_vector(result: Any, pod_label: str) -> Vector:
    """Checks the shape of an instant-vector answer and maps pod -> value."""
    if not isinstance(result, list):
        raise QueryError(f"expected an instant vector, got {type(result).__name__}")
    values: dict[str, float] = {}
    for item in result:
        if not isinstance(item, Mapping) or not isinstance(item.get("metric"), Mapping):
            raise QueryError(f"malformed series {str(item)[:120]!r}")
        pod = item["metric"].get(pod_label)
        if not pod:
            raise QueryError(
                f"a series has no {pod_label!r} label; aggregate with "
                f"sum by ({pod_label}) (...): {dict(item['metric'])}",
                MetricProblemKind.NOT_AGGREGATED,
            )
        value = item.get("value")
        if not isinstance(value, list | tuple) or len(value) != 2:
            raise QueryError(f"malformed sample for {pod}: {value!r}")
        try:
            number = float(value[1])
        except (TypeError, ValueError) as e:
            raise QueryError(f"non-numeric sample for {pod}: {value[1]!r}") from e
        if pod in values:
            raise QueryError(
                f"several series for pod {pod}: the query is not aggregated by {pod_label}",
                MetricProblemKind.NOT_AGGREGATED,
            )
        values[str(pod)] = number
    return Vector(values)


def _read_timeout(e: requests.ConnectionError) -> bool:
    reason = getattr(e.args[0], "reason", None) if e.args else None
    return isinstance(reason, ReadTimeoutError)


class PrometheusReader:
    """Runs a policy's queries at one evaluation time."""

    def __init__(
        self, url: str, timeout: float = 10.0, on_query: Callable[[], None] | None = None
    ) -> None:
        self.url = url.rstrip("/")
        self.on_query = on_query  # the operator counts its queries in its own /metrics
        self.timeout = timeout
        # One quick retry at most: a dead Prometheus must fail an evaluation fast (fail static),
        # not stall it for the client's default retries with backoff.
        self.client = PrometheusConnect(
            url=self.url,
            disable_ssl=False,
            timeout=timeout,
            retry=Retry(total=1, backoff_factor=0.1, status_forcelist=()),
        )
        self.queries_run = 0

    def query(self, promql_text: str, at: float | None, pod_label: str) -> Vector:
        params = {"time": f"{at:.3f}"} if at is not None else {}
        self.queries_run += 1
        if self.on_query is not None:
            self.on_query()
        try:
            result = self.client.custom_query(promql_text, params=params, timeout=self.timeout)
        except requests.Timeout as e:
            raise QueryError(
                f"Prometheus at {self.url} timed out after {self.timeout:g}s",
                MetricProblemKind.TIMEOUT,
            ) from e
        except requests.ConnectionError as e:
            if _read_timeout(e):  # retried read timeouts surface as a ConnectionError
                raise QueryError(
                    f"Prometheus at {self.url} timed out after {self.timeout:g}s (retried once)",
                    MetricProblemKind.TIMEOUT,
                ) from e
            raise QueryError(
                f"Prometheus at {self.url} is unreachable: {_short(e)}",
                MetricProblemKind.UNREACHABLE,
            ) from e
        except PrometheusApiClientException as e:
            raise QueryError(
                f"Prometheus at {self.url} answered an error: {_short(e)}",
                MetricProblemKind.SERVER_ERROR,
            ) from e
        except (ValueError, KeyError, TypeError) as e:
            raise QueryError(
                f"Prometheus at {self.url} sent a malformed answer: {_short(e)}",
                MetricProblemKind.MALFORMED,
            ) from e
        except requests.RequestException as e:
            raise QueryError(
                f"Prometheus request failed: {_short(e)}", MetricProblemKind.UNREACHABLE
            ) from e
        return parse_vector(result, pod_label)

    def snapshot(
        self, policy: Policy, at: float | None = None, pods: Iterable[str] | None = None
    ) -> MetricsSnapshot:
        """Reads every signal of the policy. `pods` (from the cluster) are the pods expected;
        a pod with no series shows as having no data."""
        now = at if at is not None else _time.time()
        prom = policy.prometheus
        window = promql.duration_seconds(prom.window)
        queries = prom.rendered_queries(policy.namespace)
        vectors: dict[str, Vector] = {}
        problems: list[MetricProblem] = []
        for signal, text in queries.items():
            try:
                vectors[signal] = self.query(text, now, prom.pod_label)
            except QueryError as e:
                problems.append(MetricProblem(signal, e.kind, str(e)))
        totals = vectors.get("total", Vector({})).values
        if "total" in vectors and not totals:
            problems.append(
                MetricProblem(
                    "total",
                    MetricProblemKind.NO_SERIES,
                    f"no series for the selector ({promql.matcher(prom.series_selector)})",
                )
            )
        stale: set[str] = set()
        if "freshness" in vectors:
            fresh_at = vectors["freshness"].values
            stale = {
                pod
                for pod, ts in fresh_at.items()
                if not math.isfinite(ts) or now - ts > prom.max_staleness_seconds
            }
            # A pod with a rate but no freshness sample has an unknown age: stale, never fresh
            # (a stopped scrape would otherwise be judged on up to a window of old data).
            stale |= set(totals) - set(fresh_at)
        expected = set(pods) if pods is not None else set(totals)

        def get(signal: str, pod: str) -> float | None:
            vec = vectors.get(signal)
            if vec is None or pod in stale:
                return None
            if pod not in vec.values:
                # No bad series for a pod with traffic: none of its answers was bad (yet).
                zero = signal in ("bad", "badCounter") and pod in totals
                return 0.0 if zero else None
            value = vec.values[pod]
            return value * window if signal in RATE_SIGNALS else value

        samples = tuple(
            PodSample(
                pod,
                get("total", pod),
                get("bad", pod),
                get("activeSessions", pod),
                get("degradedSessions", pod),
                get("affinityMisses", pod),
                total_counter=get("totalCounter", pod),
                bad_counter=get("badCounter", pod),
            )
            for pod in sorted(expected)
        )
        return MetricsSnapshot(
            now, window, samples, tuple(problems), queries, tuple(sorted(stale & expected))
        )

    def pod_meta_from_kube_state_metrics(
        self, policy: Policy, at: float | None
    ) -> dict[str, PodMeta]:
        """Pod -> metadata from kube-state-metrics when there is no Kubernetes access:
        kube_pod_info (node, owner) and kube_pod_labels (labels, as label_<name>)."""
        ns = promql.escape_value(policy.namespace)
        info = self.client.custom_query(
            f"kube_pod_info{{namespace={ns}}}", params={"time": f"{at:.3f}"} if at else {}
        )
        labels = self.client.custom_query(
            f"kube_pod_labels{{namespace={ns}}}", params={"time": f"{at:.3f}"} if at else {}
        )
        self.queries_run += 2
        pod_labels: dict[str, dict[str, str]] = {}
        for item in labels:
            m = item.get("metric", {})
            pod_labels[m.get("pod", "")] = {
                k[len("label_") :]: v for k, v in m.items() if k.startswith("label_")
            }
        wanted = {promql.sanitize_label_name(k): v for k, v in policy.selector.match_labels.items()}
        out: dict[str, PodMeta] = {}
        for item in info:
            m = item.get("metric", {})
            pod = m.get("pod")
            if not pod:
                continue
            lbls = pod_labels.get(pod, {})
            if any(lbls.get(k) != v for k, v in wanted.items()):
                continue
            owner = m.get("created_by_name", "") if m.get("created_by_kind") == "ReplicaSet" else ""
            out[pod] = PodMeta(
                pod,
                node=m.get("node", ""),
                version=lbls.get("version", lbls.get("app_kubernetes_io_version", "")),
                replicaset=owner,
                labels=lbls,
            )
        return out


def _short(e: BaseException) -> str:
    text = str(e)
    return text if len(text) < 300 else text[:300] + "..."
