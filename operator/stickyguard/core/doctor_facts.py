"""The facts `doctor` judges and the shape of its answers (pure data): what `stickyguard
doctor` gathers from the cluster and Prometheus, and one Check per question with its fix."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from stickyguard.core.names import SERVING

if TYPE_CHECKING:  # the policy model imports the drain methods, which import these facts
    from stickyguard.core.policy import Policy

PASS, WARN, FAIL, SKIP = "pass", "warn", "fail", "skip"


@dataclass(frozen=True)
class PodFacts:
    name: str
    labels: Mapping[str, str]
    has_gate: bool


@dataclass(frozen=True)
class ServiceFacts:
    name: str
    selector: Mapping[str, str]
    session_affinity: str = "None"
    type: str = "ClusterIP"
    external_traffic_policy: str | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class IngressFacts:
    name: str
    annotations: Mapping[str, str]
    services: frozenset[str]


@dataclass(frozen=True)
class Access:
    verb: str
    resource: str  # "pods", "pods/status", "deployments.apps", ...
    namespace: str | None
    why: str
    allowed: bool | None = None  # None: could not ask (the reason is in Facts.rbac_error)


@dataclass(frozen=True)
class Facts:
    namespace: str
    name: str
    policy: Policy | None = None
    policy_error: str | None = None
    pods: Sequence[PodFacts] = ()
    services: Sequence[ServiceFacts] = ()
    ingresses: Sequence[IngressFacts] = ()
    prometheus_url: str | None = None
    prometheus_error: str | None = None
    # signal -> pods that have a series (missing signal: not queried)
    series: Mapping[str, frozenset[str]] = field(default_factory=dict)
    query_errors: Mapping[str, str] = field(default_factory=dict)
    # pod -> seconds since its last scrape (only for presets with a freshness query)
    scrape_age: Mapping[str, float] | None = None
    # "activeSessions" / "degradedSessions" -> pod -> value now (when the policy reads them)
    sessions: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    # "total" / "bad" -> pod -> the window's value now (rates or counts: only their ratio is used)
    window: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    operator: str = "system:serviceaccount:stickyguard-system:stickyguard"
    access: Sequence[Access] = ()
    rbac_error: str | None = None
    # Seconds since the policy's status.lastEvaluationTime (None: never evaluated); only
    # meaningful when `status_read` (doctor read the policy object).
    evaluation_age: float | None = None
    status_read: bool = False


@dataclass(frozen=True)
class Check:
    name: str
    result: str
    detail: str
    fix: str = ""


def selects_all_but(
    selector: Mapping[str, str], labels: Mapping[str, str], ignore: str = ""
) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items() if k != ignore)


def name_list(pods: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(sorted(pods)[:limit])
    return shown + (f" and {len(pods) - limit} more" if len(pods) > limit else "")


def serving_services(facts: Facts) -> list[ServiceFacts]:
    """Services that select every selected pod (the serving label aside)."""
    return [
        s
        for s in facts.services
        if facts.pods
        and all(selects_all_but(s.selector, p.labels, ignore=SERVING) for p in facts.pods)
    ]
