"""The shipped manifests: every kustomization renders with `kubectl kustomize`, applies with
--dry-run=server to the real apiserver, and the operator started from the rendered Deployment's
command, arguments, environment and ServiceAccount works."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from operator_support import Fleet, condition, create_policy, get_policy, policy_body
from stickyguard_lab import testenv
from stickyguard_lab.kubectl import apply, kubectl
from stickyguard_lab.operatorproc import OperatorProcess, install_crd, install_rbac
from stickyguard_lab.procs import Supervisor, port_free
from support import wait_for

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
KUSTOMIZATIONS = ["base", "overlays/kind", "overlays/production", "demo"]


def render(lab: testenv.LabEnv, path: str) -> list[dict[str, Any]]:
    out = kubectl(lab.binaries.kubectl, lab.kubeconfig, "kustomize", str(REPO / "manifests" / path))
    return [d for d in yaml.safe_load_all(out.stdout) if d]


@pytest.fixture(scope="module")
def prepared(lab: testenv.LabEnv) -> None:
    install_rbac(lab)
    install_crd(lab)
    apply(lab.binaries.kubectl, lab.kubeconfig, REPO / "tests" / "fixtures" / "standin-crds.yaml")
    apply(lab.binaries.kubectl, lab.kubeconfig, [render(lab, "demo")[0]])  # its Namespace
    for crd in ("certificates.cert-manager.io", "prometheusrules.monitoring.coreos.com"):
        kubectl(
            lab.binaries.kubectl,
            lab.kubeconfig,
            "wait",
            "--for=condition=Established",
            f"crd/{crd}",
            "--timeout=60s",
        )


@pytest.mark.parametrize("path", KUSTOMIZATIONS)
def test_renders_and_applies_with_server_dry_run(
    lab: testenv.LabEnv, prepared: None, path: str
) -> None:
    docs = render(lab, path)
    assert docs, f"{path} renders nothing"
    out = kubectl(
        lab.binaries.kubectl,
        lab.kubeconfig,
        "apply",
        "--server-side",
        "--force-conflicts",
        "--dry-run=server",
        "-f",
        "-",
        stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}),
        check=False,
    )
    assert out.returncode == 0, out.stderr
    applied = out.stdout.count("(server dry run)")
    assert applied == len(docs), out.stdout


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def test_production_overlay_has_what_production_needs(lab: testenv.LabEnv) -> None:
    docs = render(lab, "overlays/production")
    kinds = {d["kind"] for d in docs}
    assert {
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "Deployment",
        "Service",
        "MutatingWebhookConfiguration",
        "Certificate",
        "ServiceMonitor",
        "PrometheusRule",
        "PodDisruptionBudget",
        "ConfigMap",
    } <= kinds
    (dep,) = by_kind(docs, "Deployment")
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert dep["spec"]["replicas"] == 2
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert c["livenessProbe"] and c["readinessProbe"] and c["resources"]["limits"]["memory"]
    assert "--webhook-cert=/certs/tls.crt" in c["args"]
    (hook,) = by_kind(docs, "MutatingWebhookConfiguration")
    assert hook["webhooks"][0]["clientConfig"]["service"]["name"] == "stickyguard"
    assert "cert-manager.io/inject-ca-from" in hook["metadata"]["annotations"]
    (dashboard,) = by_kind(docs, "ConfigMap")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"


def test_dockerfile_matches_the_deployment(lab: testenv.LabEnv) -> None:
    text = (REPO / "Dockerfile").read_text()
    (dep,) = by_kind(render(lab, "base"), "Deployment")
    pod = dep["spec"]["template"]["spec"]
    uid = pod["securityContext"]["runAsUser"]
    assert f"USER {uid}:" in text, "the image runs as the Deployment's non-root UID"
    froms = [line.split()[1] for line in text.splitlines() if line.startswith("FROM ")]
    assert len(froms) >= 2, "multi-stage"
    assert froms[-1] == "${PYTHON}", "the last stage (the default target) is the operator"
    final = text[text.rindex("\nFROM ") :]
    assert "lab" not in final.replace("slim", ""), "the operator image carries no lab code"
    assert "ARG PYTHON=python:3.11." in text and "-slim-" in text and ":latest" not in text
    assert pod["containers"][0]["command"] == ["stickyguard", "run"]


def test_operator_from_the_rendered_deployment_works(
    lab: testenv.LabEnv,
    prepared: None,
    operator: OperatorProcess,
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
    custom: client.CustomObjectsApi,
    namespace: str,
    tmp_path: Path,
) -> None:
    """Runs the rendered container's command and args as its ServiceAccount. Two things differ
    from a cluster: credentials come as a kubeconfig holding the ServiceAccount's token
    (KUBECONFIG) instead of the mounted token, and the Prometheus URL is the lab's."""
    (dep,) = by_kind(render(lab, "base"), "Deployment")
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    sa, sa_ns = pod["serviceAccountName"], dep["metadata"]["namespace"]
    token = kubectl(
        lab.binaries.kubectl, lab.kubeconfig, "create", "token", sa, "-n", sa_ns
    ).stdout.strip()
    from stickyguard_lab.controlplane import write_kubeconfig

    kubeconfig = write_kubeconfig(
        tmp_path / "kubeconfig",
        lab.control_plane.server,
        lab.control_plane.pki,
        user=sa,
        token=token,
    )
    field_values = {"metadata.name": "stickyguard-rendered", "metadata.namespace": sa_ns}
    env = {
        e["name"]: e.get("value") or field_values[e["valueFrom"]["fieldRef"]["fieldPath"]]
        for e in c["env"]
    }
    env.update(STICKYGUARD_PROMETHEUS_URL=lab.prometheus.url, KUBECONFIG=str(kubeconfig))
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    busy = [p for p in ports.values() if not port_free(p)]
    assert not busy, f"ports of the rendered Deployment in use here: {busy}"
    import shutil
    import sys

    exe = shutil.which(c["command"][0], path=str(Path(sys.executable).parent))
    assert exe, f"{c['command'][0]} is not installed next to {sys.executable}"
    operator.kill()  # the rendered replica must win the Lease to act
    sup = Supervisor(tmp_path)
    fleet = Fleet(lab, core, apps, namespace, replicas=3)
    try:
        sup.start("rendered", [exe, *c["command"][1:], *c["args"]], env=env)
        create_policy(custom, policy_body("web", namespace, safety={"minReadyPods": 1}))
        fleet.wait_all_ready(timeout=90)  # gates marked serving: it acts as the leader

        def ready() -> dict[str, Any] | None:
            cond = condition(get_policy(custom, namespace, "web"), "MetricsAvailable")
            return cond if cond and cond["status"] == "True" else None

        wait_for(ready, timeout=90, what="the policy evaluated with metrics")
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{ports['metrics']}/metrics").read()
        assert (
            f'stickyguard_evaluations_total{{namespace="{namespace}",policy="web",result="ok"}}'.encode()
            in metrics
        )
        assert b"stickyguard_leader 1.0" in metrics
        for name in ("healthz", "gate"):
            with urllib.request.urlopen(f"http://127.0.0.1:{ports[name]}/healthz") as r:
                assert r.status == 200
    finally:
        fleet.close()
        sup.stop_all()
        operator.start()
        leases = client.CoordinationV1Api(core.api_client)
        wait_for(
            lambda: (
                leases.read_namespaced_lease("stickyguard-leader", sa_ns).spec.holder_identity
                == operator.name
            ),
            timeout=60,
            what="the session operator leads again",
        )
