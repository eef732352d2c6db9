"""The StickyPolicy model (pure): parses a CR dict into frozen dataclasses with every default
applied, and does the semantic validation the CRD schema cannot express.

Errors name the field path and the reason (`spec.detection.confidence: must be < 1, got 1.5`).
Defaults here must equal the CRD's (tests/unit/test_policy_crd_consistency.py checks it).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from stickyguard.core import promql
from stickyguard.core.drain_methods import METHODS
from stickyguard.core.names import GROUP
from stickyguard.core.presets import PRESETS as SIGNAL_PRESETS

T = TypeVar("T")

MODES = ("Enforce", "DryRun")
AFFINITY_MODES = ("Cookie", "Header", "ClientIP", "ConsistentHash", "None")
DRAIN_METHODS = tuple(METHODS)
# Auto: Contain when a GitOps tool manages the Deployment, Pause otherwise (core.containment).
ROLLOUT_ACTIONS = ("Auto", "Contain", "Pause", "Rollback", "None")
# Guarded workloads: a Deployment (the guard may pause or roll it back) or an Argo Rollouts
# Rollout (judged only: Argo acts on the verdict through its analysis, which calls the gate).
WORKLOAD_KINDS = ("Deployment", "Rollout")
PRESETS = tuple(SIGNAL_PRESETS)
BUILTIN_DIMENSIONS = ("node", "zone", "version", "replicaset")
SELECTOR_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")
SIGNALS = ("total", "bad", "activeSessions", "degradedSessions", "affinityMisses")
_LABEL_KEY_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


class PolicyError(ValueError):
    """A policy is invalid; `errors` lists (field path, reason) pairs."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{path}: {reason}" for path, reason in errors))


# --- the model -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.operator == "Exists":
            return present
        if self.operator == "DoesNotExist":
            return not present
        if self.operator == "In":
            return present and labels[self.key] in self.values
        return not present or labels[self.key] not in self.values  # NotIn


@dataclass(frozen=True)
class LabelSelector:
    match_labels: Mapping[str, str] = field(default_factory=dict)
    match_expressions: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.match_labels.items()) and all(
            r.matches(labels) for r in self.match_expressions
        )

    def to_label_selector(self) -> str:
        """The selector in the Kubernetes list `labelSelector` syntax."""
        parts = [f"{k}={v}" for k, v in sorted(self.match_labels.items())]
        for r in self.match_expressions:
            if r.operator == "Exists":
                parts.append(r.key)
            elif r.operator == "DoesNotExist":
                parts.append(f"!{r.key}")
            else:
                op = "in" if r.operator == "In" else "notin"
                parts.append(f"{r.key} {op} ({','.join(r.values)})")
        return ",".join(parts)


@dataclass(frozen=True)
class WorkloadRef:
    kind: str
    name: str


@dataclass(frozen=True)
class Affinity:
    mode: str = "Cookie"
    cookie_name: str | None = None
    header_name: str | None = None


@dataclass(frozen=True)
class Queries:
    total: str | None = None
    bad: str | None = None
    active_sessions: str | None = None
    degraded_sessions: str | None = None
    affinity_misses: str | None = None
    # The raw counters behind total and bad (instant queries, no rate): their differences
    # between evaluations are each interval's exact events for the sequential detector.
    total_counter: str | None = None
    bad_counter: str | None = None
    # Each pod's newest sample time (Unix seconds): pods older than maxStalenessSeconds are
    # not judged. The presets have it; custom total/bad without it leave staleness unchecked.
    freshness: str | None = None


@dataclass(frozen=True)
class PrometheusSpec:
    url: str | None = None
    preset: str = "generic"
    pod_label: str = "pod"
    series_selector: Mapping[str, str] = field(default_factory=dict)
    window: str = "2m"
    timeout_seconds: int = 10
    max_staleness_seconds: int = 120
    queries: Queries = field(default_factory=Queries)

    @property
    def staleness_checked(self) -> bool:
        """Some query tells each pod's sample age, so maxStalenessSeconds is enforced."""
        return "freshness" in self.templates()

    @property
    def session_gauges(self) -> bool:
        """The policy reads both session gauges (the detector then counts users too)."""
        return bool(self.queries.active_sessions and self.queries.degraded_sessions)

    def templates(self) -> dict[str, str]:
        """Signal name -> query template: the preset's total/bad (and its freshness check)
        unless overridden, plus the optional signals that are configured (a custom freshness
        query among them)."""
        out: dict[str, str] = {}
        if not self.queries.total:
            out.update(SIGNAL_PRESETS[self.preset].templates())
        q = self.queries
        for name, value in (
            ("total", q.total),
            ("bad", q.bad),
            ("activeSessions", q.active_sessions),
            ("degradedSessions", q.degraded_sessions),
            ("affinityMisses", q.affinity_misses),
            ("totalCounter", q.total_counter),
            ("badCounter", q.bad_counter),
            ("freshness", q.freshness),
        ):
            if value:
                out[name] = value
        return out

    def rendered_queries(self, namespace: str) -> dict[str, str]:
        """Signal name -> the PromQL to run (one query per signal, never one per pod)."""
        selector = promql.matcher(self.series_selector)
        return {
            name: promql.render(
                t,
                namespace=namespace,
                selector=selector,
                window=self.window,
                pod_label=self.pod_label,
            )
            for name, t in self.templates().items()
        }


@dataclass(frozen=True)
class Detection:
    min_requests: int = 50
    absolute_threshold: float = 0.01
    relative_threshold: float = 3.0
    confidence: float = 0.99
    consecutive: int = 1
    recovery_evaluations: int = 4
    interval_seconds: int = 15
    fleet_wide_fraction: float = 0.5
    dimensions: tuple[str, ...] = ("node", "zone", "version")
    # Expected false drains per pod and year for a pod exactly like the rest of the fleet; the
    # sequential detector's threshold is derived from it (docs/analysis.md). 0.01: a 100-pod
    # fleet sees at most about one false drain a year.
    false_drains_per_pod_year: float = 0.01
    # With session gauges: hurt sessions on a pod beyond the fleet's share before it can be
    # drained (one user can never be enough).
    min_degraded_sessions: int = 2
    one_shot: bool = False  # not in the CRD: a one-off report judges one window alone


@dataclass(frozen=True)
class Drain:
    method: str = "ReadinessGate"
    drain_timeout_seconds: int = 300
    evict: bool = True


@dataclass(frozen=True)
class Isolate:
    enabled: bool = False
    ttl_seconds: int = 3600


@dataclass(frozen=True)
class Rollout:
    on_canary_degraded: str = "Auto"
    hold_seconds: int = 0
    # Pause, Rollback and holds change the Deployment's spec; on a GitOps-managed Deployment
    # they are refused unless this is true.
    allow_spec_changes: bool = False


@dataclass(frozen=True)
class Actions:
    mode: str = "DryRun"
    drain: Drain = field(default_factory=Drain)
    isolate: Isolate = field(default_factory=Isolate)
    cordon_node: bool = False
    rollout: Rollout = field(default_factory=Rollout)
    deletion_cost: bool = True

    @property
    def dry_run(self) -> bool:
        return self.mode == "DryRun"


@dataclass(frozen=True)
class Safety:
    max_drained_percent: int = 25
    min_ready_pods: int = 2
    max_actions_per_hour: int = 10
    cooldown_seconds: int = 60


@dataclass(frozen=True)
class Impact:
    requests_per_session: float = 20.0


@dataclass(frozen=True)
class Policy:
    name: str
    namespace: str
    selector: LabelSelector
    generation: int = 0
    workload_ref: WorkloadRef | None = None
    service_name: str | None = None
    affinity: Affinity = field(default_factory=Affinity)
    prometheus: PrometheusSpec = field(default_factory=PrometheusSpec)
    detection: Detection = field(default_factory=Detection)
    actions: Actions = field(default_factory=Actions)
    safety: Safety = field(default_factory=Safety)
    impact: Impact = field(default_factory=Impact)


# --- parsing -------------------------------------------------------------------------------
Check = Callable[[Any], str | None]


def _between(
    lo: float | None = None,
    hi: float | None = None,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
) -> Check:
    def check(v: Any) -> str | None:
        if lo is not None and (v <= lo if lo_open else v < lo):
            return f"must be {'>' if lo_open else '>='} {lo:g}, got {v:g}"
        if hi is not None and (v >= hi if hi_open else v > hi):
            return f"must be {'<' if hi_open else '<='} {hi:g}, got {v:g}"
        return None

    return check


def _one_of(options: tuple[str, ...]) -> Check:
    return lambda v: None if v in options else f"must be one of {', '.join(options)}; got {v!r}"


def _label_name(v: str) -> str | None:
    return (
        None
        if promql.LABEL_NAME.match(v)
        else (f"{v!r} is not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)")
    )


MAX_WINDOW_SECONDS = 7 * 86400  # longer rate windows are not a per-pod health signal


def _duration(v: str) -> str | None:
    if not promql.DURATION.match(v):
        return f"{v!r} is not a PromQL duration such as 30s, 2m or 1h30m"
    if promql.duration_seconds(v) > MAX_WINDOW_SECONDS:
        return f"{v!r} is longer than 7d"
    return None


def _url(v: str) -> str | None:
    return (
        None
        if v.startswith(("http://", "https://")) and len(v) > 8
        else (f"{v!r} must be an http:// or https:// URL")
    )


def _template(v: str) -> str | None:
    unknown = promql.unknown_placeholders(v)
    if unknown:
        return (
            f"unknown placeholder(s) {', '.join('{' + u + '}' for u in sorted(unknown))}; "
            f"known: {', '.join('{' + p + '}' for p in sorted(promql.PLACEHOLDERS))}"
        )
    if not v.strip():
        return "must not be empty"
    return None


def _k8s_label_key(v: str) -> str | None:
    prefix, _, name = v.rpartition("/")
    if not name or len(name) > 63 or len(prefix) > 253:
        return f"{v!r} is not a valid Kubernetes label key"
    if not _LABEL_KEY_NAME.match(name):
        return f"{v!r} is not a valid Kubernetes label key"
    return None


_TYPES: dict[type, str] = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "a boolean",
    dict: "an object",
    list: "a list",
}


class _Reader:
    """Reads one object of the CR, tracking the field path and collecting errors."""

    def __init__(self, data: Any, path: str, errors: list[tuple[str, str]]) -> None:
        self.path, self.errors = path, errors
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            errors.append((path, f"must be an object, got {type(data).__name__}"))
            data = {}
        self.data: Mapping[str, Any] = data
        self.seen: set[str] = set()

    def at(self, key: str) -> str:
        return f"{self.path}.{key}"

    def value(self, key: str, kind: type[T], default: T, *checks: Check) -> T:
        self.seen.add(key)
        v = self.data.get(key)
        if v is None:
            return default
        ok = isinstance(v, kind) and not (kind is not bool and isinstance(v, bool))
        if kind is float and isinstance(v, int) and not isinstance(v, bool):
            v, ok = float(v), True
        if not ok:
            self.errors.append((self.at(key), f"must be {_TYPES[kind]}, got {v!r}"))
            return default
        for check in checks:
            reason = check(v)
            if reason:
                self.errors.append((self.at(key), reason))
                return default
        return v  # type: ignore[return-value]

    def optional(self, key: str, kind: type[T], *checks: Check) -> T | None:
        default: T | None = None
        return self.value(key, kind, default, *checks)

    def child(self, key: str) -> _Reader:
        self.seen.add(key)
        return _Reader(self.data.get(key), self.at(key), self.errors)

    def present(self, key: str) -> bool:
        return self.data.get(key) is not None

    def string_map(self, key: str, key_check: Check) -> dict[str, str]:
        raw = self.value(key, dict, {})
        out: dict[str, str] = {}
        for k, v in raw.items():
            reason = key_check(k) if isinstance(k, str) else "keys must be strings"
            if reason:
                self.errors.append((f"{self.at(key)}[{k!r}]", reason))
            elif not isinstance(v, str):
                self.errors.append((f"{self.at(key)}[{k!r}]", f"must be a string, got {v!r}"))
            else:
                out[k] = v
        return out

    def done(self) -> None:
        """Unknown fields are errors: a typo in GitOps must not silently fall back to a default."""
        for key in sorted(set(self.data) - self.seen):
            self.errors.append((self.at(key), "unknown field"))


def _selector(r: _Reader) -> LabelSelector:
    labels = r.string_map("matchLabels", _k8s_label_key)
    reqs = []
    for i, raw in enumerate(r.value("matchExpressions", list, [])):
        e = _Reader(raw, f"{r.at('matchExpressions')}[{i}]", r.errors)
        key = e.value("key", str, "", _k8s_label_key)
        op = e.value("operator", str, "", _one_of(SELECTOR_OPERATORS))
        values = e.value("values", list, [])
        if op in ("In", "NotIn") and not values:
            r.errors.append((e.at("values"), f"must not be empty for operator {op}"))
        if op in ("Exists", "DoesNotExist") and values:
            r.errors.append((e.at("values"), f"must be empty for operator {op}"))
        if not key:
            r.errors.append((e.at("key"), "is required"))
        e.done()
        reqs.append(Requirement(key, op, tuple(str(v) for v in values)))
    r.done()
    if not labels and not reqs:
        r.errors.append(
            (
                r.path,
                "must have matchLabels or matchExpressions (an empty selector "
                "would select every pod in the namespace)",
            )
        )
    for key in sorted({*labels, *(q.key for q in reqs)}):
        if key.startswith(f"{GROUP}/"):
            # The operator writes these labels (the ServiceLabel method removes
            # stickyguard.dev/serving to drain): a drained pod would leave the selection,
            # and with it every budget and the restore.
            r.errors.append(
                (
                    r.path,
                    f"must not name {key}: stickyguard changes its own labels on the pods "
                    "it drains, which would take them out of the policy (select on the app's "
                    "labels, as the Deployment's selector does)",
                )
            )
    return LabelSelector(labels, tuple(reqs))


def _prometheus(r: _Reader, selector: LabelSelector) -> PrometheusSpec:
    d = PrometheusSpec()
    url = r.optional("url", str, _url)
    preset = r.value("preset", str, d.preset, _one_of(PRESETS))
    preset_pod_label = SIGNAL_PRESETS[preset].pod_label if preset in SIGNAL_PRESETS else "pod"
    pod_label = r.value("podLabel", str, preset_pod_label, _label_name)
    series = r.string_map("seriesSelector", _label_name)
    if not r.present("seriesSelector"):
        series = {promql.sanitize_label_name(k): v for k, v in selector.match_labels.items()}
        if not series and not r.errors:
            r.errors.append(
                (
                    r.at("seriesSelector"),
                    "is required when spec.selector has no matchLabels (the series "
                    "selector is derived from matchLabels)",
                )
            )
    elif not series:
        r.errors.append((r.at("seriesSelector"), "must not be empty"))
    window = r.value("window", str, d.window, _duration)
    timeout = r.value("timeoutSeconds", int, d.timeout_seconds, _between(1, 120))
    staleness = r.value("maxStalenessSeconds", int, d.max_staleness_seconds, _between(1, 3600))
    q = r.child("queries")
    queries = Queries(
        total=q.optional("total", str, _template),
        bad=q.optional("bad", str, _template),
        active_sessions=q.optional("activeSessions", str, _template),
        degraded_sessions=q.optional("degradedSessions", str, _template),
        affinity_misses=q.optional("affinityMisses", str, _template),
        total_counter=q.optional("totalCounter", str, _template),
        bad_counter=q.optional("badCounter", str, _template),
        freshness=q.optional("freshness", str, _template),
    )
    q.done()
    if (queries.total is None) != (queries.bad is None):
        r.errors.append((q.path, "total and bad must be given together"))
    if (queries.total_counter is None) != (queries.bad_counter is None):
        r.errors.append((q.path, "totalCounter and badCounter must be given together"))
    elif queries.total_counter is not None and queries.total is None:
        r.errors.append(
            (q.at("totalCounter"), "needs total and bad too (the counters behind those rates)")
        )
    needs_queries = preset in SIGNAL_PRESETS and SIGNAL_PRESETS[preset].needs_queries
    if needs_queries and (queries.total is None or queries.bad is None):
        r.errors.append((q.path, f"preset {preset} needs both total and bad queries"))
    if queries.degraded_sessions and not queries.active_sessions:
        r.errors.append(
            (
                q.at("degradedSessions"),
                "needs activeSessions too (affected share = degraded / active)",
            )
        )
    r.done()
    return PrometheusSpec(url, preset, pod_label, series, window, timeout, staleness, queries)


def _detection(r: _Reader) -> Detection:
    d = Detection()
    dims = r.value("dimensions", list, list(d.dimensions))
    for i, dim in enumerate(dims):
        if not isinstance(dim, str) or (dim not in BUILTIN_DIMENSIONS and _k8s_label_key(dim)):
            r.errors.append(
                (
                    f"{r.at('dimensions')}[{i}]",
                    f"{dim!r} is neither one of {', '.join(BUILTIN_DIMENSIONS)} nor a "
                    "pod label key",
                )
            )
    out = Detection(
        min_requests=r.value("minRequests", int, d.min_requests, _between(1, 10_000_000)),
        absolute_threshold=r.value(
            "absoluteThreshold", float, d.absolute_threshold, _between(0, 1, lo_open=True)
        ),
        relative_threshold=r.value(
            "relativeThreshold", float, d.relative_threshold, _between(1, 1000)
        ),
        confidence=r.value("confidence", float, d.confidence, _between(0.5, 1, hi_open=True)),
        consecutive=r.value("consecutive", int, d.consecutive, _between(1, 100)),
        recovery_evaluations=r.value(
            "recoveryEvaluations", int, d.recovery_evaluations, _between(1, 1000)
        ),
        interval_seconds=r.value("intervalSeconds", int, d.interval_seconds, _between(5, 3600)),
        fleet_wide_fraction=r.value(
            "fleetWideFraction", float, d.fleet_wide_fraction, _between(0, 1, lo_open=True)
        ),
        false_drains_per_pod_year=r.value(
            "falseDrainsPerPodYear",
            float,
            d.false_drains_per_pod_year,
            _between(1e-6, 10),
        ),
        min_degraded_sessions=r.value(
            "minDegradedSessions", int, d.min_degraded_sessions, _between(1, 10_000)
        ),
        dimensions=tuple(str(x) for x in dims),
    )
    r.done()
    return out


def _actions(r: _Reader) -> Actions:
    d = Actions()
    dr = r.child("drain")
    drain = Drain(
        method=dr.value("method", str, d.drain.method, _one_of(DRAIN_METHODS)),
        drain_timeout_seconds=dr.value(
            "drainTimeoutSeconds", int, d.drain.drain_timeout_seconds, _between(0, 86400)
        ),
        evict=dr.value("evict", bool, d.drain.evict),
    )
    if drain.evict and drain.drain_timeout_seconds <= 0:
        r.errors.append((dr.at("drainTimeoutSeconds"), "must be > 0 when evict is true"))
    dr.done()
    iso = r.child("isolate")
    isolate = Isolate(
        iso.value("enabled", bool, d.isolate.enabled),
        iso.value("ttlSeconds", int, d.isolate.ttl_seconds, _between(60, 604800)),
    )
    iso.done()
    ro = r.child("rollout")
    rollout = Rollout(
        ro.value("onCanaryDegraded", str, d.rollout.on_canary_degraded, _one_of(ROLLOUT_ACTIONS)),
        ro.value("holdSeconds", int, d.rollout.hold_seconds, _between(0, 86400)),
        ro.value("allowSpecChanges", bool, d.rollout.allow_spec_changes),
    )
    ro.done()
    out = Actions(
        mode=r.value("mode", str, d.mode, _one_of(MODES)),
        drain=drain,
        isolate=isolate,
        cordon_node=r.value("cordonNode", bool, d.cordon_node),
        rollout=rollout,
        deletion_cost=r.value("deletionCost", bool, d.deletion_cost),
    )
    r.done()
    return out


def _safety(r: _Reader) -> Safety:
    d = Safety()
    out = Safety(
        max_drained_percent=r.value(
            "maxDrainedPercent", int, d.max_drained_percent, _between(1, 100)
        ),
        min_ready_pods=r.value("minReadyPods", int, d.min_ready_pods, _between(1)),
        max_actions_per_hour=r.value(
            "maxActionsPerHour", int, d.max_actions_per_hour, _between(0, 1000)
        ),
        cooldown_seconds=r.value("cooldownSeconds", int, d.cooldown_seconds, _between(0, 86400)),
    )
    r.done()
    return out


def parse_policy(obj: Mapping[str, Any]) -> Policy:
    """Parses a StickyPolicy object (as the apiserver returns it) into a Policy.

    Raises PolicyError listing every problem found, each with its field path."""
    errors: list[tuple[str, str]] = []
    meta = obj.get("metadata") or {}
    name = meta.get("name") or ""
    namespace = meta.get("namespace") or ""
    if not name:
        errors.append(("metadata.name", "is required"))
    if not namespace:
        errors.append(("metadata.namespace", "is required"))
    spec = _Reader(obj.get("spec"), "spec", errors)
    if not spec.present("selector"):
        errors.append(("spec.selector", "is required"))
    selector = _selector(spec.child("selector"))
    workload = None
    if spec.present("workloadRef"):
        w = spec.child("workloadRef")
        workload = WorkloadRef(
            w.value("kind", str, "Deployment", _one_of(WORKLOAD_KINDS)), w.value("name", str, "")
        )
        if not workload.name:
            errors.append((w.at("name"), "is required"))
        w.done()
    svc = spec.child("service")
    service_name = svc.optional("name", str)
    svc.done()
    a = spec.child("affinity")
    affinity = Affinity(
        a.value("mode", str, "Cookie", _one_of(AFFINITY_MODES)),
        a.optional("cookieName", str),
        a.optional("headerName", str),
    )
    if affinity.mode == "Header" and not affinity.header_name:
        errors.append((a.at("headerName"), "is required when mode is Header"))
    a.done()
    prom = _prometheus(spec.child("prometheus"), selector)
    detection = _detection(spec.child("detection"))
    actions = _actions(spec.child("actions"))
    safety = _safety(spec.child("safety"))
    imp = spec.child("impact")
    impact = Impact(
        imp.value("requestsPerSession", float, Impact().requests_per_session, _between(1, 1e6))
    )
    imp.done()
    if actions.rollout.hold_seconds and workload is None:
        errors.append(("spec.actions.rollout.holdSeconds", "needs spec.workloadRef"))
    if workload is not None and workload.kind == "Rollout":
        # Argo Rollouts owns its Rollout's steps, pauses and aborts; stickyguard only judges.
        if actions.rollout.on_canary_degraded not in ("None", "Auto"):
            errors.append(
                (
                    "spec.actions.rollout.onCanaryDegraded",
                    "must be None or Auto for a Rollout: Argo Rollouts pauses or aborts it on the "
                    "gate's verdict (an AnalysisTemplate calling /gate/argo/NAMESPACE/NAME)",
                )
            )
        if actions.rollout.hold_seconds:
            errors.append(
                (
                    "spec.actions.rollout.holdSeconds",
                    "is for Deployments; a Rollout's steps (pause, analysis) hold it",
                )
            )
    spec.done()
    if errors:
        raise PolicyError(errors)
    return Policy(
        name=name,
        namespace=namespace,
        generation=int(meta.get("generation") or 0),
        selector=selector,
        workload_ref=workload,
        service_name=service_name,
        affinity=affinity,
        prometheus=prom,
        detection=detection,
        actions=actions,
        safety=safety,
        impact=impact,
    )
