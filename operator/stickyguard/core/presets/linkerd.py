"""The `linkerd` preset: the proxy's inbound `response_total`, classified by Linkerd."""

from stickyguard.core.presets.base import CounterPreset

PRESET = CounterPreset(
    "linkerd",
    "pod",
    "response_total",
    'direction="inbound",namespace="{namespace}"',
    'classification="failure"',
)
