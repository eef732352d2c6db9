"""A pod whose freshness is unknown is stale (the reader's rule, on plain query answers)."""

from __future__ import annotations

from stickyguard.adapters.prometheus import PrometheusReader, Vector
from stickyguard.core.policy import parse_policy

POLICY = parse_policy(
    {
        "metadata": {"name": "p", "namespace": "ns"},
        "spec": {"selector": {"matchLabels": {"app": "w"}}},
    }
)


class Answers(PrometheusReader):
    """The reader with canned answers per signal instead of HTTP (the rule under test is what
    it does with them)."""

    def __init__(self, answers: dict[str, dict[str, float]]) -> None:
        self.answers, self.queries_run, self.on_query = answers, 0, None

    def query(self, promql_text: str, at: float | None, pod_label: str) -> Vector:
        for signal, text in POLICY.prometheus.rendered_queries("ns").items():
            if text == promql_text:
                return Vector(self.answers.get(signal, {}))
        raise AssertionError(promql_text)


def test_a_pod_with_a_rate_but_no_freshness_sample_is_stale() -> None:
    now = 1_000_000.0
    reader = Answers(
        {
            "total": {"a": 2.0, "b": 2.0, "c": 2.0},
            "bad": {"a": 0.1},
            "freshness": {"a": now - 5, "b": now - 900},  # c: no sample at all
        }
    )
    snap = reader.snapshot(POLICY, now, ["a", "b", "c"])
    assert snap.stale_pods == ("b", "c")
    by_pod = {s.pod: s for s in snap.samples}
    assert by_pod["a"].total is not None
    assert by_pod["c"].total is None and by_pod["c"].bad is None
