"""Security and bad input against the real apiserver: the operator's RBAC is least privilege,
the webhook serves TLS only, a policy that passes the schema but not the operator is reported
and never acted on, and a pod vanishing between plan and action is not an error."""

from __future__ import annotations

import http.client
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from operator_support import Fleet, condition, create_policy, events, get_policy, policy_body
from stickyguard.adapters.kube_writes import Actuator
from stickyguard.core.names import GROUP, PLURAL
from stickyguard.core.planner import DRAIN, RESTORE, Action
from stickyguard.core.policy import parse_policy
from stickyguard_lab.operatorproc import OperatorProcess
from support import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("crd_installed")]


def can(
    authz: client.AuthorizationV1Api,
    verb: str,
    resource: str,
    ns: str | None,
    group: str = "",
    sub: str = "",
) -> bool:
    attrs = {"verb": verb, "resource": resource, "group": group, "subresource": sub}
    if ns:
        attrs["namespace"] = ns
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": attrs},
    }
    return bool(authz.create_self_subject_access_review(review).status.allowed)


ALLOWED = [
    ("list", "pods", "shop", "", ""),
    ("patch", "pods", "shop", "", ""),
    ("patch", "pods", "shop", "", "status"),
    ("create", "pods", "shop", "", "eviction"),
    ("patch", PLURAL, "shop", GROUP, "status"),
    ("patch", "deployments", "shop", "apps", ""),
    ("patch", "nodes", None, "", ""),
    ("create", "events", "shop", "", ""),
    ("update", "leases", "stickyguard-system", "coordination.k8s.io", ""),
]
DENIED = [
    ("get", "secrets", "shop", "", ""),
    ("list", "secrets", None, "", ""),
    ("list", "configmaps", "shop", "", ""),
    ("create", "pods", "shop", "", ""),
    ("delete", "pods", "shop", "", ""),
    ("update", "pods", "shop", "", ""),
    ("create", "pods", "shop", "", "exec"),
    ("delete", "deployments", "shop", "apps", ""),
    ("update", "deployments", "shop", "apps", ""),
    ("delete", "nodes", None, "", ""),
    ("create", PLURAL, "shop", GROUP, ""),
    ("delete", PLURAL, "shop", GROUP, ""),
    ("patch", "services", "shop", "", ""),
    ("patch", "endpointslices", "shop", "discovery.k8s.io", ""),
    ("create", "clusterrolebindings", None, "rbac.authorization.k8s.io", ""),
    ("update", "leases", "kube-system", "coordination.k8s.io", ""),
    ("patch", "mutatingwebhookconfigurations", None, "admissionregistration.k8s.io", ""),
    ("impersonate", "serviceaccounts", "shop", "", ""),
]


def test_rbac_is_least_privilege(sa_kubeconfig: Path) -> None:
    """Asked as the operator's own token: what it needs, and nothing of what it must not do."""
    authz = client.AuthorizationV1Api(config.new_client_from_config(config_file=str(sa_kubeconfig)))
    missing = [a for a in ALLOWED if not can(authz, a[0], a[1], a[2], a[3], a[4])]
    assert not missing, f"needed but denied: {missing}"
    leaked = [a for a in DENIED if can(authz, a[0], a[1], a[2], a[3], a[4])]
    assert not leaked, f"allowed but never needed: {leaked}"
    core = client.CoreV1Api(config.new_client_from_config(config_file=str(sa_kubeconfig)))
    with pytest.raises(ApiException) as info:
        core.read_namespaced_secret("anything", "kube-system")
    assert info.value.status == 403


def test_webhook_serves_tls_only(operator: OperatorProcess) -> None:
    assert operator.webhook is not None
    port = operator.webhook[0]

    def listening() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    wait_for(listening, timeout=60, what="the webhook listening")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("POST", "/readiness-gate", body=b"{}")
        status = conn.getresponse().status
    except (TimeoutError, http.client.HTTPException, ConnectionError):
        status = None  # the TLS server drops plain HTTP
    finally:
        conn.close()
    assert status in (None, 400), f"plain HTTP answered {status}"
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        ctx.wrap_socket(raw) as tls,
    ):
        assert tls.version() in ("TLSv1.2", "TLSv1.3")


def test_webhook_refuses_to_start_without_a_certificate(sa_kubeconfig: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "stickyguard",
            "run",
            "--webhook-port=9443",
            f"--kubeconfig={sa_kubeconfig}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "only serves TLS" in out.stderr


def test_policy_valid_for_the_schema_but_not_the_operator_is_reported_not_acted_on(
    operator: OperatorProcess,
    fleet: Fleet,
    custom: client.CustomObjectsApi,
    core: client.CoreV1Api,
    namespace: str,
) -> None:
    # The schema's pattern accepts any duration; the operator also bounds it (at most 7d).
    body = policy_body("web", namespace, prometheus={"window": "30d"})
    create_policy(custom, body)
    c = wait_for(
        lambda: condition(get_policy(custom, namespace, "web"), "Ready"),
        timeout=60,
        what="a Ready condition",
    )
    assert c["status"] == "False" and c["reason"] == "InvalidPolicy"
    assert "spec.prometheus.window" in c["message"] and "7d" in c["message"]
    assert c["observedGeneration"] == get_policy(custom, namespace, "web")["metadata"]["generation"]
    wait_for(lambda: events(core, namespace, "InvalidPolicy"), timeout=30, what="an Event")
    # Never acted on: the gated pods are not even marked serving by an invalid policy.
    assert fleet.ready() == []


def test_a_pod_vanishing_mid_cycle_is_not_an_error(
    api_client: client.ApiClient, namespace: str
) -> None:
    policy = parse_policy(policy_body("web", namespace))
    actuator = Actuator(api_client)
    for kind in (DRAIN, RESTORE):
        outcome = actuator.apply(policy, Action(kind, "deleted-meanwhile", "test"))
        assert not outcome.done and outcome.detail == "pod is gone"
