"""Running the real operator next to the lab: the shipped RBAC, a ServiceAccount token
kubeconfig, and `python -m stickyguard run` as a child process (tests and the demo)."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from stickyguard_lab import testenv
from stickyguard_lab.binaries import REPO_ROOT
from stickyguard_lab.controlplane import write_kubeconfig
from stickyguard_lab.kubectl import apply, kubectl
from stickyguard_lab.procs import Child, Supervisor

REPO = REPO_ROOT


def install_rbac(lab: testenv.LabEnv) -> None:
    for f in ("namespace.yaml", "rbac.yaml"):
        apply(lab.binaries.kubectl, lab.kubeconfig, REPO / "manifests" / "base" / f)


def service_account_kubeconfig(
    lab: testenv.LabEnv,
    path: Path,
    server: str | None = None,
    account: str = "stickyguard",
    namespace: str = "stickyguard-system",
) -> Path:
    """A kubeconfig holding a TokenRequest token of a ServiceAccount (by default the operator's
    shipped one), its context in the account's namespace (where the operator's Lease lives), as
    a pod's own would be. `server`: talk to another address (e.g. apiproxy.ApiProxy in front of
    the apiserver)."""
    token = kubectl(
        lab.binaries.kubectl,
        lab.kubeconfig,
        "create",
        "token",
        account,
        "-n",
        namespace,
        "--duration=2h",
    ).stdout.strip()
    return write_kubeconfig(
        path,
        server or lab.control_plane.server,
        lab.control_plane.pki,
        user=account,
        token=token,
        namespace=namespace,
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
        gate_port: int = 0,
        metrics_port: int = 0,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.extra_args = extra_args
        self.sup, self.kubeconfig, self.url, self.name = sup, kubeconfig, prometheus_url, name
        self.webhook = webhook
        self.gate_port = gate_port
        self.metrics_port = metrics_port
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
        if self.gate_port:
            argv.append(f"--gate-port={self.gate_port}")
        if self.metrics_port:
            argv.append(f"--metrics-port={self.metrics_port}")
        argv += self.extra_args
        self.child = self.sup.start(self.name, argv)

    def kill(self) -> None:
        if self.child:
            os.killpg(self.child.popen.pid, signal.SIGKILL)
            self.child.popen.wait(timeout=10)
            self.sup.children = [c for c in self.sup.children if c is not self.child]
            self.child = None

    def stop(self) -> None:
        if self.child:
            self.sup.stop(self.child)
            self.child = None

    def signal(self, sig: int) -> None:
        """Sends `sig` to the operator's process group (SIGSTOP / SIGCONT to pause it)."""
        if self.child:
            os.killpg(self.child.popen.pid, sig)

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
    apply(lab.binaries.kubectl, lab.kubeconfig, [body])


def install_crd(lab: testenv.LabEnv, timeout: float = 60.0) -> None:
    """Applies the StickyPolicy CRD server-side and waits until it is Established and served."""
    import time

    crd = REPO / "crds" / "stickypolicy.yaml"
    apply(lab.binaries.kubectl, lab.kubeconfig, crd)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = kubectl(
            lab.binaries.kubectl,
            lab.kubeconfig,
            "get",
            "crd",
            "stickypolicies.stickyguard.dev",
            "-o",
            "jsonpath={.status.conditions[?(@.type=='Established')].status}",
            check=False,
        )
        served = kubectl(
            lab.binaries.kubectl, lab.kubeconfig, "get", "stickypolicies", "-A", check=False
        )
        if out.stdout.strip() == "True" and served.returncode == 0:
            return
        time.sleep(0.2)
    raise RuntimeError("the StickyPolicy CRD was not established in time")
