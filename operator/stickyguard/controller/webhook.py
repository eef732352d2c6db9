"""Readiness-gate injection (a mutating admission webhook served by kopf): new pods that a
policy draining with a method that marks new pods (ReadinessGate) selects get
`readinessGates: [{conditionType: stickyguard.dev/serving}]`."""

from __future__ import annotations

from typing import Any

import kopf

from stickyguard.controller.state import WebhookConfig, state
from stickyguard.core.drain_methods import method_named
from stickyguard.core.names import GROUP, PLURAL, SERVING, VERSION
from stickyguard.core.policy import LabelSelector, PolicyError, parse_policy


@kopf.index(GROUP, VERSION, PLURAL)
def gate_selectors(body: kopf.Body, **_: Any) -> dict[str, LabelSelector] | None:
    """Namespace -> selectors of the valid policies whose drain method gates new pods."""
    try:
        policy = parse_policy(dict(body))
    except PolicyError:
        return None
    if not method_named(policy.actions.drain.method).marks_new_pods:
        return None
    return {policy.namespace: policy.selector}


def inject_readiness_gate(**kwargs: Any) -> None:
    """The operator then keeps the condition True while the pod should serve (fail closed: a
    gated pod is not Ready until the operator says so)."""
    body: kopf.Body = kwargs["body"]
    patch: kopf.Patch = kwargs["patch"]
    selectors: kopf.Index[str, LabelSelector] = kwargs["gate_selectors"]
    namespace = body.get("metadata", {}).get("namespace") or ""
    labels = body.get("metadata", {}).get("labels") or {}
    if not any(sel.matches(labels) for sel in selectors.get(namespace, [])):
        return
    gates = list(body.get("spec", {}).get("readinessGates") or [])
    if any(g.get("conditionType") == SERVING for g in gates):
        return
    patch.spec["readinessGates"] = [*gates, {"conditionType": SERVING}]


def enable_webhook(hook: WebhookConfig) -> None:
    """Registers the admission handler; kopf refuses to start with admission handlers and no
    webhook server, so it exists only when the operator serves the webhook."""
    state().webhook = hook
    kopf.on.mutate("v1", "pods", id="readiness-gate", operation="CREATE", side_effects=False)(
        inject_readiness_gate
    )
