"""Plan -> Kubernetes API calls (the imperative shell). Every call is idempotent: applying the
same action twice leaves the same pod, and a pod that vanished is not an error."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from stickyguard.cluster import (
    CORDONED_BY,
    DRAIN_REASON,
    DRAINED_AT,
    DRAINED_BY,
    ISOLATED_AT,
    UNDRAIN,
)
from stickyguard.planner import CORDON, DRAIN, EVICT, ISOLATE, MARK_SERVING, RESTORE, Action
from stickyguard.policy import SERVING, Policy

OWNED_ANNOTATIONS = (DRAINED_BY, DRAINED_AT, DRAIN_REASON, UNDRAIN, ISOLATED_AT)


@dataclass(frozen=True)
class Outcome:
    action: Action
    done: bool
    detail: str = ""


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Actuator:
    def __init__(self, api: client.ApiClient) -> None:
        self.core = client.CoreV1Api(api)

    def _set_condition(self, ns: str, pod: str, value: bool, reason: str, message: str) -> None:
        self.core.patch_namespaced_pod_status(
            pod,
            ns,
            {
                "status": {
                    "conditions": [
                        {
                            "type": SERVING,
                            "status": "True" if value else "False",
                            "reason": reason,
                            "message": message[:1000],
                            "lastTransitionTime": _now(),
                        }
                    ]
                }
            },
        )

    def _patch_meta(
        self, ns: str, pod: str, labels: dict[str, Any] | None, annotations: dict[str, Any]
    ) -> None:
        meta: dict[str, Any] = {"annotations": annotations}
        if labels is not None:
            meta["labels"] = labels
        self.core.patch_namespaced_pod(pod, ns, {"metadata": meta})

    def drain(self, policy: Policy, a: Action) -> None:
        notes = {DRAINED_BY: policy.name, DRAINED_AT: _now(), DRAIN_REASON: a.reason[:500]}
        if policy.actions.drain.method == "ReadinessGate":
            # Record first: a crash between the two writes leaves a pod marked drained, which
            # the next cycle sees and finishes (sets the condition False) instead of forgetting.
            self._patch_meta(policy.namespace, a.pod, None, notes)
            self._set_condition(
                policy.namespace,
                a.pod,
                False,
                "Drained",
                f"drained by StickyPolicy {policy.name}: {a.reason}",
            )
        else:
            # One write: the label the Service selects on goes, the record comes.
            self._patch_meta(policy.namespace, a.pod, {SERVING: None}, notes)

    def restore(self, policy: Policy, a: Action) -> None:
        cleared: dict[str, Any] = dict.fromkeys(OWNED_ANNOTATIONS)
        if policy.actions.drain.method == "ReadinessGate":
            self._set_condition(
                policy.namespace,
                a.pod,
                True,
                "Serving",
                f"restored by StickyPolicy {policy.name}: {a.reason}",
            )
            self._patch_meta(policy.namespace, a.pod, None, cleared)
        else:
            self._patch_meta(policy.namespace, a.pod, {SERVING: "true"}, cleared)

    def evict(self, policy: Policy, a: Action) -> str:
        body = client.V1Eviction(
            metadata=client.V1ObjectMeta(name=a.pod, namespace=policy.namespace)
        )
        self.core.create_namespaced_pod_eviction(a.pod, policy.namespace, body)
        return "evicted"

    def isolate(self, policy: Policy, a: Action) -> None:
        # Without its pod-template-hash the pod no longer matches its ReplicaSet, which
        # releases it and starts a replacement at once; the pod stays (drained) for forensics.
        self._patch_meta(
            policy.namespace, a.pod, {"pod-template-hash": None}, {ISOLATED_AT: _now()}
        )

    def cordon(self, policy: Policy, node: str, reason: str) -> None:
        self.core.patch_node(
            node,
            {
                "spec": {"unschedulable": True},
                "metadata": {
                    "annotations": {
                        CORDONED_BY: f"{policy.namespace}/{policy.name}",
                        "stickyguard.dev/cordon-reason": reason[:500],
                    }
                },
            },
        )

    def uncordon(self, node: str) -> None:
        self.core.patch_node(
            node,
            {
                "spec": {"unschedulable": False},
                "metadata": {
                    "annotations": {CORDONED_BY: None, "stickyguard.dev/cordon-reason": None}
                },
            },
        )

    def apply(self, policy: Policy, a: Action) -> Outcome:
        try:
            if a.kind == MARK_SERVING:
                self._set_condition(
                    policy.namespace,
                    a.pod,
                    True,
                    "Serving",
                    f"serving under StickyPolicy {policy.name}",
                )
            elif a.kind == DRAIN:
                self.drain(policy, a)
            elif a.kind == RESTORE:
                self.restore(policy, a)
            elif a.kind == EVICT:
                self.evict(policy, a)
            elif a.kind == ISOLATE:
                self.isolate(policy, a)
            elif a.kind == CORDON:
                self.cordon(policy, a.node, a.reason)
            else:
                raise ValueError(f"unknown action {a.kind}")
        except ApiException as e:
            if e.status == 404:
                return Outcome(a, False, "pod is gone")
            if e.status == 429 and a.kind == EVICT:
                return Outcome(a, False, "eviction refused by a PodDisruptionBudget; will retry")
            return Outcome(a, False, f"API error {e.status} {e.reason}: {_body(e)}")
        return Outcome(a, True)


def _body(e: ApiException) -> str:
    text = str(e.body or "")
    return text[:300]
