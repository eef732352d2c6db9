"""The `custom` preset: no templates; the policy gives `queries.total` and `queries.bad`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CustomPreset:
    name: str = "custom"
    pod_label: str = "pod"
    needs_queries: bool = True

    def templates(self) -> dict[str, str]:
        return {}


PRESET = CustomPreset()
