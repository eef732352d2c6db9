"""Helpers shared by the tests: waiting on real components, building lab objects."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from stickyguard.core.names import DRAINED_BY, SERVING

T = TypeVar("T")


def wait_for(
    fn: Callable[[], T],
    timeout: float = 30.0,
    interval: float = 0.1,
    what: str = "condition",
    detail: Callable[[], object] | None = None,
) -> T:
    """Polls fn until it returns something truthy; raises with the last value on timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = fn()
        except Exception as e:  # the component may be mid-update; keep the cause for the message
            last = e
        else:
            if last:
                return last
        time.sleep(interval)
    extra = f"\n{detail()}" if detail else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}{extra}")


def wait_record_cleared(
    core: Any, namespace: str, pod: str, detail: Callable[[], object] | None = None
) -> None:
    """Waits until `pod` carries no drain record: a restore clears it last, after the pod
    serves again."""
    wait_for(
        lambda: (
            DRAINED_BY not in (core.read_namespaced_pod(pod, namespace).metadata.annotations or {})
        ),
        timeout=15,
        what=f"{pod}: drain record cleared",
        detail=detail,
    )


def gated_deployment(
    name: str,
    replicas: int,
    gate: str = SERVING,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    labels = labels or {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {
                    "readinessGates": [{"conditionType": gate}],
                    "containers": [{"name": "app", "image": "example.invalid/app:1"}],
                },
            },
        },
    }


def service(name: str, selector: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": selector, "ports": [{"port": 80, "targetPort": 8080}]},
    }
