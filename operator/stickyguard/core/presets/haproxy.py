"""The `haproxy` preset: HAProxy's built-in exporter, one `server` per pod."""

from stickyguard.core.presets.base import CounterPreset

PRESET = CounterPreset("haproxy", "server", "haproxy_server_http_responses_total", "", 'code="5xx"')
