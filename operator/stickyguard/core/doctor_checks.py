"""`doctor`'s checks (pure): what makes stickiness or draining fail silently, judged from the
plain facts (doctor_facts) that `stickyguard doctor` gathers from the cluster and Prometheus.
Each check passes, warns or fails and says how to fix it."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from stickyguard.core.doctor_facts import (
    FAIL,
    PASS,
    SKIP,
    WARN,
    Access,
    Check,
    Facts,
    name_list,
    serving_services,
)
from stickyguard.core.drain_methods import method_named
from stickyguard.core.policy import Policy
from stickyguard.core.sequential import MIN_EVIDENCE_INTERVALS

# Annotations that pin a client to a backend pod, by controller and by the object the
# controller reads them from (value None: any value, e.g. a cookie name).
AFFINITY_ANNOTATIONS = {
    "nginx.ingress.kubernetes.io/affinity": "cookie",
    "haproxy.org/cookie-persistence": None,
}
# Traefik v3's Kubernetes Ingress provider reads stickiness from the Service, never from the
# Ingress (checked against Traefik v3.6 in tests/integration/test_traefik.py).
TRAEFIK_STICKY = "traefik.ingress.kubernetes.io/service.sticky.cookie"
SERVICE_AFFINITY_ANNOTATIONS = {TRAEFIK_STICKY: "true"}


def _annotated(annotations: Mapping[str, str], wanted: Mapping[str, str | None]) -> bool:
    return any(
        key in annotations and (want is None or annotations[key].lower() == want)
        for key, want in wanted.items()
    )


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
        out += method_named(policy.actions.drain.method).required_access(ns)
        if policy.actions.drain.evict and not policy.actions.isolate.enabled:
            out.append(Access("create", "pods/eviction", ns, "evict drained pods"))
        if policy.actions.cordon_node:
            out.append(Access("patch", "nodes", None, "cordon the node the damage is on"))
        if policy.workload_ref is not None and policy.workload_ref.kind == "Deployment":
            out.append(Access("patch", "deployments.apps", ns, "pause or roll back rollouts"))
    if policy.workload_ref is not None and policy.workload_ref.kind == "Rollout":
        out.append(Access("get", "rollouts.argoproj.io", ns, "read the guarded Rollout"))
    return out


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
    return method_named(p.actions.drain.method).doctor_check(facts)


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
    ingresses = [i for i in facts.ingresses if i.services & names]
    hits = [i.name for i in ingresses if _annotated(i.annotations, AFFINITY_ANNOTATIONS)]
    if hits:
        return Check("affinity", PASS, f"{mode} affinity on Ingress {', '.join(hits)}")
    on_service = [
        s.name for s in services if _annotated(s.annotations, SERVICE_AFFINITY_ANNOTATIONS)
    ]
    if on_service:
        return Check(
            "affinity", PASS, f"{mode} affinity on Service {', '.join(on_service)} (Traefik)"
        )
    misplaced = [
        i.name for i in ingresses if _annotated(i.annotations, SERVICE_AFFINITY_ANNOTATIONS)
    ]
    if misplaced:
        return Check(
            "affinity",
            WARN,
            f"Ingress {', '.join(misplaced)} carries {TRAEFIK_STICKY}, which Traefik ignores "
            "on an Ingress: no session is sticky",
            f"move {TRAEFIK_STICKY}* annotations to the Service "
            f"({', '.join(sorted(names))}); see docs/ingress-traefik.md",
        )
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
        if signal not in ("bad", "badCounter", "freshness") and pods - have
    }
    if gaps:
        detail = "; ".join(
            f"{s}: no series for {name_list(missing)}" for s, missing in gaps.items()
        )
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
    if not facts.policy.prometheus.staleness_checked:
        return Check(
            "freshness",
            WARN,
            "custom queries without a freshness query: maxStalenessSeconds is not enforced, "
            "so a pod whose scrape stopped is judged on old data until its series go stale",
            "add spec.prometheus.queries.freshness, e.g. max by ({pod_label}) "
            "(timestamp(<the raw series behind total>))",
        )
    if facts.scrape_age is None:
        return Check("freshness", SKIP, "no freshness answer to judge")
    limit = facts.policy.prometheus.max_staleness_seconds
    stale = [p.name for p in facts.pods if facts.scrape_age.get(p.name, float("inf")) > limit]
    if stale:
        return Check(
            "freshness",
            FAIL,
            f"{name_list(stale)}: last scraped over {limit}s ago (or never)",
            "check the scrape targets in Prometheus (Status > Targets) for those pods",
        )
    return Check("freshness", PASS, f"every pod scraped within {limit}s")


# Below this interval, retry storms of 30 s straddle enough intervals to drain a healthy pod
# when only requests are counted (measured at 5 s; none at 10 s or 15 s: docs/analysis.md).
SHORT_INTERVAL_SECONDS = 10


def check_sessions(facts: Facts) -> Check:
    """Session gauges that cannot be true, or that look like counters: the detector's users'
    check trusts them (a pod is drained only when enough of its users are hurt). Without
    them, a short interval is a warning: counting requests, four intervals of a client's
    retries are evidence enough."""
    if facts.policy is not None and not facts.policy.prometheus.session_gauges:
        interval = facts.policy.detection.interval_seconds
        if interval < SHORT_INTERVAL_SECONDS:
            return Check(
                "sessions",
                WARN,
                f"spec.detection.intervalSeconds is {interval} and the policy reads no session "
                "gauges: a drain can rest on "
                f"{MIN_EVIDENCE_INTERVALS * interval} s of bad requests, so clients "
                "retrying for 30 s or more on a healthy pod can get it drained "
                "(docs/analysis.md, known limit (g))",
                "read activeSessions and degradedSessions (a drain then needs several hurt "
                f"users), or set intervalSeconds to {SHORT_INTERVAL_SECONDS} or more",
            )
        return Check(
            "sessions",
            SKIP,
            "the policy reads no session gauges (activeSessions, degradedSessions): drains "
            "count requests only, so one user whose calls all fail can get a pod drained",
        )
    if facts.policy is None or not facts.pods or not _prometheus_ok(facts):
        return Check("sessions", SKIP, "needs selected pods and a reachable Prometheus")
    active = facts.sessions.get("activeSessions", {})
    hurt = facts.sessions.get("degradedSessions", {})
    both = sorted(set(active) & set(hurt))
    if not both:
        return Check("sessions", SKIP, "no pod has both session gauges (see the series check)")
    impossible = [
        p
        for p in both
        if not (math.isfinite(active[p]) and math.isfinite(hurt[p])) or active[p] < 0 or hurt[p] < 0
    ]
    if impossible:
        return Check(
            "sessions",
            FAIL,
            f"{name_list(impossible)}: a session gauge is negative or not a number "
            "(stickyguard drains none of these pods while it reads so)",
            "fix the exporter or the activeSessions/degradedSessions queries: each counts "
            "sessions, 0 or more",
        )
    busy = [p for p in both if active[p] > 0]
    saturated = [p for p in busy if hurt[p] >= active[p]]
    if len(saturated) >= 2 and 2 * len(saturated) >= len(busy):
        return Check(
            "sessions",
            WARN,
            f"degradedSessions is at least activeSessions on {len(saturated)} of {len(busy)} "
            f"pods with sessions ({name_list(saturated)}): either nearly every session is "
            "hurt now, or it counts every session ever hurt",
            "degradedSessions must count the sessions active now that got a bad answer (a gauge "
            "that falls as they end); a counter of sessions ever hurt passes the users' check "
            "for good and lets one failing user drain pods (docs/analysis.md)",
        )
    return Check(
        "sessions",
        PASS,
        f"{sum(active[p] for p in both):.0f} active sessions, "
        f"{sum(hurt[p] for p in both):.0f} of them hurt, on {len(both)} pods",
    )


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


def check_evaluated(facts: Facts) -> Check:
    """Some operator evaluates the policy: its status was written recently."""
    if facts.policy is None or not facts.status_read:
        return Check("evaluated", SKIP, "no valid policy")
    interval = facts.policy.detection.interval_seconds
    # Status is rewritten at least every minute (every evaluation with a workloadRef).
    limit = max(3 * interval, 120)
    fix = (
        "check that `stickyguard run` is up and leading (kubectl -n stickyguard-system get lease "
        f"stickyguard-leader) and that it watches namespace {facts.namespace} (--namespace)"
    )
    if facts.evaluation_age is None:
        return Check("evaluated", WARN, "no operator has evaluated this policy yet", fix)
    if facts.evaluation_age > limit:
        return Check(
            "evaluated",
            WARN,
            f"last evaluated {facts.evaluation_age:.0f}s ago (every {interval}s expected)",
            fix,
        )
    return Check("evaluated", PASS, f"evaluated {facts.evaluation_age:.0f}s ago")


def check_thresholds(facts: Facts) -> Check:
    """`absoluteThreshold` below the service's usual error ratio: every pod is then past it,
    counts towards the fleet-wide vote, and a bad pod is never told apart (docs/analysis.md,
    Classification). The lower quartile of the pods' ratios is the usual ratio: one bad pod,
    or a quarter of the fleet failing, does not move it."""
    if facts.policy is None or not facts.pods or not _prometheus_ok(facts):
        return Check("thresholds", SKIP, "needs selected pods and a reachable Prometheus")
    total, bad = facts.window.get("total", {}), facts.window.get("bad", {})
    ratios = sorted(
        min(1.0, max(0.0, bad.get(p, 0.0) / t))
        for p, t in total.items()
        if math.isfinite(t) and t > 0 and math.isfinite(bad.get(p, 0.0))
    )
    if len(ratios) < 2:
        return Check("thresholds", SKIP, "fewer than two pods have traffic to compare")
    usual = ratios[(len(ratios) - 1) // 4]
    limit = facts.policy.detection.absolute_threshold
    if usual >= limit:
        return Check(
            "thresholds",
            WARN,
            f"three pods in four fail {usual:.2%} of requests or more, at or above "
            f"spec.detection.absoluteThreshold {limit:.2%}: every pod counts as bad, every "
            "verdict is fleet_wide and no pod is drained",
            "if that is the service's usual error ratio, set spec.detection.absoluteThreshold "
            f"above it (about {min(0.9, 3 * usual):.0%}); if the whole fleet is failing now, that "
            "is a fleet incident for a person",
        )
    return Check(
        "thresholds",
        PASS,
        f"the pods' usual bad ratio ({usual:.2%}, lower quartile) is below absoluteThreshold "
        f"{limit:.2%}",
    )


CHECKS = (
    check_policy,
    check_evaluated,
    check_selector,
    check_service,
    check_drain_mechanism,
    check_affinity,
    check_prometheus,
    check_series,
    check_freshness,
    check_sessions,
    check_thresholds,
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
