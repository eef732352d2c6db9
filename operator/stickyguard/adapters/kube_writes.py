"""Plan -> Kubernetes API calls (the imperative shell). Every call is idempotent: applying the
same action twice leaves the same pod, and a pod that vanished is not an error.

Every write is a server-side apply with field manager `stickyguard` touching only stickyguard's
fields (adapters/ssa.py says how, and where `force` is used): a reconciler applying the same
pods or nodes neither conflicts with it nor undoes a drain.

Every single write is preceded by the leadership fence (`fence`, raising NotLeader), so an
actuator whose replica lost its lease mid-plan stops before its next write; NotLeader is not
caught here: it ends the whole cycle."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import urllib3
from kubernetes import client
from kubernetes.client.rest import ApiException

from stickyguard.adapters import ssa
from stickyguard.adapters.kube_reads import pod_view
from stickyguard.core.drain_methods import PodWrite, method_named, recorded_method
from stickyguard.core.names import (
    CONTAINED,
    CORDON_REASON,
    CORDONED_BY,
    DELETION_COST,
    DRAIN_METHOD,
    DRAIN_REASON,
    DRAINED_AT,
    DRAINED_BY,
    ISOLATED_AT,
    POD_TEMPLATE_HASH,
    UNDRAIN,
    rfc3339,
)
from stickyguard.core.planner import (
    COMPLETE_DRAIN,
    COMPLETE_ISOLATE,
    CONTAIN,
    CORDON,
    DRAIN,
    EVICT,
    ISOLATE,
    MARK_SERVING,
    RESTORE,
    UNCORDON,
    Action,
)
from stickyguard.core.policy import Policy
from stickyguard.core.problems import ApiFailureKind, api_failure_kind

OWNED_ANNOTATIONS = (
    DRAINED_BY,
    DRAINED_AT,
    DRAIN_REASON,
    DRAIN_METHOD,
    UNDRAIN,
    ISOLATED_AT,
    CONTAINED,
)


@dataclass(frozen=True)
class Outcome:
    action: Action
    done: bool
    detail: str = ""
    failure: ApiFailureKind | None = None  # why it was not done (None when done)


def _no_fence() -> None:
    return None


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _conditions(pod: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {c["type"]: c for c in (pod.get("status") or {}).get("conditions") or []}


class Actuator:
    def __init__(
        self,
        api: client.ApiClient,
        fence: Callable[[], None] = _no_fence,
        now: float | None = None,
    ) -> None:
        """`now`: the time of the cycle whose plan it carries out, recorded as a drain's
        drained-at (the time status.recentActions gives the drain); the clock without it."""
        self.api = api
        self.core = client.CoreV1Api(api)
        self.fence = fence
        self.now = now

    def _stamp(self) -> str:
        return rfc3339(self.now) if self.now is not None else _now()

    def _pod(self, ns: str, pod: str) -> dict[str, Any]:
        obj: dict[str, Any] = self.api.sanitize_for_serialization(
            self.core.read_namespaced_pod(pod, ns)
        )
        return obj

    def _apply_pod(
        self, ns: str, pod: str, changes: Mapping[str, Any], *, force: bool = True
    ) -> dict[str, Any]:
        """Applies stickyguard's fields of a pod with `changes` merged in (adapters/ssa.py);
        fields others own that the changes remove are taken over first."""

        def patch(body: dict[str, Any], forced: bool) -> Any:
            self.fence()
            return self.core.patch_namespaced_pod(
                pod,
                ns,
                body,
                field_manager=ssa.MANAGER,
                force=forced,
                _content_type=ssa.APPLY,
            )

        out: dict[str, Any] = self.api.sanitize_for_serialization(
            ssa.apply_changes(self._pod(ns, pod), changes, patch, force=force)
        )
        return out

    def _apply_condition(self, current: Mapping[str, Any], body: Mapping[str, Any]) -> None:
        """Applies the readiness-gate condition on the status subresource: stickyguard's
        whole intent there is its one condition (a list-map entry keyed by type, so the
        kubelet's conditions are not touched). Its lastTransitionTime changes only when its
        status does."""
        meta = current["metadata"]
        conditions = []
        for c in body["status"]["conditions"]:
            c = dict(c)
            before = _conditions(current).get(c["type"]) or {}
            same = before.get("status") == c["status"] and before.get("lastTransitionTime")
            c["lastTransitionTime"] = before["lastTransitionTime"] if same else _now()
            conditions.append(c)
        self.fence()
        self.core.patch_namespaced_pod_status(
            meta["name"],
            meta["namespace"],
            ssa.apply_body(
                "v1", "Pod", meta["name"], meta["namespace"], {"status": {"conditions": conditions}}
            ),
            field_manager=ssa.MANAGER,
            force=True,  # the condition type is stickyguard's by name
            _content_type=ssa.APPLY,
        )

    def _write(self, ns: str, pod: str, writes: Sequence[PodWrite]) -> None:
        current = self._pod(ns, pod)
        for w in writes:
            if w.target == "status":
                self._apply_condition(current, w.body)
            else:
                current = self._apply_pod(ns, pod, w.body)

    def _recorded(self, ns: str, pod: str) -> tuple[dict[str, str], Any]:
        p = self.core.read_namespaced_pod(pod, ns)
        return dict(p.metadata.annotations or {}), pod_view(p)

    def deletion_cost(self, ns: str, pod: str, cost: int) -> None:
        """Sets controller.kubernetes.io/pod-deletion-cost without force: a cost the pod
        template or another tool sets is theirs (a 409 Conflict), and stays."""
        self._apply_pod(
            ns, pod, {"metadata": {"annotations": {DELETION_COST: str(cost)}}}, force=False
        )

    def drain(self, policy: Policy, a: Action) -> None:
        method = method_named(policy.actions.drain.method)
        record = {
            DRAINED_BY: policy.name,
            DRAINED_AT: self._stamp(),
            DRAIN_REASON: a.reason[:500],
            DRAIN_METHOD: method.name,
        }
        message = f"drained by StickyPolicy {policy.name}: {a.reason}"
        self._write(policy.namespace, a.pod, method.drain(record, message))

    def contain(self, policy: Policy, a: Action) -> None:
        """A drain that records the version it contains (restored when that version is
        current again and no longer contained; see core.containment)."""
        method = method_named(policy.actions.drain.method)
        record = {
            DRAINED_BY: policy.name,
            DRAINED_AT: self._stamp(),
            DRAIN_REASON: a.reason[:500],
            DRAIN_METHOD: method.name,
            CONTAINED: a.version,
        }
        message = f"contained by StickyPolicy {policy.name}: {a.reason}"
        self._write(policy.namespace, a.pod, method.drain(record, message[:1000]))

    def complete_drain(self, policy: Policy, a: Action) -> None:
        """Repeats the recorded drain's writes; the record (when, why, how) stays as it was."""
        notes, view = self._recorded(policy.namespace, a.pod)
        method = recorded_method(notes.get(DRAIN_METHOD), view)
        record = {DRAINED_BY: policy.name, DRAIN_METHOD: method.name}
        message = f"drained by StickyPolicy {policy.name}: {a.reason}"
        self._write(policy.namespace, a.pod, method.drain(record, message))

    def restore(self, namespace: str, owner: str, a: Action) -> None:
        """Undoes whatever method the pod records, not its policy's current one (so a policy
        that changed method, or no longer parses, restores its pods too)."""
        notes, view = self._recorded(namespace, a.pod)
        method = recorded_method(notes.get(DRAIN_METHOD), view)
        message = f"restored by StickyPolicy {owner}: {a.reason}"
        cleared: dict[str, None] = dict.fromkeys(OWNED_ANNOTATIONS)
        self._write(namespace, a.pod, method.restore(cleared, message))

    def mark_serving(self, policy: Policy, a: Action) -> None:
        method = method_named(policy.actions.drain.method)
        message = f"serving under StickyPolicy {policy.name}"
        self._write(policy.namespace, a.pod, method.mark_serving(message))

    def evict(self, policy: Policy, a: Action) -> str:
        body = client.V1Eviction(
            metadata=client.V1ObjectMeta(name=a.pod, namespace=policy.namespace)
        )
        self.fence()
        self.core.create_namespaced_pod_eviction(a.pod, policy.namespace, body)
        return "evicted"

    def isolate(self, policy: Policy, a: Action) -> None:
        # Without its pod-template-hash the pod no longer matches its ReplicaSet, which
        # releases it and starts a replacement at once; the pod stays (drained) for forensics.
        # The label belongs to the ReplicaSet controller: it is taken over (same value), then
        # left out with the record added in the same apply, so there is no half-done state.
        self._apply_pod(
            policy.namespace,
            a.pod,
            {
                "metadata": {
                    "labels": {POD_TEMPLATE_HASH: None},
                    "annotations": {ISOLATED_AT: _now()},
                }
            },
        )

    def complete_isolate(self, policy: Policy, a: Action) -> None:
        # The first apply took the label over (placeholder and record at once); leaving it
        # out of stickyguard's fields now removes it.
        self._apply_pod(
            policy.namespace, a.pod, {"metadata": {"labels": {POD_TEMPLATE_HASH: None}}}
        )

    def _apply_node(self, node: str, changes: Mapping[str, Any], *, force: bool) -> None:
        def patch(body: dict[str, Any], forced: bool) -> Any:
            self.fence()
            return self.core.patch_node(
                node, body, field_manager=ssa.MANAGER, force=forced, _content_type=ssa.APPLY
            )

        current = self.api.sanitize_for_serialization(self.core.read_node(node))
        ssa.apply_changes(current, changes, patch, force=force)

    def cordon(self, policy: Policy, node: str, reason: str) -> None:
        # One apply: unschedulable and the record together. Forced: the policy asks for it.
        self._apply_node(
            node,
            {
                "spec": {"unschedulable": True},
                "metadata": {
                    "annotations": {
                        CORDONED_BY: f"{policy.namespace}/{policy.name}",
                        CORDON_REASON: reason[:500],
                    }
                },
            },
            force=True,
        )

    def uncordon(self, node: str) -> None:
        # Undoes stickyguard's cordon (as before server-side apply: schedulable again).
        self._apply_node(
            node,
            {
                "spec": {"unschedulable": None},
                "metadata": {"annotations": {CORDONED_BY: None, CORDON_REASON: None}},
            },
            force=True,
        )

    def apply(self, policy: Policy, a: Action) -> Outcome:
        return self._guarded(a, lambda: self._perform(policy, a))

    def restore_for(self, namespace: str, owner: str, a: Action) -> Outcome:
        """A restore on behalf of a policy that may be gone (its finalizer)."""
        return self._guarded(a, lambda: self.restore(namespace, owner, a))

    def _guarded(self, a: Action, perform: Callable[[], None]) -> Outcome:
        try:
            perform()
        except ApiException as e:
            kind = api_failure_kind(e.status, eviction=a.kind == EVICT)
            if kind == ApiFailureKind.GONE:
                return Outcome(a, False, "pod is gone", kind)
            if kind == ApiFailureKind.DISRUPTION_BUDGET:
                return Outcome(
                    a, False, "eviction refused by a PodDisruptionBudget; will retry", kind
                )
            return Outcome(a, False, f"API error {e.status} {e.reason}: {_body(e)}", kind)
        except (OSError, urllib3.exceptions.HTTPError) as e:
            # The apiserver went away mid-plan: this step is retried (it is idempotent).
            return Outcome(
                a, False, f"{type(e).__name__}: {str(e)[:200]}", ApiFailureKind.UNAVAILABLE
            )
        return Outcome(a, True)

    def _perform(self, policy: Policy, a: Action) -> None:
        if a.kind == MARK_SERVING:
            self.mark_serving(policy, a)
        elif a.kind == DRAIN:
            self.drain(policy, a)
        elif a.kind == CONTAIN:
            self.contain(policy, a)
        elif a.kind == COMPLETE_DRAIN:
            self.complete_drain(policy, a)
        elif a.kind == RESTORE:
            self.restore(policy.namespace, policy.name, a)
        elif a.kind == EVICT:
            self.evict(policy, a)
        elif a.kind == ISOLATE:
            self.isolate(policy, a)
        elif a.kind == COMPLETE_ISOLATE:
            self.complete_isolate(policy, a)
        elif a.kind == CORDON:
            self.cordon(policy, a.node, a.reason)
        elif a.kind == UNCORDON:
            self.uncordon(a.node)
        else:
            raise ValueError(f"unknown action {a.kind}")


def _body(e: ApiException) -> str:
    text = str(e.body or "")
    return text[:300]
