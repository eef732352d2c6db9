"""`doctor`'s checks (pure): what makes stickiness or draining fail silently, judged from plain
facts that doctor_cmd gathers from the cluster and Prometheus. Each check passes, warns or fails
and says how to fix it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from stickyguard.policy import SERVING, Policy

PASS, WARN, FAIL, SKIP = "pass", "warn", "fail", "skip"

# Ingress annotations that pin a client to a backend pod, by controller.
AFFINITY_ANNOTATIONS = {
    "nginx.ingress.kubernetes.io/affinity": "cookie",
    "traefik.ingress.kubernetes.io/service.sticky.cookie": "true",
    "haproxy.org/cookie-persistence": None,  # any value names the cookie
}


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
    operator: str = "system:serviceaccount:stickyguard-system:stickyguard"
    access: Sequence[Access] = ()
    rbac_error: str | None = None


@dataclass(frozen=True)
class Check:
    name: str
    result: str
    detail: str
    fix: str = ""


def required_access(policy: Policy) -> list[Access]:
    """What the operator must be allowed to do for this policy."""
    ns = policy.namespace
    out = [
        Access("list", "pods", ns, "read the selected pods"),
        Access("watch", "stickypolicies.stickyguard.dev", ns, "watch its policies"),
        Access("patch", "stickypolicies.stickyguard.dev/status", ns, "write the policy's status"),
        Access("create", "events", ns, "record what it does"),
    ]
    if not policy.actions.dry_run:
        out.append(Access("patch", "pods", ns, "mark drained pods"))
        if policy.actions.drain.method == "ReadinessGate":
            out.append(Access("patch", "pods/status", ns, "flip the readiness gate"))
        if policy.actions.drain.evict and not policy.actions.isolate.enabled:
            out.append(Access("create", "pods/eviction", ns, "evict drained pods"))
        if policy.actions.cordon_node:
            out.append(Access("patch", "nodes", None, "cordon the node the damage is on"))
        if policy.workload_ref is not None:
            out.append(Access("patch", "deployments.apps", ns, "pause or roll back rollouts"))
    return out


def _subset(selector: Mapping[str, str], labels: Mapping[str, str], ignore: str = "") -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items() if k != ignore)


def _names(pods: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(sorted(pods)[:limit])
    return shown + (f" and {len(pods) - limit} more" if len(pods) > limit else "")


def serving_services(facts: Facts) -> list[ServiceFacts]:
    """Services that select every selected pod (the serving label aside)."""
    return [
        s
        for s in facts.services
        if facts.pods and all(_subset(s.selector, p.labels, ignore=SERVING) for p in facts.pods)
    ]


def check_policy(facts: Facts) -> Check:
    if facts.policy is None:
        return Check(
            "policy",
            FAIL,
            facts.policy_error or f"StickyPolicy {facts.namespace}/{facts.name} not found",
            "fix the fields named above (kubectl explain stickypolicy.spec)",
        )
    mode = facts.policy.actions.mode
    return Check("policy", PASS, f"valid; mode {mode}, drain {facts.policy.actions.drain.method}")


def check_selector(facts: Facts) -> Check:
    if facts.policy is None:
        return Check("selector", SKIP, "no valid policy")
    if not facts.pods:
        return Check(
            "selector",
            FAIL,
            f"spec.selector {facts.policy.selector.to_label_selector()!r} matches no pod in "
            f"{facts.namespace}",
            "compare spec.selector with `kubectl get pods --show-labels`",
        )
    return Check("selector", PASS, f"{len(facts.pods)} pods selected")


def check_service(facts: Facts) -> Check:
    if facts.policy is None or not facts.pods:
        return Check("service", SKIP, "no selected pods")
    found = serving_services(facts)
    if not found:
        return Check(
            "service",
            FAIL,
            "no Service selects all the selected pods, so draining cannot take a pod out of "
            "any load balancer",
            "create a Service whose selector matches the pods' labels (or fix its selector)",
        )
    return Check("service", PASS, "selected by Service " + ", ".join(s.name for s in found))


def check_drain_mechanism(facts: Facts) -> Check:
    p = facts.policy
    if p is None or not facts.pods:
        return Check("drain-mechanism", SKIP, "no selected pods")
    if p.actions.drain.method == "ReadinessGate":
        missing = [x.name for x in facts.pods if not x.has_gate]
        if missing:
            return Check(
                "drain-mechanism",
                FAIL,
                f"{len(missing)} of {len(facts.pods)} pods lack the readiness gate {SERVING}: "
                f"{_names(missing)}; stickyguard cannot drain them",
                "install the webhook (manifests/components/webhook) and restart the pods, or add "
                f"`readinessGates: [{{conditionType: {SERVING}}}]` to the pod template",
            )
        return Check("drain-mechanism", PASS, f"every pod has the readiness gate {SERVING}")
    services = serving_services(facts)
    labelled = [s.name for s in services if s.selector.get(SERVING) == "true"]
    if not labelled:
        return Check(
            "drain-mechanism",
            FAIL,
            f"drain method ServiceLabel, but no Service selects {SERVING}=true, so relabelling "
            "a pod does not take it out of service",
            f'add `{SERVING}: "true"` to the Service selector (stickyguard labels the pods)',
        )
    unlabelled = [x.name for x in facts.pods if x.labels.get(SERVING) != "true"]
    if unlabelled:
        return Check(
            "drain-mechanism",
            WARN,
            f"{len(unlabelled)} pods are not labelled {SERVING}=true yet: {_names(unlabelled)} "
            "(drained, or not yet reconciled)",
            "in Enforce mode stickyguard labels healthy pods; check `kubectl sticky status`",
        )
    return Check("drain-mechanism", PASS, f"Service {', '.join(labelled)} selects {SERVING}=true")


def check_affinity(facts: Facts) -> Check:
    p = facts.policy
    if p is None or not facts.pods:
        return Check("affinity", SKIP, "no selected pods")
    mode = p.affinity.mode
    services = serving_services(facts)
    names = {s.name for s in services}
    if mode == "None":
        return Check("affinity", PASS, "spec.affinity.mode None: nothing pins users")
    if mode == "ClientIP":
        sticky = [s for s in services if s.session_affinity == "ClientIP"]
        if not sticky:
            return Check(
                "affinity",
                FAIL,
                "spec.affinity.mode ClientIP, but no selecting Service has sessionAffinity "
                "ClientIP",
                "set `sessionAffinity: ClientIP` on the Service (and a timeout in "
                "sessionAffinityConfig.clientIP.timeoutSeconds)",
            )
        snat = [
            s.name
            for s in sticky
            if s.type in ("NodePort", "LoadBalancer") and s.external_traffic_policy != "Local"
        ]
        if snat:
            return Check(
                "affinity",
                WARN,
                f"Service {', '.join(snat)}: externalTrafficPolicy Cluster hides client IPs "
                "behind node IPs (SNAT), so ClientIP affinity pins whole nodes' traffic",
                "set `externalTrafficPolicy: Local`, or use cookie affinity at the ingress",
            )
        return Check("affinity", PASS, "ClientIP affinity on " + ", ".join(s.name for s in sticky))
    hits = [
        i.name
        for i in facts.ingresses
        if i.services & names
        and any(
            key in i.annotations and (want is None or i.annotations[key].lower() == want)
            for key, want in AFFINITY_ANNOTATIONS.items()
        )
    ]
    if hits:
        return Check("affinity", PASS, f"{mode} affinity on Ingress {', '.join(hits)}")
    return Check(
        "affinity",
        WARN,
        f"spec.affinity.mode {mode}, but no Ingress in front of the Service sets cookie "
        "affinity; fine if a gateway or proxy (Envoy, Istio, HAProxy) does it",
        "check the proxy's stickiness settings (cookie name, domain, path, SameSite, TTL); "
        "docs/troubleshooting.md lists what breaks them",
    )


def check_prometheus(facts: Facts) -> Check:
    if facts.policy is None:
        return Check("prometheus", SKIP, "no valid policy")
    if not facts.prometheus_url:
        return Check(
            "prometheus",
            FAIL,
            "no Prometheus URL",
            "set spec.prometheus.url or the operator's --prometheus-url",
        )
    if facts.prometheus_error:
        return Check(
            "prometheus",
            FAIL,
            f"{facts.prometheus_url}: {facts.prometheus_error}",
            "check the URL (spec.prometheus.url or --prometheus-url) and that the operator's "
            "network reaches it",
        )
    return Check("prometheus", PASS, f"{facts.prometheus_url} answers queries")


def _prometheus_ok(facts: Facts) -> bool:
    return bool(facts.prometheus_url) and facts.prometheus_error is None


def check_series(facts: Facts) -> Check:
    if facts.policy is None or not facts.pods or not _prometheus_ok(facts):
        return Check("series", SKIP, "needs selected pods and a reachable Prometheus")
    if facts.query_errors:
        return Check(
            "series",
            FAIL,
            "; ".join(f"{s}: {e}" for s, e in sorted(facts.query_errors.items())),
            "fix the queries (spec.prometheus.queries / preset) until they run in Prometheus",
        )
    pods = {p.name for p in facts.pods}
    # `bad` may be absent for a pod with no bad events; every other signal must be there.
    gaps = {
        signal: sorted(pods - have)
        for signal, have in facts.series.items()
        if signal not in ("bad", "freshness") and pods - have
    }
    if gaps:
        detail = "; ".join(f"{s}: no series for {_names(missing)}" for s, missing in gaps.items())
        return Check(
            "series",
            FAIL,
            detail + " (stickyguard treats such pods as insufficient data and never acts on them)",
            f"check that Prometheus scrapes those pods and that the series carry the "
            f"`{facts.policy.prometheus.pod_label}` label (spec.prometheus.podLabel)",
        )
    return Check("series", PASS, f"every pod has series for {', '.join(sorted(facts.series))}")


def check_freshness(facts: Facts) -> Check:
    if facts.policy is None or not facts.pods or not _prometheus_ok(facts):
        return Check("freshness", SKIP, "needs selected pods and a reachable Prometheus")
    if facts.scrape_age is None:
        return Check("freshness", SKIP, "the preset has no freshness query")
    limit = facts.policy.prometheus.max_staleness_seconds
    stale = [p.name for p in facts.pods if facts.scrape_age.get(p.name, float("inf")) > limit]
    if stale:
        return Check(
            "freshness",
            FAIL,
            f"{_names(stale)}: last scraped over {limit}s ago (or never)",
            "check the scrape targets in Prometheus (Status > Targets) for those pods",
        )
    return Check("freshness", PASS, f"every pod scraped within {limit}s")


def check_rbac(facts: Facts) -> Check:
    if facts.policy is None:
        return Check("rbac", SKIP, "no valid policy")
    if facts.rbac_error:
        return Check("rbac", WARN, f"could not ask the apiserver: {facts.rbac_error}", "")
    denied = [a for a in facts.access if a.allowed is False]
    if denied:
        return Check(
            "rbac",
            FAIL,
            f"{facts.operator} may not "
            + "; ".join(
                f"{a.verb} {a.resource}"
                + (f" in {a.namespace}" if a.namespace else "")
                + f" (to {a.why})"
                for a in denied
            ),
            "apply manifests/base/rbac.yaml (the ClusterRole stickyguard-operator) or grant "
            "these verbs to the operator's ServiceAccount",
        )
    return Check("rbac", PASS, f"{facts.operator} can do all {len(facts.access)} things needed")


CHECKS = (
    check_policy,
    check_selector,
    check_service,
    check_drain_mechanism,
    check_affinity,
    check_prometheus,
    check_series,
    check_freshness,
    check_rbac,
)


def diagnose(facts: Facts) -> list[Check]:
    return [check(facts) for check in CHECKS]


def render(checks: Sequence[Check]) -> str:
    marks = {PASS: "PASS", WARN: "WARN", FAIL: "FAIL", SKIP: "SKIP"}
    lines = []
    for c in checks:
        lines.append(f"{marks[c.result]}  {c.name:<16} {c.detail}")
        if c.fix and c.result in (WARN, FAIL):
            lines.append(f"      {'':<16} fix: {c.fix}")
    return "\n".join(lines)
