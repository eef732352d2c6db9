"""Safe PromQL building blocks (pure): label-name checks, string escaping, the series selector
built from a policy, and query-template placeholders (the presets are in core.presets).

No value from a custom resource enters PromQL except through this module: label names must match
Prometheus' grammar and label values are escaped as PromQL string literals, so no CR can inject
PromQL.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")
PLACEHOLDERS = frozenset({"namespace", "selector", "window", "pod_label"})
# A brace holding a bare identifier is a placeholder: PromQL label matchers always hold an
# operator (=, !=, =~, !~), so `{name}` can never be legitimate PromQL.
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def escape_value(value: str) -> str:
    """A PromQL double-quoted string literal holding exactly `value`."""
    out = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{out}"'


def sanitize_label_name(k8s_label: str) -> str:
    """Prometheus' Kubernetes service discovery turns `app.kubernetes.io/name` into
    `app_kubernetes_io_name`; do the same so pod labels map onto series labels."""
    name = re.sub(r"[^a-zA-Z0-9_]", "_", k8s_label)
    return name if LABEL_NAME.match(name) else f"_{name}"


def matcher(labels: Mapping[str, str]) -> str:
    """`a="x",b="y"` (sorted, escaped). Raises ValueError on an invalid label name."""
    parts = []
    for name in sorted(labels):
        if not LABEL_NAME.match(name):
            raise ValueError(f"invalid Prometheus label name {name!r}")
        parts.append(f"{name}={escape_value(labels[name])}")
    return ",".join(parts)


def duration_seconds(text: str) -> float:
    if not DURATION.match(text):
        raise ValueError(f"{text!r} is not a PromQL duration such as 30s, 2m or 1h30m")
    return sum(
        int(n) * _DURATION_UNITS[u] for n, u in re.findall(r"([0-9]+)(ms|s|m|h|d|w|y)", text)
    )


def placeholders(template: str) -> set[str]:
    return set(_PLACEHOLDER.findall(template))


def unknown_placeholders(template: str) -> set[str]:
    return placeholders(template) - PLACEHOLDERS


def render(template: str, *, namespace: str, selector: str, window: str, pod_label: str) -> str:
    """Fills the placeholders. Inputs are validated by the policy model before they get here."""
    values = {
        "namespace": namespace,
        "selector": selector,
        "window": window,
        "pod_label": pod_label,
    }
    unknown = unknown_placeholders(template)
    if unknown:
        raise ValueError(f"unknown placeholder(s) {sorted(unknown)}")
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)
