"""Synthetic per-pod counters in each preset's format, for backfilled Prometheus tests."""

from __future__ import annotations

from collections.abc import Mapping

from stickyguard_lab.prom import Series

T0 = 1_750_000_000.0
STEP = 15.0
SPAN = 600.0
AT = T0 + SPAN  # evaluation time of the tests


def _counter(rate: float) -> list[tuple[float, float]]:
    n = int(SPAN / STEP)
    return [(T0 + i * STEP, rate * i * STEP) for i in range(n + 1)]


def requests(
    preset: str, namespace: str, app: str, pods: Mapping[str, tuple[float, float]]
) -> list[Series]:
    """pods: name -> (requests per second, bad per second), as `preset` would export them."""
    out = []
    for pod, (rate, bad) in pods.items():
        good = rate - bad
        if preset == "generic":
            base = {"namespace": namespace, "app": app, "pod": pod}
            out += [
                Series("http_requests_total", {**base, "code": "200"}, _counter(good)),
                Series("http_requests_total", {**base, "code": "503"}, _counter(bad)),
            ]
        elif preset == "istio":
            base = {"namespace": namespace, "app": app, "pod": pod, "reporter": "destination"}
            out += [
                Series("istio_requests_total", {**base, "response_code": "200"}, _counter(good)),
                Series("istio_requests_total", {**base, "response_code": "500"}, _counter(bad)),
                # the source-side reports of the same requests must not be counted twice
                Series(
                    "istio_requests_total",
                    {**base, "reporter": "source", "response_code": "500"},
                    _counter(rate),
                ),
            ]
        elif preset == "linkerd":
            base = {"namespace": namespace, "app": app, "pod": pod, "direction": "inbound"}
            out += [
                Series("response_total", {**base, "classification": "success"}, _counter(good)),
                Series("response_total", {**base, "classification": "failure"}, _counter(bad)),
            ]
        elif preset == "haproxy":
            base = {"proxy": app, "server": pod}
            out += [
                Series(
                    "haproxy_server_http_responses_total", {**base, "code": "2xx"}, _counter(good)
                ),
                Series(
                    "haproxy_server_http_responses_total", {**base, "code": "5xx"}, _counter(bad)
                ),
            ]
        elif preset == "quality":
            base = {"namespace": namespace, "app": app, "pod": pod}
            out += [
                Series(
                    "app_answers_total", {**base, "quality": "ok", "code": "200"}, _counter(good)
                ),
                Series(
                    "app_answers_total",
                    {**base, "quality": "degraded", "code": "200"},
                    _counter(bad),
                ),
                # every answer, good or degraded, was an HTTP 200
                Series("http_requests_total", {**base, "code": "200"}, _counter(rate)),
            ]
        else:
            raise ValueError(preset)
    return out


def kube_state(namespace: str, app: str, nodes: Mapping[str, str]) -> list[Series]:
    """kube_pod_info / kube_pod_labels for pods -> node."""
    out = []
    for pod, node in nodes.items():
        out.append(
            Series(
                "kube_pod_info",
                {
                    "namespace": namespace,
                    "pod": pod,
                    "node": node,
                    "created_by_kind": "ReplicaSet",
                    "created_by_name": f"{app}-rs",
                },
                [(T0 + i * STEP, 1.0) for i in range(int(SPAN / STEP) + 1)],
            )
        )
        out.append(
            Series(
                "kube_pod_labels",
                {"namespace": namespace, "pod": pod, "label_app": app, "label_version": "v1"},
                [(T0 + i * STEP, 1.0) for i in range(int(SPAN / STEP) + 1)],
            )
        )
    return out
