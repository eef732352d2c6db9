"""Drain methods behind one interface (base.DrainMethod), one module each, and their registry.
Adding a method: a new module implementing DrainMethod, one line in METHODS, and its name in
the CRD's enum."""

from __future__ import annotations

from stickyguard.core.drain_methods.base import DrainMethod, PodView, PodWrite
from stickyguard.core.drain_methods.readiness_gate import ReadinessGate
from stickyguard.core.drain_methods.service_label import ServiceLabel
from stickyguard.core.names import SERVING

METHODS: dict[str, DrainMethod] = {m.name: m for m in (ReadinessGate(), ServiceLabel())}

__all__ = ["METHODS", "DrainMethod", "PodView", "PodWrite", "method_named", "recorded_method"]


def method_named(name: str) -> DrainMethod:
    """The method a valid policy names (the policy parser only accepts registered names)."""
    return METHODS[name]


def recorded_method(recorded: str | None, pod: PodView) -> DrainMethod:
    """The method a pod was drained with: its drain-method annotation, else (pods drained
    before the annotation existed) ReadinessGate when the pod carries the gate."""
    if recorded in METHODS:
        return METHODS[recorded]
    return METHODS["ReadinessGate" if SERVING in pod.readiness_gates else "ServiceLabel"]
