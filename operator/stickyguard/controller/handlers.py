"""The kopf handlers (thin): one timer per StickyPolicy reads the cluster and Prometheus into
snapshots, calls the core's cycle step, performs its plan and writes status and Events; a
finalizer restores drained pods when a policy is deleted; a watch handler keeps every
replica's cache of policies (the gate's verdicts, the owners of overlapping pods).

Only the Lease holder evaluates, and every write is fenced (OperatorState.fence): a replica
that loses its lease mid-cycle stops at its next write, writes no status, and the cycle ends.

Handlers are synchronous, so kopf runs them in its thread pool and the blocking Kubernetes and
Prometheus clients never block kopf's event loop.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any, cast

import kopf
import urllib3
from kubernetes import client
from kubernetes.client.rest import ApiException

from stickyguard.adapters.kube_reads import (
    cordoned_nodes,
    pod_meta,
    pod_state,
    selected_pods,
    strays,
)
from stickyguard.adapters.kube_writes import Actuator
from stickyguard.adapters.lease import NotLeader
from stickyguard.adapters.prometheus import PrometheusReader
from stickyguard.controller import telemetry
from stickyguard.controller.rollout_guard import assess_rollout, guard_rollout, keep_deletion_costs
from stickyguard.controller.state import OperatorState, Published, state
from stickyguard.core import cycle
from stickyguard.core import policy_status as status_mod
from stickyguard.core.analysis import MetricsSnapshot, PodMeta
from stickyguard.core.names import (
    CORDONED_BY,
    DRAINED_BY,
    GROUP,
    ISOLATED_AT,
    KOPF_PREFIX,
    PLURAL,
    VERSION,
    parse_rfc3339,
    rfc3339,
)
from stickyguard.core.ownership import PolicyRef, claims
from stickyguard.core.planner import (
    CONTAIN,
    CORDON,
    EVICT,
    ISOLATE,
    RESTORE,
    Action,
    ActionRecord,
)
from stickyguard.core.policy import LabelSelector, Policy, PolicyError, parse_policy
from stickyguard.core.problems import ApiFailureKind, Held, HoldCause

HEARTBEAT_SECONDS = 60.0  # rewrite an unchanged status at most this often
STRAYS_RELIST_SECONDS = 60.0  # while pods it drained are left outside the selection
log = logging.getLogger("stickyguard")
# One evaluation (reads, plan and writes) at a time per namespace in this process: kopf runs the
# timers of several policies in its thread pool at once, and policies over the same pods (of
# one namespace) share maxDrainedPercent: two that read before either wrote would each spend the
# one slot left. Pod writes happen under the lock, so the next policy reads them. A timer that
# finds its namespace busy does not wait (it would hold one of kopf's threads, and a policy
# whose Prometheus hangs would stall the rest): it tries again at the next 1 s tick.
_NAMESPACES: dict[str, threading.Lock] = {}
_NAMESPACES_LOCK = threading.Lock()


def _namespace_lock(namespace: str) -> threading.Lock:
    with _NAMESPACES_LOCK:
        return _NAMESPACES.setdefault(namespace, threading.Lock())


class NoDiffBase(kopf.DiffBaseStorage):
    """kopf keeps the last handled spec of an object (by default in an annotation) to tell
    create/update/resume causes apart. This operator has no such handlers (its timer reads the
    spec at every evaluation, the delete handler needs no diff), so nothing is kept: the
    operator writes no annotation on a policy that lives in Git, and a GitOps tool never sees
    one it did not write."""

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


@kopf.on.startup()
def _startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    # kopf's retry state of the delete handler (only while a deleted policy's pods are being
    # restored and a restore failed) in our own annotations, not in the CRD's status schema;
    # no diff base at all (NoDiffBase).
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=KOPF_PREFIX)
    settings.persistence.diffbase_storage = NoDiffBase()
    settings.posting.level = logging.WARNING
    settings.scanning.disabled = True  # no need to watch CRDs/namespaces (and no RBAC for it)
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)  # not one line per timer tick
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    settings.watching.server_timeout = 300
    hook = state().webhook
    if hook is not None:
        # TLS only: the apiserver calls the webhook with the CA of the serving certificate.
        settings.admission.server = kopf.WebhookServer(
            addr="0.0.0.0",
            port=hook.port,
            host=hook.host,
            certfile=hook.certfile,
            pkeyfile=hook.keyfile,
        )


@kopf.on.login()
def _login(**_: Any) -> kopf.ConnectionInfo:
    """kopf connects with exactly the credentials of our own client (kubeconfig or in-cluster),
    so both always act as the same identity."""
    cfg = state().api.configuration
    auth = (cfg.api_key or {}).get("authorization") or (cfg.api_key or {}).get("BearerToken")
    scheme, _sep, token = (auth or "").partition(" ")
    return kopf.ConnectionInfo(
        server=cfg.host,
        ca_path=cfg.ssl_ca_cert,
        insecure=not cfg.verify_ssl,
        scheme=scheme or None,
        token=token or None,
        certificate_path=cfg.cert_file,
        private_key_path=cfg.key_file,
    )


def _as_body(raw: dict[str, Any]) -> kopf.Body:
    return kopf.Body(cast(kopf.RawBody, raw))


def _post(body: dict[str, Any], ev: status_mod.Event, namespace: str) -> None:
    state().fence()
    kopf.event(_as_body(body), type=ev.type, reason=ev.reason, message=ev.message)
    if ev.pod:
        pod_ref = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": ev.pod, "namespace": namespace},
        }
        kopf.event(
            _as_body(pod_ref),
            type=ev.type,
            reason=ev.reason,
            message=f"StickyPolicy {body['metadata']['name']}: {ev.message}",
        )


def _write_status(patch: kopf.Patch, old: dict[str, Any], new: dict[str, Any]) -> None:
    for key in old:
        if key not in new:
            patch.status[key] = None  # merge patch: absent means "keep", so clear explicitly
    for key, value in new.items():
        patch.status[key] = value


def _invalid(body: dict[str, Any], patch: kopf.Patch, e: PolicyError, now: float) -> None:
    old = dict(body.get("status") or {})
    generation = body["metadata"].get("generation", 0)
    invalid = {
        "observedGeneration": generation,
        "conditions": [
            {
                "type": "Ready",
                "status": "False",
                "reason": "InvalidPolicy",
                "message": str(e)[:32000],
                "observedGeneration": generation,
                "lastTransitionTime": rfc3339(now),
            }
        ],
    }
    if status_mod.meaningful_conditions(old) != status_mod.meaningful_conditions(invalid):
        state().fence()  # a former leader must not report, even a bad policy
        _write_status(patch, {}, invalid)
        kopf.event(_as_body(body), type="Warning", reason="InvalidPolicy", message=str(e)[:1000])


def _snapshots(
    st: OperatorState, policy: Policy, now: float, memory: cycle.Memory
) -> tuple[list[Any], cycle.ClusterSnapshot, MetricsSnapshot | None, str | None, cycle.Memory]:
    """Reads: the selected pods (as objects and as the core's snapshot, with the pods it drained
    outside the selection when the spec changed or some were left), and the metrics."""
    core = client.CoreV1Api(st.api)
    pods = selected_pods(core, policy, deleting=True)
    outside: list[Any] = []
    listed = memory.strays_listed
    if (
        listed is None
        or listed[0] != policy.generation
        or (memory.strays_left and now - listed[1] >= STRAYS_RELIST_SECONDS)
    ):
        outside = strays(core, policy, {p.metadata.name for p in pods})
        memory = dataclasses.replace(
            memory, strays_listed=(policy.generation, now), strays_left=bool(outside)
        )
    zones = st.node_zones()
    meta: dict[str, PodMeta] = {
        p.metadata.name: pod_meta(p, zones) for p in pods if not p.metadata.deletion_timestamp
    }
    cordoned = cordoned_nodes(core, policy) if policy.actions.cordon_node else frozenset()
    me = st.published().get((policy.namespace, policy.name))
    claimed = (
        claims(
            me.ref,
            [e.ref for e in st.published().values()],
            {name: m.labels for name, m in meta.items()},
        )
        if me is not None
        else {}
    )
    states = [pod_state(p, policy) for p in pods]
    states += [dataclasses.replace(pod_state(p, policy), selected=False) for p in outside]
    cluster = cycle.ClusterSnapshot(tuple(states), meta, cordoned, claimed)
    url = policy.prometheus.url or st.prometheus_url
    metrics = None
    if url and meta:
        reader = PrometheusReader(
            url, policy.prometheus.timeout_seconds, on_query=telemetry.PROMETHEUS_QUERIES.inc
        )
        metrics = reader.snapshot(policy, now, list(meta))
    return pods, cluster, metrics, url, memory


def reconcile(body: dict[str, Any], patch: kopf.Patch, now: float | None = None) -> None:
    """One evaluation of one policy (called by the timer when the policy's interval is due)."""
    st = state()
    now = time.time() if now is None else now
    old = dict(body.get("status") or {})
    started = time.monotonic()
    ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
    try:
        policy = parse_policy(body)
    except PolicyError as e:
        telemetry.record_evaluation(
            ns, name, result="invalid_policy", seconds=time.monotonic() - started, now=now
        )
        _invalid(body, patch, e, now)
        return
    key = (policy.namespace, policy.name)
    pods, cluster, metrics, url, memory = _snapshots(
        st, policy, now, st.memory.get(key, cycle.Memory())
    )
    guard = None
    if policy.workload_ref is not None:
        usable = metrics is not None and cycle.metrics_problem(bool(url), cluster, metrics) is None
        guard = assess_rollout(
            st,
            policy,
            metrics.samples if metrics is not None and usable else (),
            dict(cluster.meta),
            usable,
            old,
            now,
            memory,
            metrics.window_seconds if metrics is not None else 0.0,
            {p.contained for p in cluster.pods if p.drained_by == policy.name and p.contained},
        )
        if guard is not None:
            memory = dataclasses.replace(memory, cohort=guard.chart)
    decision = cycle.decide(
        policy,
        cluster,
        metrics,
        memory,
        cycle.history_from_status(old, now),
        now,
        prometheus_configured=bool(url),
        last_times=cycle.last_times_from_status(old),
        containment=guard.containment if guard is not None else None,
    )
    st.memory[key] = decision.memory
    if policy.actions.deletion_cost and not policy.actions.dry_run and decision.findings:
        # Before the plan's writes, so that a drain is the cycle's last pod write and the
        # status saying so follows it closely.
        keep_deletion_costs(
            st,
            policy,
            pods,
            list(cluster.pods),
            decision.findings,
            dict(decision.sessions),
        )
    recorded_ahead = _record_ahead(st, policy, decision, now)
    # Drain records carry the cycle's time, as status.recentActions does, so a drain read back
    # from its pod (cycle.with_recorded_drains) is the same record, not a second one.
    actuator = Actuator(st.api, fence=st.fence, now=now)
    # NotLeader from the fence propagates: the rest of the plan, the status and the Events
    # are dropped, and the next leader starts from what the cluster says.
    outcomes = [actuator.apply(policy, a) for a in decision.plan.actions]
    done = [o.action for o in outcomes if o.done]
    failed = [
        Held(
            HoldCause.ACTION_FAILED,
            f"{o.action.pod or o.action.node}: {o.action.kind} failed: {o.detail}",
        )
        for o in outcomes
        if not o.done
    ]
    settled = cycle.settle(policy, cluster, decision, done, failed, old, now)
    st.memory[key] = settled.memory
    new = settled.status
    extra_events: list[status_mod.Event] = []
    guard_holds: list[Held] = []
    if policy.workload_ref is not None:
        extra_events, guard_holds = guard_rollout(
            st,
            policy,
            guard,
            cluster.pods,
            [a.pod for a in done if a.kind == CONTAIN],
            new,
            old,
            now,
        )
    # A guarded policy's status is rewritten every evaluation: its lastEvaluationTime is how
    # every replica's gate knows the verdict is current.
    heartbeat = 0.0 if policy.workload_ref is not None else HEARTBEAT_SECONDS
    stale = now - (parse_rfc3339(old.get("lastEvaluationTime")) or 0) > heartbeat
    # After a write ahead the status must be written too: the list written ahead holds records
    # of actions that may have failed (a PodDisruptionBudget refused the eviction), which this
    # cycle's list replaces; left there, they would pile up to maxActionsPerHour.
    if status_mod.meaningful(old) != status_mod.meaningful(new) or stale or recorded_ahead:
        # kopf applies the patch right after we return; the fence is checked here, last.
        st.fence()
        _write_status(patch, old, new)
    for ev in [*settled.events, *extra_events]:
        _post(body, ev, policy.namespace)
    telemetry.record_evaluation(
        policy.namespace,
        policy.name,
        result="ok" if decision.problem is None else "metrics_unavailable",
        seconds=time.monotonic() - started,
        now=now,
        findings=decision.findings,
        query_problems=metrics.problems if metrics is not None else (),
        actions=cycle.acted(done),
        blocked=[*decision.plan.blocked, *failed, *guard_holds],
        drained=int(new["pods"]["drained"]),
    )


# Budgeted actions that leave no record on an object the next cycle reads (an evicted pod is
# gone): written to status.recentActions before they are done (see _record_ahead).
_TRACELESS = (EVICT, ISOLATE, CORDON)


def _record_ahead(st: OperatorState, policy: Policy, decision: cycle.Decision, now: float) -> bool:
    """Writes the plan's traceless budgeted actions into status.recentActions before doing
    them. A drain is recorded on its pod, but if the status write after an eviction were lost
    (the lease lost at a later write, a crash, a failed patch), the next cycle would not count
    it and could exceed maxActionsPerHour. Recorded ahead, an action that then fails counts
    until the cycle's own status write replaces the list: the budget errs on the safe side. A
    failed write here raises: the cycle stops before acting and runs again at the next
    interval. Returns whether it wrote."""
    ahead = [
        ActionRecord(now, a.kind, a.pod or a.node)
        for a in decision.plan.actions
        if a.kind in _TRACELESS
    ]
    if not ahead:
        return False
    status: dict[str, Any] = {}
    cycle.record_actions(status, [*decision.history, *ahead], decision.last_times)
    st.fence()
    client.CustomObjectsApi(st.api).patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        policy.namespace,
        PLURAL,
        policy.name,
        {"status": {k: status[k] for k in ("recentActions", "lastActions")}},
    )
    return True


# Handler ids name kopf's progress annotations, so they must be valid annotation name parts.
@kopf.timer(GROUP, VERSION, PLURAL, id="evaluate", interval=1.0, initial_delay=0.5, backoff=1.0)
def _timer(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
    st = state()
    key = (body["metadata"]["namespace"], body["metadata"]["name"])
    interval = float(((body.get("spec") or {}).get("detection") or {}).get("intervalSeconds") or 15)
    if body["metadata"].get("deletionTimestamp"):
        return  # being deleted: the delete handler restores its pods; nothing new is planned
    lock = _namespace_lock(key[0])
    if not lock.acquire(blocking=False):
        return  # another policy of the namespace is being evaluated: the next tick
    try:
        if st.due(key, interval, time.time()):
            reconcile(dict(body), patch, time.time())
    except NotLeader as e:
        # The lease ran out mid-cycle: nothing more is written, the status included.
        log.warning("evaluating %s/%s stopped: %s", key[0], key[1], e)
        patch.clear()
    except (ApiException, OSError, urllib3.exceptions.HTTPError) as e:
        # The apiserver is unavailable or refused a read: nothing was decided on partial data
        # (reads come before any write). Try again at the next interval, not after kopf's
        # error backoff; the status cannot be written now anyway.
        log.warning("evaluating %s/%s: %s", key[0], key[1], _short_error(e))
        telemetry.EVALUATIONS.labels(key[0], key[1], "error").inc()
        patch.clear()
    finally:
        lock.release()


def _short_error(e: Exception) -> str:
    if isinstance(e, ApiException):
        return f"API error {e.status} {e.reason}"
    return f"{type(e).__name__}: {str(e)[:200]}"


@kopf.on.delete(GROUP, VERSION, PLURAL, id="restore-drained-pods")
def _deleted(body: kopf.Body, **_: Any) -> None:
    """Never strand a drained pod: restore every pod this policy drained, by the method each
    pod records (kopf's finalizer keeps the policy until this succeeds). Isolated pods are not
    put back: they left their ReplicaSet (a replacement runs) and are kept, out of service,
    for forensics; a person deletes them."""
    st = state()
    if not st.acting():
        raise kopf.TemporaryError("not the leader; the leader restores the pods", delay=10)
    try:
        with _namespace_lock(body["metadata"]["namespace"]):
            _restore_all(st, body)
    except NotLeader as e:
        raise kopf.TemporaryError(f"lost the lease while restoring: {e}", delay=10) from e


def _restore_all(st: OperatorState, body: kopf.Body) -> None:
    ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
    core = client.CoreV1Api(st.api)
    actuator = Actuator(st.api, fence=st.fence)
    mine = [
        p
        for p in core.list_namespaced_pod(ns).items
        if (p.metadata.annotations or {}).get(DRAINED_BY) == name
    ]
    for p in mine:
        if ISOLATED_AT in (p.metadata.annotations or {}):
            st.fence()
            kopf.event(
                body,
                type="Normal",
                reason="LeftIsolated",
                message=f"{p.metadata.name}: isolated for forensics; it stays out of service "
                "and out of its ReplicaSet; delete it when done",
            )
            continue
        outcome = actuator.restore_for(ns, name, Action(RESTORE, p.metadata.name, "policy deleted"))
        if not outcome.done and outcome.failure != ApiFailureKind.GONE:
            raise kopf.TemporaryError(f"restoring {p.metadata.name}: {outcome.detail}", delay=5)
        st.fence()
        kopf.event(
            body, type="Normal", reason="Restored", message=f"{p.metadata.name}: policy deleted"
        )
    for node in core.list_node().items:
        if (node.metadata.annotations or {}).get(CORDONED_BY) == f"{ns}/{name}":
            actuator.uncordon(node.metadata.name)
            st.fence()
            kopf.event(
                body,
                type="Normal",
                reason="Uncordoned",
                message=f"node {node.metadata.name}: policy deleted",
            )
    st.forget((ns, name))
    telemetry.forget(ns, name)


@kopf.on.event(GROUP, VERSION, PLURAL)
def _watched(event: kopf.RawEvent, **_: Any) -> None:
    """Every replica keeps every policy's identity and status from the watch (kopf's event
    stream), whoever leads: the gate answers from it and overlapping policies are resolved
    with it."""
    obj = event.get("object") or {}
    meta = obj.get("metadata") or {}
    key = (str(meta.get("namespace", "")), str(meta.get("name", "")))
    if event.get("type") == "DELETED":
        state().publish(key, None)
        return
    state().publish(key, published(obj))


def read_published(namespace: str, name: str) -> Published | None:
    """One policy read from the API server, as the watch cache would hold it (the gate's lookup
    for a policy its replica's watch has not delivered yet). None when it does not exist."""
    api = client.CustomObjectsApi(state().api)
    try:
        obj = api.get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name, _request_timeout=(2, 5)
        )
    except ApiException as e:
        if e.status == 404:
            return None
        raise LookupError(f"API error {e.status} {e.reason}") from e
    except (OSError, urllib3.exceptions.HTTPError) as e:
        raise LookupError(_short_error(e)) from e
    return published(cast(Mapping[str, Any], obj))


def published(obj: Mapping[str, Any]) -> Published:
    """A policy object as the watch cache keeps it (its selector None when it does not parse)."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    selector: LabelSelector | None
    try:
        policy = parse_policy(obj)
        selector = policy.selector
        interval = float(policy.detection.interval_seconds)
    except PolicyError:
        selector, interval = None, 15.0
    ref = PolicyRef(
        str(meta.get("namespace", "")),
        str(meta.get("name", "")),
        parse_rfc3339(meta.get("creationTimestamp")) or 0.0,
        selector,
        deleting=bool(meta.get("deletionTimestamp")),
    )
    return Published(
        ref, dict(obj.get("status") or {}), interval, guarded=bool(spec.get("workloadRef"))
    )
