"""`stickyguard status` / `kubectl sticky` and `stickyguard doctor` against the real control
plane and Prometheus: a healthy setup passes every check, and each broken setup fails exactly
the check that names it, with its fix."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from operator_support import GVR, Fleet, create_policy, policy_body
from stickyguard.core.names import SERVING
from stickyguard_lab import testenv
from stickyguard_lab.kubectl import apply, kubectl
from stickyguard_lab.operatorproc import OperatorProcess
from support import service, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("crd_installed")]
BIN = Path(sys.executable).parent


def ingress(name: str, backend: str) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": name,
            "annotations": {
                "nginx.ingress.kubernetes.io/affinity": "cookie",
                "nginx.ingress.kubernetes.io/session-cookie-name": "route",
            },
        },
        "spec": {
            "defaultBackend": {"service": {"name": backend, "port": {"number": 80}}},
        },
    }


def cli(
    lab: testenv.LabEnv, *args: str, exe: str = "stickyguard"
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{BIN}:{lab.binaries.kubectl.parent}:{os.environ['PATH']}"}
    return subprocess.run(
        [
            str(lab.binaries.kubectl if exe == "kubectl" else BIN / exe),
            *args,
            f"--kubeconfig={lab.kubeconfig}",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


class Doctor:
    def __init__(self, lab: testenv.LabEnv, ns: str) -> None:
        self.lab, self.ns = lab, ns

    def run(self, *extra: str, policy: str = "web") -> dict[str, dict[str, str]]:
        url = f"--prometheus-url={self.lab.prometheus.url}"  # the operator's default URL
        out = cli(self.lab, "doctor", "-n", self.ns, policy, "-o", "json", url, *extra)
        assert out.returncode in (0, 1), out.stderr
        checks = {c["name"]: c for c in json.loads(out.stdout)}
        assert (out.returncode == 1) == any(c["result"] == "fail" for c in checks.values())
        return checks

    def healthy(self, *extra: str) -> dict[str, dict[str, str]]:
        """Waits until Prometheus has scraped every pod (a new pod takes a scrape or two):
        every check passes but `sessions`, which warns about the policies' short interval."""

        def as_expected(name: str, check: dict[str, str]) -> bool:
            return short_interval(check) if name == "sessions" else check["result"] == "pass"

        return wait_for(
            lambda: (c := self.run(*extra)) and all(as_expected(k, x) for k, x in c.items()) and c,
            timeout=90,
            what="every doctor check passing",
            detail=lambda: json.dumps(self.run(*extra), indent=1),
        )


def short_interval(check: dict[str, str]) -> bool:
    """doctor's warning about these policies: they read no session gauges and evaluate every
    5 s (to keep the tests short), so retry storms could drain a pod. True, and not what these
    tests are about."""
    return check["result"] == "warn" and "intervalSeconds is 5" in check["detail"]


def failing(checks: dict[str, dict[str, str]]) -> dict[str, str]:
    return {
        n: c["result"]
        for n, c in checks.items()
        if c["result"] in ("fail", "warn") and not short_interval(c)
    }


@pytest.fixture
def setup(
    lab: testenv.LabEnv,
    operator: OperatorProcess,
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
    custom: client.CustomObjectsApi,
    api_client: client.ApiClient,
    namespace: str,
) -> Iterator[tuple[Fleet, Doctor]]:
    fleet = Fleet(lab, core, apps, namespace, replicas=3, scraped="app=web,scraped!=no")
    client.NetworkingV1Api(api_client).create_namespaced_ingress(namespace, ingress("web", "web"))
    body = policy_body(
        "web",
        namespace,
        actions={"drain": {"method": "ReadinessGate", "evict": False}},
        safety={"minReadyPods": 1, "maxDrainedPercent": 34},
    )
    create_policy(custom, body)
    fleet.wait_all_ready()
    yield fleet, Doctor(lab, namespace)
    fleet.close()


def test_healthy_setup_passes_every_check_and_status_shows_it(
    lab: testenv.LabEnv, setup: tuple[Fleet, Doctor], namespace: str
) -> None:
    fleet, doctor = setup
    checks = doctor.healthy()
    assert set(checks) == {
        "policy",
        "selector",
        "service",
        "drain-mechanism",
        "affinity",
        "prometheus",
        "series",
        "freshness",
        "sessions",
        "thresholds",
        "rbac",
        "evaluated",
    }
    text = cli(lab, "doctor", "-n", namespace, "web", f"--prometheus-url={lab.prometheus.url}")
    assert text.returncode == 0 and text.stdout.count("PASS") == 11, text.stdout

    bad = fleet.ready()[0]
    fleet.exporter.set_ratio(bad, 0.3)

    def drained_row() -> str | None:
        out = cli(lab, "sticky", "status", "-n", namespace, exe="kubectl")
        assert out.returncode == 0, out.stderr
        return out.stdout if bad in out.stdout and "Draining" in out.stdout else None

    # `kubectl sticky status` runs the kubectl-sticky plugin from PATH.
    out = wait_for(
        drained_row,
        timeout=90,
        what="the drained pod in `kubectl sticky status`",
        detail=lambda: cli(lab, "status", "-n", namespace, "-o", "wide").stdout,
    )
    header, row = out.splitlines()[:2]
    assert header.split()[:4] == ["NAMESPACE", "NAME", "MODE", "CLASS"]
    assert row.split()[:4] == [namespace, "web", "Enforce", "concentrated"]
    pod_row = next(line for line in out.splitlines() if bad in line)
    node = fleet.core.read_namespaced_pod(bad, namespace).spec.node_name
    assert node in pod_row and "bad vs" in pod_row


def test_no_service_fails_the_service_check(
    setup: tuple[Fleet, Doctor], core: client.CoreV1Api, namespace: str
) -> None:
    _, doctor = setup
    doctor.healthy()
    core.delete_namespaced_service("web", namespace)
    checks = doctor.run()
    assert checks["service"]["result"] == "fail"
    assert "create a Service" in checks["service"]["fix"]
    # Without a Service, no Ingress affinity can apply either; that is a warning, not a failure.
    assert failing(checks) == {"service": "fail", "affinity": "warn"}
    core.create_namespaced_service(namespace, service("web", {"app": "web"}))
    doctor.healthy()


def test_pod_without_the_gate_fails_the_drain_mechanism_check(
    lab: testenv.LabEnv,
    operator: OperatorProcess,
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
    custom: client.CustomObjectsApi,
    namespace: str,
) -> None:
    fleet = Fleet(lab, core, apps, namespace, replicas=3)
    try:
        # Created before any ReadinessGate policy selects it: the webhook adds no gate.
        core.create_namespaced_pod(
            namespace,
            {
                "metadata": {"name": "web-nogate", "labels": {"app": "web"}},
                "spec": {"containers": [{"name": "app", "image": "example.invalid/app:1"}]},
            },
        )
        client.NetworkingV1Api(core.api_client).create_namespaced_ingress(
            namespace, ingress("web", "web")
        )
        create_policy(custom, policy_body("web", namespace))
        doctor = Doctor(lab, namespace)
        checks = wait_for(
            lambda: (
                (c := doctor.run())
                and c["series"]["result"] == "pass"
                and c["evaluated"]["result"] == "pass"
                and c
            ),
            timeout=90,
            what="series for all four pods, and a first evaluation",
        )
        assert failing(checks) == {"drain-mechanism": "fail"}
        assert "web-nogate" in checks["drain-mechanism"]["detail"]
        assert "webhook" in checks["drain-mechanism"]["fix"]
    finally:
        fleet.close()


def test_wrong_prometheus_url_fails_the_prometheus_check(
    lab: testenv.LabEnv, setup: tuple[Fleet, Doctor], custom: client.CustomObjectsApi
) -> None:
    _, doctor = setup
    doctor.healthy()
    # The operator's default URL is what `--prometheus-url` stands for (the policy has none).
    checks = doctor.run("--prometheus-url=http://127.0.0.1:1")
    assert failing(checks) == {"prometheus": "fail"}
    assert "127.0.0.1:1" in checks["prometheus"]["detail"]
    assert checks["series"]["result"] == checks["freshness"]["result"] == "skip"


def test_pod_without_series_fails_the_series_check(
    setup: tuple[Fleet, Doctor], core: client.CoreV1Api, namespace: str
) -> None:
    _, doctor = setup
    doctor.healthy()
    core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": "web-unscraped", "labels": {"app": "web", "scraped": "no"}},
            "spec": {
                "readinessGates": [{"conditionType": SERVING}],
                "containers": [{"name": "app", "image": "example.invalid/app:1"}],
            },
        },
    )
    checks = doctor.run()
    assert checks["series"]["result"] == "fail"
    assert "web-unscraped" in checks["series"]["detail"]
    # The generic preset's freshness query also misses the pod: never scraped is stale.
    assert failing(checks) == {"series": "fail", "freshness": "fail"}


def test_rbac_missing_a_verb_fails_the_rbac_check(
    lab: testenv.LabEnv, setup: tuple[Fleet, Doctor], namespace: str
) -> None:
    _, doctor = setup
    doctor.healthy()
    role = kubectl(
        lab.binaries.kubectl,
        lab.kubeconfig,
        "get",
        "clusterrole",
        "stickyguard-operator",
        "-o",
        "json",
    )
    rules = [
        r for r in json.loads(role.stdout)["rules"] if "pods/status" not in r.get("resources", [])
    ]
    apply(
        lab.binaries.kubectl,
        lab.kubeconfig,
        [
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": "limited", "namespace": namespace},
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": {"name": "limited", "namespace": namespace},
                "rules": rules,
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": "limited", "namespace": namespace},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": "limited",
                },
                "subjects": [{"kind": "ServiceAccount", "name": "limited", "namespace": namespace}],
            },
        ],
    )
    checks = doctor.run(f"--operator-service-account={namespace}:limited")
    assert failing(checks) == {"rbac": "fail"}
    assert "patch pods/status" in checks["rbac"]["detail"]  # the readiness gate


def test_session_gauges_are_read_from_prometheus_and_judged(
    setup: tuple[Fleet, Doctor], custom: client.CustomObjectsApi, namespace: str
) -> None:
    _, doctor = setup
    doctor.healthy()
    active = 'sum by (pod) (app_sessions_active{namespace="{namespace}"})'

    def read_gauges(degraded: str, result: str) -> dict[str, str]:
        queries = {"activeSessions": active, "degradedSessions": degraded}
        custom.patch_namespaced_custom_object(
            GVR[0], GVR[1], namespace, GVR[2], "web", {"spec": {"prometheus": {"queries": queries}}}
        )
        return wait_for(
            lambda: (c := doctor.run()["sessions"])["result"] == result and c,
            timeout=60,
            what=f"the sessions check to {result}",
            detail=lambda: json.dumps(doctor.run()["sessions"]),
        )

    # The exporter's 50 sessions on each of the 3 pods, none hurt.
    check = read_gauges(f"{active} * 0", "pass")
    assert check["detail"] == "150 active sessions, 0 of them hurt, on 3 pods"
    # A "hurt" gauge above the active one on every pod reads like a counter of sessions ever hurt.
    check = read_gauges(f"{active} * 2", "warn")
    assert "counts every session ever hurt" in check["detail"] and "gauge" in check["fix"]
