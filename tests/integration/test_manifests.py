"""The shipped manifests: every kustomization renders with `kubectl kustomize`, applies with
--dry-run=server to the real apiserver, the operator started from the rendered Deployment's
command, arguments, environment and ServiceAccount works, and the kind demo's Traefik, run with
its rendered arguments as its ServiceAccount, routes the demo's Ingress with the sticky cookie the
policy names."""

from __future__ import annotations

import json
import re
import shlex
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from operator_support import Fleet, condition, create_policy, get_policy, policy_body
from stickyguard.core.names import SERVING
from stickyguard_lab import testenv
from stickyguard_lab.binaries import find_peer
from stickyguard_lab.kubectl import apply, kubectl
from stickyguard_lab.operatorproc import (
    OperatorProcess,
    install_crd,
    install_rbac,
    service_account_kubeconfig,
)
from stickyguard_lab.peerproc import out_of_cluster_env
from stickyguard_lab.procs import Supervisor, free_port, port_free
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
    # The test before may have just stopped a process on one of them (the demo app's 8080):
    # give its exit a few seconds before calling the port taken.
    wait_for(
        lambda: all(port_free(p) for p in ports.values()),
        timeout=20,
        what="the rendered Deployment's ports free here",
        detail=lambda: str([p for p in ports.values() if not port_free(p)]),
    )
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


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (doc,) = [d for d in by_kind(docs, kind) if d["metadata"]["name"] == name]
    return doc


def flags(container: dict[str, Any]) -> dict[str, str]:
    """--name=value arguments as {name: value}."""
    return dict(a.removeprefix("--").split("=", 1) for a in container["args"])


def test_kind_demo_wiring(lab: testenv.LabEnv) -> None:
    """What `make kind-demo` relies on and a dry run does not check: each link from the users'
    Job to the shop's pods names the object the next one is."""
    docs = render(lab, "demo")
    ns = docs[0]["metadata"]["name"]
    shop, policy = one(docs, "Service", "shop"), one(docs, "StickyPolicy", "shop")
    ingress, ic = one(docs, "Ingress", "shop"), one(docs, "IngressClass", "traefik")
    traefik_svc, traefik = one(docs, "Service", "traefik"), one(docs, "Deployment", "traefik")
    (c,) = traefik["spec"]["template"]["spec"]["containers"]
    args = flags(c)
    # Traefik serves the Ingress's class, in the demo's namespace, at the version the lab tests.
    assert ingress["spec"]["ingressClassName"] == ic["metadata"]["name"]
    assert ic["spec"]["controller"] == "traefik.io/ingress-controller"
    assert args["providers.kubernetesingress.ingressclass"] == ic["metadata"]["name"]
    assert args["providers.kubernetesingress.namespaces"] == ns
    versions = (REPO / "hack" / "versions.env").read_text()
    (version,) = re.findall(r"^TRAEFIK_VERSION=(\S+)$", versions, re.M)
    assert c["image"] == f"traefik:{version}"
    # The Ingress reaches the shop Service by a port it has; Traefik needs endpoints, not DNS.
    (path,) = ingress["spec"]["rules"][0]["http"]["paths"]
    backend = path["backend"]["service"]
    assert backend["name"] == "shop"
    assert backend["port"]["name"] in {p["name"] for p in shop["spec"]["ports"]}
    assert shop["spec"].get("clusterIP") != "None"
    # Stickiness sits on the Service (Traefik ignores it on an Ingress), under the policy's cookie.
    sticky = "traefik.ingress.kubernetes.io/service.sticky.cookie"
    annotations = shop["metadata"]["annotations"]
    assert annotations[sticky] == "true"
    assert annotations[f"{sticky}.name"] == policy["spec"]["affinity"]["cookieName"]
    # The Service and the policy select the shop's pods, which carry the gate the drain flips.
    pod = one(docs, "Deployment", "shop")["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert shop["spec"]["selector"].items() <= labels.items()
    assert policy["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert policy["spec"]["service"]["name"] == "shop"
    assert policy["spec"]["actions"]["drain"]["method"] == "ReadinessGate"
    assert {"conditionType": SERVING} in pod["spec"]["readinessGates"]
    # The traefik Service sends its port to the `web` entrypoint's address.
    (svc_port,) = traefik_svc["spec"]["ports"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert args["entrypoints.web.address"] == f":{ports[svc_port['targetPort']]}"
    probe = c["readinessProbe"]["httpGet"]
    assert probe["path"] == "/ping" and "ping" in args
    assert args["entrypoints.traefik.address"] == f":{ports[probe['port']]}"
    # hack/kind-demo.sh waits for every Deployment and sends the users to the traefik Service.
    script = (REPO / "hack" / "kind-demo.sh").read_text()
    (rollout,) = [line for line in script.splitlines() if "rollout status" in line]
    waited = {w.removeprefix("deploy/") for w in shlex.split(rollout) if w.startswith("deploy/")}
    assert waited == {d["metadata"]["name"] for d in by_kind(docs, "Deployment")}
    job = shlex.split(script[script.index("stickyguard_lab.loadgen") :].splitlines()[0])
    target = dict(zip(job[1::2], job[2::2], strict=False))
    assert (target["--host"], int(target["--port"])) == (
        traefik_svc["metadata"]["name"],
        svc_port["port"],
    )


def traefik_api(port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/{path}", timeout=5) as r:
        return json.loads(r.read())


def test_kind_demo_traefik_routes_the_shop_as_its_service_account(
    lab: testenv.LabEnv, prepared: None, tmp_path: Path
) -> None:
    """The real Traefik with the rendered container's arguments and the rendered RBAC's
    credentials: the provider waits for every informer it starts to sync, so a missing
    permission leaves it with no route at all. Differences from a pod: a kubeconfig with the
    ServiceAccount's token, entrypoints on free loopback ports, the API on to look inside, and
    a hand-made EndpointSlice standing in for the shop's pods (the lab runs no demo image)."""
    docs = render(lab, "demo")
    ns = docs[0]["metadata"]["name"]
    rbac = {"ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}
    wiring = [
        d
        for d in docs
        if (d["kind"] in rbac and "traefik" in d["metadata"]["name"])
        or d["kind"] == "IngressClass"
        or (d["kind"], d["metadata"]["name"]) in {("Service", "shop"), ("Ingress", "shop")}
    ]
    endpoint = {"addresses": ["10.99.0.7"], "conditions": {"ready": True}}
    stand_in = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "shop-stand-in",
            "namespace": ns,
            "labels": {
                "kubernetes.io/service-name": "shop",
                "endpointslice.kubernetes.io/managed-by": "test-manifests",
            },
        },
        "addressType": "IPv4",
        "endpoints": [endpoint],
        "ports": [{"name": "http", "port": 8000, "protocol": "TCP"}],
    }
    (c,) = one(docs, "Deployment", "traefik")["spec"]["template"]["spec"]["containers"]
    sa = one(docs, "Deployment", "traefik")["spec"]["template"]["spec"]["serviceAccountName"]
    web, admin = free_port(), free_port()
    argv = [
        a
        for a in c["args"]
        if not a.startswith(("--entrypoints.web.address=", "--entrypoints.traefik.address="))
    ]
    argv += [
        f"--entrypoints.web.address=127.0.0.1:{web}",
        f"--entrypoints.traefik.address=127.0.0.1:{admin}",
        "--api=true",
        "--api.insecure=true",
        "--api.dashboard=false",
    ]
    sup = Supervisor(tmp_path)
    try:
        apply(lab.binaries.kubectl, lab.kubeconfig, [*wiring, stand_in])
        kubeconfig = service_account_kubeconfig(
            lab, tmp_path / "kubeconfig", account=sa, namespace=ns
        )
        env = {**out_of_cluster_env(lab), "KUBECONFIG": str(kubeconfig)}
        child = sup.start("traefik", [find_peer("traefik"), *argv], env=env)
        sup.wait_until(child, lambda: bool(traefik_api(admin, "overview")), "Traefik's API")

        def sticky_service() -> dict[str, Any] | None:
            for s in traefik_api(admin, "http/services"):
                if s["name"].startswith(f"{ns}-shop-") and s.get("provider") == "kubernetes":
                    return dict(s)
            return None

        service = wait_for(sticky_service, timeout=30, what="Traefik's service for the shop")
        lb = service["loadBalancer"]
        cookie = one(docs, "StickyPolicy", "shop")["spec"]["affinity"]["cookieName"]
        assert lb["sticky"]["cookie"]["name"] == cookie
        assert [s["url"] for s in lb["servers"]] == ["http://10.99.0.7:8000"]
        routers = [
            r
            for r in traefik_api(admin, "http/routers")
            if f"{r['service']}@{r['provider']}" == service["name"]
        ]
        assert [r["entryPoints"] for r in routers] == [["web"]], routers
        # A drained pod's endpoint turns NotReady (not serving): Traefik drops the server.
        stand_in["endpoints"] = [{**endpoint, "conditions": {"ready": False, "serving": False}}]
        apply(lab.binaries.kubectl, lab.kubeconfig, [stand_in])
        wait_for(
            lambda: (s := sticky_service()) is None or not s["loadBalancer"].get("servers"),
            timeout=30,
            what="Traefik to drop the drained endpoint",
        )
    finally:
        sup.stop_all()
        kubectl(
            lab.binaries.kubectl,
            lab.kubeconfig,
            "delete",
            "--ignore-not-found",
            "-f",
            "-",
            stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": [*wiring, stand_in]}),
            check=False,
        )
