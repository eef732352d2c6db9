"""Running the real operator in tests: as the shipped ServiceAccount, as a child process."""

from __future__ import annotations

from typing import Any

from kubernetes import client

GVR = ("stickyguard.dev", "v1alpha1", "stickypolicies")


def policy_body(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "selector": {"matchLabels": {"app": "web"}},
        "prometheus": {"window": "10s"},
        "detection": {"intervalSeconds": 5, "minRequests": 50, "consecutive": 2},
        "actions": {
            "mode": "Enforce",
            "drain": {"method": "ReadinessGate", "drainTimeoutSeconds": 10, "evict": True},
        },
        "safety": {"maxDrainedPercent": 25, "minReadyPods": 2, "cooldownSeconds": 0},
    }
    for key, value in spec.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return {
        "apiVersion": "stickyguard.dev/v1alpha1",
        "kind": "StickyPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": base,
    }


def get_policy(custom: client.CustomObjectsApi, ns: str, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = custom.get_namespaced_custom_object(GVR[0], GVR[1], ns, GVR[2], name)
    return obj


def condition(obj: dict[str, Any], ctype: str) -> dict[str, Any] | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c["type"] == ctype:
            return dict(c)
    return None


def events(
    core: client.CoreV1Api, ns: str, reason: str | None = None, kind: str = "StickyPolicy"
) -> list[Any]:
    """Events about objects of `kind` (the policy by default; actions are also posted on pods)."""
    items = core.list_namespaced_event(ns).items
    return [
        e
        for e in items
        if (reason is None or e.reason == reason) and e.involved_object.kind == kind
    ]
