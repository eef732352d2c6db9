"""What a signal preset is: the query templates of one metrics source (a request counter with a
label that marks bad responses, and the label that names the pod), or none at all when the
policy brings its own queries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class SignalPreset(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def pod_label(self) -> str:
        """The series label that names the pod."""

    @property
    def needs_queries(self) -> bool:
        """True when the policy must give `queries.total` and `queries.bad` itself."""

    def templates(self) -> dict[str, str]:
        """Signal -> query template (total, bad, freshness), with the placeholders of
        core.promql; empty when the policy gives its own."""


@dataclass(frozen=True)
class CounterPreset:
    """A request counter whose bad responses a label matcher picks out."""

    name: str
    pod_label: str
    metric: str
    matchers: str  # fixed matchers before {selector}
    bad_matcher: str
    needs_queries: bool = False

    @property
    def series(self) -> str:
        inner = ",".join(m for m in (self.matchers, "{selector}") if m)
        return f"{self.metric}{{{inner}}}"

    def templates(self) -> dict[str, str]:
        bad_series = self.series[:-1] + f",{self.bad_matcher}}}"
        return {
            "total": f"sum by ({{pod_label}}) (rate({self.series}[{{window}}]))",
            "bad": f"sum by ({{pod_label}}) (rate({bad_series}[{{window}}]))",
            # Newest sample time per pod: a pod whose series stopped is stale, not healthy.
            "freshness": f"max by ({{pod_label}}) (timestamp({self.series}))",
            # The raw counters: their differences between evaluations are each interval's
            # exact events for the sequential detector (optional: without them it shares out
            # the windows above).
            "totalCounter": f"sum by ({{pod_label}}) ({self.series})",
            "badCounter": f"sum by ({{pod_label}}) ({bad_series})",
        }
