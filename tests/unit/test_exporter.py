"""The lab's synthetic exporter: HTTP-200 quality errors, per-label traffic, pod labels on
series (what the canary-tool tests rely on to be able to fail)."""

from __future__ import annotations

import re

from stickyguard_lab.exporter import SyntheticExporter


def series(text: str, name: str) -> dict[str, float]:
    return {
        m.group(1): float(m.group(2))
        for m in re.finditer(rf"^{name}\{{(.*?)\}} (\S+)$", text, re.M)
    }


def test_quality_errors_are_http_200_and_counted_as_degraded_answers() -> None:
    e = SyntheticExporter("ns", "shop", rps=100, default_ratio=0.0, quality=True)
    try:
        labels = {"version": "2.0", "app.kubernetes.io/name": "shop"}
        e.set_pods({"good": True, "bad": True}, {"good": {"version": "1.0"}, "bad": labels})
        e.set_label_ratio("version", "2.0", 0.25)
        e.set_label_rps("version", "2.0", 10)
        e.pods["good"].last -= 10  # ten seconds of traffic
        e.pods["bad"].last -= 10
        text = e.render()
    finally:
        e.stop()
    requests = series(text, "http_requests_total")
    assert all('code="200"' in k for k in requests), "every answer is HTTP 200"
    answers = series(text, "app_answers_total")
    bad = {k: v for k, v in answers.items() if 'pod="bad"' in k}
    degraded = next(v for k, v in bad.items() if 'quality="degraded"' in k)
    ok = next(v for k, v in bad.items() if 'quality="ok"' in k)
    assert abs(degraded + ok - 100) < 1 and abs(degraded / (degraded + ok) - 0.25) < 0.01
    good_total = sum(v for k, v in answers.items() if 'pod="good"' in k)
    assert abs(good_total - 1000) < 10
    assert not any('quality="degraded"' in k and v > 0 for k, v in answers.items() if "good" in k)


def test_series_labels_copy_pod_labels_under_prometheus_names() -> None:
    e = SyntheticExporter("ns", "shop", series_labels=("app.kubernetes.io/name",))
    try:
        e.set_pods({"p": True}, {"p": {"app.kubernetes.io/name": "shop", "other": "x"}})
        text = e.render()
    finally:
        e.stop()
    assert 'app_kubernetes_io_name="shop"' in text and "other" not in text
