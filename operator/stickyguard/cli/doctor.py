"""`stickyguard doctor -n NS POLICY` (also `kubectl sticky doctor`): gathers what doctor's
checks need from the cluster and Prometheus, prints each check with its fix, and exits 1 when
one fails."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from typing import Any

from stickyguard.cli.options import add_cluster_args, add_prometheus_arg, api_client
from stickyguard.core import doctor_checks as doctor
from stickyguard.core.doctor_facts import FAIL, Access, Facts, IngressFacts, PodFacts, ServiceFacts
from stickyguard.core.names import GROUP, PLURAL, SERVING, VERSION, parse_rfc3339


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "doctor", help="check what makes stickiness or draining fail", description=__doc__
    )
    p.add_argument("policy", help="StickyPolicy name")
    p.add_argument("-n", "--namespace", required=True)
    add_prometheus_arg(p, "Prometheus to check when the policy has no spec.prometheus.url")
    p.add_argument(
        "--operator-service-account",
        default="stickyguard-system:stickyguard",
        help="NAMESPACE:NAME of the operator's ServiceAccount, for the RBAC check",
    )
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")
    add_cluster_args(p)
    p.set_defaults(handler=run)


def gather(api: Any, namespace: str, name: str, url: str | None, operator_sa: str) -> Facts:
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    from stickyguard.adapters.prometheus import PrometheusReader, QueryError
    from stickyguard.core.policy import PolicyError, parse_policy

    sa_ns, _, sa_name = operator_sa.partition(":")
    user = f"system:serviceaccount:{sa_ns}:{sa_name}"
    custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
    try:
        body = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    except ApiException as e:
        return Facts(namespace, name, policy_error=f"reading the policy: {e.status} {e.reason}")
    try:
        policy = parse_policy(body)
    except PolicyError as e:
        return Facts(namespace, name, policy_error=str(e))
    evaluated = parse_rfc3339((body.get("status") or {}).get("lastEvaluationTime"))
    pods = [
        PodFacts(
            p.metadata.name,
            dict(p.metadata.labels or {}),
            any(g.condition_type == SERVING for g in p.spec.readiness_gates or []),
        )
        for p in core.list_namespaced_pod(
            namespace, label_selector=policy.selector.to_label_selector()
        ).items
        if not p.metadata.deletion_timestamp
    ]
    services = [
        ServiceFacts(
            s.metadata.name,
            dict(s.spec.selector or {}),
            s.spec.session_affinity or "None",
            s.spec.type or "ClusterIP",
            s.spec.external_traffic_policy,
            dict(s.metadata.annotations or {}),
        )
        for s in core.list_namespaced_service(namespace).items
    ]
    ingresses = []
    try:
        for i in client.NetworkingV1Api(api).list_namespaced_ingress(namespace).items:
            backends = set()
            rules = i.spec.rules or []
            paths = [p for r in rules if r.http for p in r.http.paths]
            for b in [i.spec.default_backend, *(p.backend for p in paths)]:
                if b is not None and b.service is not None:
                    backends.add(b.service.name)
            ingresses.append(
                IngressFacts(
                    i.metadata.name, dict(i.metadata.annotations or {}), frozenset(backends)
                )
            )
    except ApiException:
        pass  # no Ingress access: the affinity check then relies on Services only
    url = policy.prometheus.url or url
    prom_error, series, errors, ages = None, {}, {}, None
    sessions: dict[str, dict[str, float]] = {}
    window: dict[str, dict[str, float]] = {}
    if url:
        reader = PrometheusReader(url, policy.prometheus.timeout_seconds)
        now = time.time()
        try:
            # Any answer proves reachability; the label keeps the reader's shape check happy.
            reader.query('label_replace(vector(1), "pod", "probe", "", "")', now, "pod")
        except QueryError as e:
            prom_error = str(e)
        if prom_error is None:
            for signal, text in policy.prometheus.rendered_queries(namespace).items():
                try:
                    values = reader.query(text, now, policy.prometheus.pod_label).values
                except QueryError as e:
                    errors[signal] = str(e)
                    continue
                if signal == "freshness":
                    ages = {pod: now - ts for pod, ts in values.items()}
                else:
                    series[signal] = frozenset(values)
                if signal in ("activeSessions", "degradedSessions"):
                    sessions[signal] = dict(values)
                if signal in ("total", "bad"):
                    window[signal] = dict(values)
    access, rbac_error = [], None
    authz = client.AuthorizationV1Api(api)
    for a in doctor.required_access(policy):
        resource, _, sub = a.resource.partition("/")
        res, _, group = resource.partition(".")
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": user,
                "groups": ["system:serviceaccounts", f"system:serviceaccounts:{sa_ns}"],
                "resourceAttributes": {
                    "verb": a.verb,
                    "resource": res,
                    "group": group,
                    "subresource": sub,
                    **({"namespace": a.namespace} if a.namespace else {}),
                },
            },
        }
        try:
            answer = authz.create_subject_access_review(review)
        except ApiException as e:
            rbac_error = (
                f"SubjectAccessReview: {e.status} {e.reason} (doctor needs to create "
                "subjectaccessreviews to check another identity's RBAC)"
            )
            break
        access.append(Access(a.verb, a.resource, a.namespace, a.why, answer.status.allowed))
    return Facts(
        namespace,
        name,
        policy=policy,
        pods=pods,
        services=services,
        ingresses=ingresses,
        prometheus_url=url,
        prometheus_error=prom_error,
        series=series,
        query_errors=errors,
        scrape_age=ages,
        sessions=sessions,
        window=window,
        operator=user,
        access=access,
        rbac_error=rbac_error,
        evaluation_age=None if evaluated is None else max(0.0, time.time() - evaluated),
        status_read=True,
    )


def run(args: argparse.Namespace) -> int:
    facts = gather(
        api_client(args),
        args.namespace,
        args.policy,
        args.prometheus_url,
        args.operator_service_account,
    )
    checks = doctor.diagnose(facts)
    if args.output == "json":
        print(json.dumps([asdict(c) for c in checks], indent=2))
    else:
        print(doctor.render(checks))
    return 1 if any(c.result == FAIL for c in checks) else 0
