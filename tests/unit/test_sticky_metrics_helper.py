"""The optional helper for Python apps (contrib/python/sticky_metrics.py) exports the metrics
contract the presets and docs/metrics-contract.md describe."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from prometheus_client import CollectorRegistry, generate_latest

PATH = Path(__file__).resolve().parents[2] / "contrib" / "python" / "sticky_metrics.py"


def helper() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sticky_metrics", PATH)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_answers_and_sessions_within_the_window() -> None:
    now = [1000.0]
    reg = CollectorRegistry()
    m = helper().StickyMetrics(window=60, registry=reg, clock=lambda: now[0])
    m.observe("a", ok=True)
    m.observe("b", ok=False)
    m.observe("b", ok=True)  # once hurt, the session counts as degraded
    text = generate_latest(reg).decode()
    assert 'app_answers_total{quality="ok"} 2.0' in text
    assert 'app_answers_total{quality="degraded"} 1.0' in text
    assert "app_sessions_active 2.0" in text and "app_sessions_degraded 1.0" in text
    now[0] += 61
    m.observe("c", ok=True)
    assert m.sessions() == (1, 0)
