"""Per-pod session and quality metrics for stickyguard, for Python apps (copy this file; it
needs only prometheus_client). See docs/metrics-contract.md.

    from sticky_metrics import StickyMetrics
    sticky = StickyMetrics()                       # registers the metrics below
    ...
    sticky.observe(session_id, ok=answer_was_good)  # once per request

Exports
    app_answers_total{quality="ok"|"degraded"}   counter: every answer, by quality
    app_sessions_active                          gauge: sessions seen in the last `window` s
    app_sessions_degraded                        gauge: those of them that got a bad answer
Prometheus adds the `pod` label when it scrapes the pod (kubernetes_sd / PodMonitor).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge


class StickyMetrics:
    def __init__(
        self,
        window: float = 60.0,
        registry: CollectorRegistry = REGISTRY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window, self.clock = window, clock
        self._seen: dict[str, tuple[float, bool]] = {}  # session -> (last seen, ever degraded)
        self._lock = threading.Lock()
        self.answers = Counter("app_answers", "Answers by quality.", ["quality"], registry=registry)
        active = Gauge("app_sessions_active", "Sessions seen recently.", registry=registry)
        degraded = Gauge(
            "app_sessions_degraded",
            "Recent sessions that got a degraded answer.",
            registry=registry,
        )
        # Computed at scrape time, so the gauges are never stale between requests.
        active.set_function(lambda: float(self.sessions()[0]))
        degraded.set_function(lambda: float(self.sessions()[1]))

    def observe(self, session: str, ok: bool) -> None:
        self.answers.labels("ok" if ok else "degraded").inc()
        with self._lock:
            _, was_bad = self._seen.get(session, (0.0, False))
            self._seen[session] = (self.clock(), was_bad or not ok)

    def sessions(self) -> tuple[int, int]:
        """(active, degraded) sessions within the window; forgets older ones."""
        cutoff = self.clock() - self.window
        with self._lock:
            for sid in [s for s, (t, _) in self._seen.items() if t < cutoff]:
                del self._seen[sid]
            return len(self._seen), sum(1 for _, bad in self._seen.values() if bad)
