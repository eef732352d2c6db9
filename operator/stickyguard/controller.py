"""The kopf operator (thin): one timer per StickyPolicy runs read -> analyze -> plan -> act ->
status; a finalizer restores drained pods when a policy is deleted.

Handlers are synchronous, so kopf runs them in its thread pool and the blocking Kubernetes and
Prometheus clients never block kopf's event loop.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, cast

import kopf
import urllib3
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from stickyguard import status as status_mod
from stickyguard import telemetry
from stickyguard.actuate import Actuator
from stickyguard.analysis import Findings, PodMeta, PodSample, Track, analyze
from stickyguard.cluster import (
    CORDONED_BY,
    DRAINED_BY,
    cordoned_nodes,
    node_zones,
    pod_meta,
    pod_state,
    selected_pods,
)
from stickyguard.leader import LeaseElector
from stickyguard.metrics import PrometheusReader
from stickyguard.planner import (
    CORDON,
    DELETION_COST,
    DRAIN,
    EVICT,
    ISOLATE,
    MARK_SERVING,
    RESTORE,
    Action,
    ActionRecord,
    PodState,
    deletion_costs,
    plan,
)
from stickyguard.policy import SERVING, LabelSelector, Policy, PolicyError, parse_policy
from stickyguard.rollout import FAIL, GUARD_REASONS, PAUSE, ROLLBACK, decide, judge, rollout_status
from stickyguard.workload import apply_guard, read_workload

GROUP, VERSION, PLURAL = "stickyguard.dev", "v1alpha1", "stickypolicies"
HEARTBEAT_SECONDS = 60.0  # rewrite an unchanged status at most this often
NODE_CACHE_SECONDS = 60.0
log = logging.getLogger("stickyguard")


@dataclass(frozen=True)
class WebhookConfig:
    port: int
    certfile: str
    keyfile: str
    host: str = "127.0.0.1"


@dataclass
class OperatorState:
    """Process-wide state: clients, the default Prometheus URL and per-policy memory."""

    api: client.ApiClient
    prometheus_url: str | None
    tracks: dict[tuple[str, str], dict[str, Track]] = field(default_factory=dict)
    last_run: dict[tuple[str, str], float] = field(default_factory=dict)
    zones: tuple[float, dict[str, str]] = (0.0, {})
    lock: threading.Lock = field(default_factory=threading.Lock)
    leader: LeaseElector | None = None
    webhook: WebhookConfig | None = None
    verdicts: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    def acting(self) -> bool:
        return self.leader is None or self.leader.is_leader()

    def node_zones(self) -> dict[str, str]:
        with self.lock:
            at, zones = self.zones
            if time.time() - at > NODE_CACHE_SECONDS:
                zones = node_zones(client.CoreV1Api(self.api))
                self.zones = (time.time(), zones)
            return zones


STATE: OperatorState | None = None


def configure(kubeconfig: str | None, prometheus_url: str | None) -> OperatorState:
    global STATE
    if kubeconfig:
        os.environ["KUBECONFIG"] = kubeconfig
        api = config.new_client_from_config(config_file=kubeconfig)
    else:
        config.load_incluster_config()
        api = client.ApiClient()
    telemetry.count_kube_requests(api)
    STATE = OperatorState(api=api, prometheus_url=prometheus_url)
    return STATE


def _state() -> OperatorState:
    if STATE is None:
        raise RuntimeError("stickyguard.controller.configure() was not called")
    return STATE


@kopf.on.startup()
def _startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    # Keep kopf's bookkeeping in our own annotations, not in the CRD's status schema.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix="kopf.stickyguard.dev"
    )
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="kopf.stickyguard.dev", key="last-handled-configuration"
    )
    settings.posting.level = logging.WARNING
    settings.scanning.disabled = True  # no need to watch CRDs/namespaces (and no RBAC for it)
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)  # not one line per timer tick
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    settings.watching.server_timeout = 300
    hook = _state().webhook
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
    cfg = _state().api.configuration
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


def _history(status: dict[str, Any], now: float) -> list[ActionRecord]:
    out = []
    for r in status.get("recentActions") or []:
        t = status_mod.parse_rfc3339(r.get("time"))
        if t is not None and now - t < 3600:
            out.append(ActionRecord(t, str(r.get("action")), str(r.get("pod"))))
    return out


def _as_body(raw: dict[str, Any]) -> kopf.Body:
    return kopf.Body(cast(kopf.RawBody, raw))


def _post(body: dict[str, Any], ev: status_mod.Event, namespace: str) -> None:
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


def reconcile(body: dict[str, Any], patch: kopf.Patch, now: float | None = None) -> None:
    """One evaluation of one policy (called by the timer when the policy's interval is due)."""
    st = _state()
    now = time.time() if now is None else now
    old = dict(body.get("status") or {})
    started = time.monotonic()
    try:
        policy = parse_policy(body)
    except PolicyError as e:
        telemetry.record_evaluation(
            body["metadata"]["namespace"],
            body["metadata"]["name"],
            result="invalid_policy",
            seconds=time.monotonic() - started,
            now=now,
        )
        invalid = {
            "observedGeneration": body["metadata"].get("generation", 0),
            "conditions": [
                {
                    "type": "Ready",
                    "status": "False",
                    "reason": "InvalidPolicy",
                    "message": str(e)[:32000],
                    "observedGeneration": body["metadata"].get("generation", 0),
                    "lastTransitionTime": status_mod.rfc3339(now),
                }
            ],
        }
        if status_mod.meaningful_conditions(old) != status_mod.meaningful_conditions(invalid):
            _write_status(patch, {}, invalid)
            kopf.event(
                _as_body(body), type="Warning", reason="InvalidPolicy", message=str(e)[:1000]
            )
        return
    key = (policy.namespace, policy.name)
    core = client.CoreV1Api(st.api)
    pods = selected_pods(core, policy, deleting=True)
    zones = st.node_zones()
    states = [pod_state(p, policy) for p in pods]
    meta: dict[str, PodMeta] = {
        p.metadata.name: pod_meta(p, zones) for p in pods if not p.metadata.deletion_timestamp
    }
    url = policy.prometheus.url or st.prometheus_url
    findings: Findings | None = None
    problem: str | None = None
    sessions: dict[str, float | None] = {}
    samples: tuple[PodSample, ...] = ()
    query_problems: tuple[str, ...] = ()
    if not url:
        problem = "no Prometheus URL: set spec.prometheus.url or the operator's --prometheus-url"
    elif not meta:
        problem = "the selector matches no pods"
    else:
        reader = PrometheusReader(url, policy.prometheus.timeout_seconds)
        snap = reader.snapshot(policy, now, list(meta))
        query_problems = snap.problems
        required = [p for p in snap.problems if p.split(":", 1)[0] in ("total", "bad", "freshness")]
        if required:
            problem = "; ".join(required)
        elif not any(s.total is not None for s in snap.samples):
            problem = "no selected pod has fresh series"
        else:
            findings = analyze(
                snap.samples, meta, policy.detection, policy.impact, st.tracks.get(key)
            )
            st.tracks[key] = dict(findings.tracks)
            sessions = {s.pod: s.active_sessions for s in snap.samples}
            samples = snap.samples
    history = _history(old, now)
    cordoned = cordoned_nodes(core, policy) if policy.actions.cordon_node else frozenset()
    the_plan = plan(policy, states, findings, problem, history, now, sessions, cordoned)
    outcomes = [Actuator(st.api).apply(policy, a) for a in the_plan.actions]
    failed = [f"{o.action.pod}: {o.action.kind} failed: {o.detail}" for o in outcomes if not o.done]
    done = [o.action for o in outcomes if o.done]
    done_plan = the_plan.__class__(tuple(done), the_plan.would, the_plan.blocked + tuple(failed))
    for a in done:
        if a.kind in (DRAIN, EVICT, ISOLATE, CORDON):
            history.append(ActionRecord(now, a.kind, a.pod or a.node))
    new = status_mod.build_status(policy, states, findings, problem, done_plan, old, now)
    new["recentActions"] = [
        {"time": status_mod.rfc3339(r.time), "action": r.action, "pod": r.pod} for r in history
    ]
    extra_events: list[status_mod.Event] = []
    if policy.workload_ref is not None:
        extra_events += _guard_rollout(st, policy, samples, meta, findings, new, old, now)
    if policy.actions.deletion_cost and not policy.actions.dry_run and findings is not None:
        _keep_deletion_costs(core, policy, pods, states, findings, sessions)
    stale = now - (status_mod.parse_rfc3339(old.get("lastEvaluationTime")) or 0) > HEARTBEAT_SECONDS
    if status_mod.meaningful(old) != status_mod.meaningful(new) or stale:
        _write_status(patch, old, new)
    for ev in [*status_mod.events(old, new, done_plan), *extra_events]:
        _post(body, ev, policy.namespace)
    telemetry.record_evaluation(
        policy.namespace,
        policy.name,
        result="ok" if problem is None else "metrics_unavailable",
        seconds=time.monotonic() - started,
        now=now,
        findings=findings,
        query_problems=query_problems,
        actions=[a.kind for a in done if a.kind != MARK_SERVING],
        blocked=[*the_plan.blocked, *failed],
        drained=int(new["pods"]["drained"]),
    )


def _guard_rollout(
    st: OperatorState,
    policy: Policy,
    samples: tuple[PodSample, ...],
    meta: dict[str, PodMeta],
    findings: Findings | None,
    new: dict[str, Any],
    old: dict[str, Any],
    now: float,
) -> list[status_mod.Event]:
    """The rollout guard's part of a cycle: verdict, action, status, gate verdict."""
    apps = client.AppsV1Api(st.api)
    found = read_workload(apps, policy)
    key = (policy.namespace, policy.name)
    if found is None:
        new["conditions"].append(
            status_mod.condition(
                "RolloutGuarded",
                False,
                "WorkloadNotFound",
                f"Deployment {policy.workload_ref.name if policy.workload_ref else '?'} not found",
                policy.generation,
                now,
                old,
            )
        )
        return []
    w, rsets = found
    verdict = judge(policy, samples, meta, w.new_hash) if findings is not None else None
    action, why = decide(policy, w, verdict, now)
    events: list[status_mod.Event] = []
    if action is not None:
        if policy.actions.dry_run:
            events.append(
                status_mod.Event(
                    "Normal", f"Would{action.capitalize()}", f"DryRun: {w.name}: {why}"
                )
            )
        else:
            apply_guard(apps, policy, w, rsets, action, why, now)
            events.append(
                status_mod.Event(
                    "Warning" if action in (PAUSE, ROLLBACK) else "Normal",
                    GUARD_REASONS[action],
                    f"{w.name}: {why}",
                )
            )
    section = rollout_status(w, verdict, action, why)
    new["rollout"] = section
    failing = verdict is not None and verdict.verdict == FAIL
    # A rollout this policy paused stays reported as paused until a person resumes it, even
    # when the drained bad pods leave the new cohort without traffic (inconclusive).
    held_by_us = w.paused and w.paused_by_us and w.hold_started is None
    if action == ROLLBACK:
        reason = "RolledBack"
    elif (failing and (w.paused or action == PAUSE)) or held_by_us or action == PAUSE:
        reason = "RolloutPaused"
    elif failing:
        reason = "NewVersionDegraded"
    elif w.hold_started is not None and not w.hold_done:
        reason = "RolloutHeld"
    else:
        reason = "RolloutHealthy" if w.rolling else "NoRollout"
    ok = not (failing or held_by_us or action in (PAUSE, ROLLBACK))
    new["conditions"].append(
        status_mod.condition("RolloutGuarded", ok, reason, why, policy.generation, now, old)
    )
    if verdict is not None:
        st.verdicts[key] = {
            "verdict": verdict.verdict,
            "reason": verdict.reason,
            "time": now,
            "interval": policy.detection.interval_seconds,
            **{k: v for k, v in section.items() if k not in ("verdict", "reason")},
        }
    return events


def _keep_deletion_costs(
    core: client.CoreV1Api,
    policy: Policy,
    pods: list[Any],
    states: list[PodState],
    findings: Findings,
    sessions: dict[str, float | None],
) -> None:
    wanted = deletion_costs(states, findings.degraded_pods, sessions)
    for p in pods:
        cost = wanted.get(p.metadata.name)
        current = (p.metadata.annotations or {}).get(DELETION_COST)
        if cost is not None and current != str(cost):
            try:
                core.patch_namespaced_pod(
                    p.metadata.name,
                    policy.namespace,
                    {"metadata": {"annotations": {DELETION_COST: str(cost)}}},
                )
            except ApiException as e:
                if e.status != 404:
                    log.warning("deletion cost of %s: %s %s", p.metadata.name, e.status, e.reason)


# Handler ids name kopf's progress annotations, so they must be valid annotation name parts.
@kopf.timer(GROUP, VERSION, PLURAL, id="evaluate", interval=1.0, initial_delay=0.5, backoff=1.0)
def _timer(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
    st = _state()
    key = (body["metadata"]["namespace"], body["metadata"]["name"])
    interval = float(((body.get("spec") or {}).get("detection") or {}).get("intervalSeconds") or 15)
    now = time.time()
    due = st.last_run.get(key, 0.0) + interval
    if not st.acting() or now < due:
        return
    # Keep to the schedule (the 1 s tick makes each run a little late); restart it when a run
    # was missed altogether (leadership gained, a long stall).
    st.last_run[key] = due if now - due < interval else now
    try:
        reconcile(dict(body), patch, now)
    except (ApiException, OSError, urllib3.exceptions.HTTPError) as e:
        # The apiserver is unavailable or refused a read: nothing was decided on partial data
        # (reads come before any write). Try again at the next interval, not after kopf's
        # error backoff; the status cannot be written now anyway.
        log.warning("evaluating %s/%s: %s", key[0], key[1], _short_error(e))
        telemetry.EVALUATIONS.labels(key[0], key[1], "error").inc()
        patch.clear()


def _short_error(e: Exception) -> str:
    if isinstance(e, ApiException):
        return f"API error {e.status} {e.reason}"
    return f"{type(e).__name__}: {str(e)[:200]}"


@kopf.on.delete(GROUP, VERSION, PLURAL, id="restore-drained-pods")
def _deleted(body: kopf.Body, **_: Any) -> None:
    """Never strand a drained pod: restore every pod this policy drained (kopf's finalizer
    keeps the policy until this succeeds)."""
    st = _state()
    if not st.acting():
        raise kopf.TemporaryError("not the leader; the leader restores the pods", delay=10)
    ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
    try:
        policy = parse_policy(dict(body))
    except PolicyError:
        policy = None
    core = client.CoreV1Api(st.api)
    pods = core.list_namespaced_pod(ns).items
    mine = [p for p in pods if (p.metadata.annotations or {}).get(DRAINED_BY) == name]
    for p in mine:
        target = policy or _fallback_policy(ns, name, p)
        outcome = Actuator(st.api).apply(target, Action(RESTORE, p.metadata.name, "policy deleted"))
        if not outcome.done and outcome.detail != "pod is gone":
            raise kopf.TemporaryError(f"restoring {p.metadata.name}: {outcome.detail}", delay=5)
        kopf.event(
            body,
            type="Normal",
            reason="Restored",
            message=f"{p.metadata.name}: policy deleted",
        )
    actuator = Actuator(st.api)
    for node in core.list_node().items:
        if (node.metadata.annotations or {}).get(CORDONED_BY) == f"{ns}/{name}":
            actuator.uncordon(node.metadata.name)
            kopf.event(
                body,
                type="Normal",
                reason="Uncordoned",
                message=f"node {node.metadata.name}: policy deleted",
            )
    st.tracks.pop((ns, name), None)
    st.last_run.pop((ns, name), None)
    telemetry.forget(ns, name)


def _fallback_policy(ns: str, name: str, pod: Any) -> Policy:
    """A policy that no longer parses still restores its pods by the method they show."""
    from stickyguard.policy import Actions, Drain, LabelSelector

    method = (
        "ReadinessGate"
        if any(
            g.condition_type == "stickyguard.dev/serving" for g in pod.spec.readiness_gates or []
        )
        else "ServiceLabel"
    )
    return Policy(
        name=name,
        namespace=ns,
        selector=LabelSelector({"x": "y"}),
        actions=Actions(drain=Drain(method=method)),
    )


# --- readiness-gate injection (mutating admission webhook) -----------------------------------
@kopf.index(GROUP, VERSION, PLURAL)
def gate_selectors(body: kopf.Body, **_: Any) -> dict[str, LabelSelector] | None:
    """Namespace -> selectors of the valid policies that drain with ReadinessGate."""
    try:
        policy = parse_policy(dict(body))
    except PolicyError:
        return None
    if policy.actions.drain.method != "ReadinessGate":
        return None
    return {policy.namespace: policy.selector}


def inject_readiness_gate(**kwargs: Any) -> None:
    """Adds `readinessGates: [{conditionType: stickyguard.dev/serving}]` to new pods that a
    ReadinessGate policy selects. The operator then keeps the condition True while the pod
    should serve (fail closed: a gated pod is not Ready until the operator says so)."""
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
    _state().webhook = hook
    kopf.on.mutate("v1", "pods", id="readiness-gate", operation="CREATE", side_effects=False)(
        inject_readiness_gate
    )
