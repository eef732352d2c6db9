"""Running the real operator in tests: as the shipped ServiceAccount, as a child process."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from kubernetes import client

from stickyguard.lab import testenv
from stickyguard.lab.controlplane import write_kubeconfig
from stickyguard.lab.procs import Child, Supervisor
from support import kubectl

REPO = Path(__file__).resolve().parents[1]
GVR = ("stickyguard.dev", "v1alpha1", "stickypolicies")


def install_rbac(lab: testenv.LabEnv) -> None:
    for f in ("namespace.yaml", "rbac.yaml"):
        kubectl(
            lab.binaries.kubectl,
            lab.kubeconfig,
            "apply",
            "--server-side",
            "-f",
            str(REPO / "manifests" / "base" / f),
        )


def service_account_kubeconfig(lab: testenv.LabEnv, path: Path) -> Path:
    """A kubeconfig holding a TokenRequest token of the shipped ServiceAccount."""
    token = kubectl(
        lab.binaries.kubectl,
        lab.kubeconfig,
        "create",
        "token",
        "stickyguard",
        "-n",
        "stickyguard-system",
        "--duration=2h",
    ).stdout.strip()
    return write_kubeconfig(
        path, lab.control_plane.server, lab.control_plane.pki, user="stickyguard", token=token
    )


class OperatorProcess:
    """`python -m stickyguard run` as a child process that tests can kill and restart."""

    def __init__(
        self,
        sup: Supervisor,
        kubeconfig: Path,
        prometheus_url: str,
        name: str = "operator",
        webhook: tuple[int, Path, Path] | None = None,
    ) -> None:
        self.sup, self.kubeconfig, self.url, self.name = sup, kubeconfig, prometheus_url, name
        self.webhook = webhook
        self.child: Child | None = None

    def start(self) -> None:
        argv = [
            sys.executable,
            "-m",
            "stickyguard",
            "run",
            f"--kubeconfig={self.kubeconfig}",
            f"--prometheus-url={self.url}",
            f"--identity={self.name}",
        ]
        if self.webhook:
            port, cert, key = self.webhook
            argv += [f"--webhook-port={port}", f"--webhook-cert={cert}", f"--webhook-key={key}"]
        self.child = self.sup.start(self.name, argv)

    def kill(self) -> None:
        if self.child:
            import os
            import signal

            os.killpg(self.child.popen.pid, signal.SIGKILL)
            self.child.popen.wait(timeout=10)
            self.sup.children = [c for c in self.sup.children if c is not self.child]
            self.child = None

    def stop(self) -> None:
        if self.child:
            self.sup.stop(self.child)
            self.child = None

    def log(self) -> str:
        return self.child.log_tail(60) if self.child else ""


def register_webhook(lab: testenv.LabEnv, port: int) -> None:
    """The MutatingWebhookConfiguration pointing the apiserver at the operator's webhook."""
    import base64

    ca = base64.b64encode(lab.control_plane.pki.ca_cert.read_bytes()).decode()
    body = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "stickyguard-readiness-gate"},
        "webhooks": [
            {
                "name": "readiness-gate.stickyguard.dev",
                "clientConfig": {"url": f"https://127.0.0.1:{port}/readiness-gate", "caBundle": ca},
                "rules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE"],
                        "resources": ["pods"],
                    }
                ],
                "failurePolicy": "Ignore",
                "sideEffects": "None",
                "timeoutSeconds": 5,
                "admissionReviewVersions": ["v1"],
            }
        ],
    }
    import yaml

    kubectl(
        lab.binaries.kubectl,
        lab.kubeconfig,
        "apply",
        "--server-side",
        "-f",
        "-",
        stdin=yaml.safe_dump(body),
    )


def policy_body(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "selector": {"matchLabels": {"app": "web"}},
        "prometheus": {"window": "10s"},
        "detection": {"intervalSeconds": 5, "minRequests": 50, "consecutive": 2},
        "actions": {
            "mode": "Enforce",
            "drain": {"method": "ReadinessGate", "drainTimeoutSeconds": 10, "evict": True},
        },
        "safety": {"maxDrainedPercent": 25, "minReadyPods": 2, "cooldownSeconds": 0},
    }
    for key, value in spec.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return {
        "apiVersion": "stickyguard.dev/v1alpha1",
        "kind": "StickyPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": base,
    }


def get_policy(custom: client.CustomObjectsApi, ns: str, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = custom.get_namespaced_custom_object(GVR[0], GVR[1], ns, GVR[2], name)
    return obj


def condition(obj: dict[str, Any], ctype: str) -> dict[str, Any] | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c["type"] == ctype:
            return dict(c)
    return None


def events(
    core: client.CoreV1Api, ns: str, reason: str | None = None, kind: str = "StickyPolicy"
) -> list[Any]:
    """Events about objects of `kind` (the policy by default; actions are also posted on pods)."""
    items = core.list_namespaced_event(ns).items
    return [
        e
        for e in items
        if (reason is None or e.reason == reason) and e.involved_object.kind == kind
    ]
