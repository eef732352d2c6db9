"""Signal presets behind one interface (base.SignalPreset), one module each, and their registry.
Adding a preset: a new module with its PRESET, one line in PRESETS, and its name in the CRD's
enum."""

from __future__ import annotations

from stickyguard.core.presets import custom, generic, haproxy, istio, linkerd
from stickyguard.core.presets.base import CounterPreset, SignalPreset

PRESETS: dict[str, SignalPreset] = {
    p.name: p for p in (generic.PRESET, istio.PRESET, linkerd.PRESET, haproxy.PRESET, custom.PRESET)
}

__all__ = ["PRESETS", "CounterPreset", "SignalPreset"]
