"""The `generic` preset: an app's own `http_requests_total` with a `code` label."""

from stickyguard.core.presets.base import CounterPreset

PRESET = CounterPreset(
    "generic", "pod", "http_requests_total", 'namespace="{namespace}"', 'code=~"5.."'
)
