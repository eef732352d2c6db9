"""The `istio` preset: the sidecar's `istio_requests_total`, as the destination reports it."""

from stickyguard.core.presets.base import CounterPreset

PRESET = CounterPreset(
    "istio",
    "pod",
    "istio_requests_total",
    'reporter="destination",namespace="{namespace}"',
    'response_code=~"5.."',
)
