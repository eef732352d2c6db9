"""A real Kubernetes control plane on loopback: etcd, kube-apiserver and kube-controller-manager.

Modelled on envtest: client-certificate admin kubeconfig (group system:masters), RBAC
authorization, and service-account signing keys so ServiceAccount tokens work.
"""

from __future__ import annotations

import ssl
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

from stickyguard_lab.binaries import Binaries
from stickyguard_lab.pki import Pki, create_pki
from stickyguard_lab.procs import Supervisor, free_port

# The controllers the lab needs: Deployments/ReplicaSets/EndpointSlices behave for real, deleted
# owners are garbage-collected, namespaces terminate, and PDB status exists for the Eviction API.
CONTROLLERS = (
    "deployment",
    "replicaset",
    "endpointslice",
    "garbagecollector",
    "namespace",
    "disruption",
    "serviceaccount",
)
SERVICE_CIDR = "10.0.0.0/24"


@dataclass(frozen=True)
class ControlPlane:
    server: str
    kubeconfig: Path
    pki: Pki
    etcd_url: str


def write_kubeconfig(
    path: Path,
    server: str,
    pki: Pki,
    user: str = "admin",
    token: str | None = None,
    namespace: str | None = None,
) -> Path:
    """Writes a kubeconfig for `server`: the admin client certificate, or a bearer token;
    `namespace` is the context's namespace."""
    credentials: dict[str, str] = (
        {"token": token}
        if token
        else {"client-certificate": str(pki.admin_cert), "client-key": str(pki.admin_key)}
    )
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "lab",
                "cluster": {"server": server, "certificate-authority": str(pki.ca_cert)},
            }
        ],
        "users": [{"name": user, "user": credentials}],
        "contexts": [
            {
                "name": "lab",
                "context": {
                    "cluster": "lab",
                    "user": user,
                    **({"namespace": namespace} if namespace else {}),
                },
            }
        ],
        "current-context": "lab",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def _https_ok(url: str, pki: Pki) -> bool:
    ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
    ctx.load_cert_chain(str(pki.admin_cert), str(pki.admin_key))
    with urllib.request.urlopen(url, context=ctx, timeout=2) as resp:
        return bool(resp.status == 200)


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as resp:
        return bool(resp.status == 200)


def start_control_plane(sup: Supervisor, bins: Binaries, state_dir: Path) -> ControlPlane:
    pki = create_pki(state_dir / "pki")
    etcd_port, etcd_peer, api_port = free_port(), free_port(), free_port()
    etcd_url = f"http://127.0.0.1:{etcd_port}"
    etcd = sup.start(
        "etcd",
        [
            bins.etcd,
            "--name=lab",
            f"--data-dir={state_dir / 'etcd'}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls=http://127.0.0.1:{etcd_peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}",
            f"--initial-cluster=lab=http://127.0.0.1:{etcd_peer}",
            "--unsafe-no-fsync",  # test data only: trade durability for speed
            "--log-level=warn",
        ],
    )
    sup.wait_until(etcd, lambda: _http_ok(f"{etcd_url}/health"), "etcd /health")

    server = f"https://127.0.0.1:{api_port}"
    apiserver = sup.start(
        "kube-apiserver",
        [
            bins.kube_apiserver,
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={api_port}",
            f"--tls-cert-file={pki.serving_cert}",
            f"--tls-private-key-file={pki.serving_key}",
            f"--client-ca-file={pki.ca_cert}",
            "--authorization-mode=RBAC",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            f"--service-account-key-file={pki.sa_pub}",
            f"--service-account-signing-key-file={pki.sa_key}",
            "--service-account-issuer=https://kubernetes.default.svc",
            "--allow-privileged=true",
            # Pods need no auto-mounted token here (no kubelet); the operator gets its token
            # through the TokenRequest API, which does not depend on this admission plugin.
            "--disable-admission-plugins=ServiceAccount",
            f"--cert-dir={state_dir / 'pki'}",
            "--v=0",
        ],
    )
    sup.wait_until(
        apiserver, lambda: _https_ok(f"{server}/readyz", pki), "apiserver /readyz", timeout=120
    )
    kubeconfig = write_kubeconfig(state_dir / "kubeconfig", server, pki)

    sup.start(
        "kube-controller-manager",
        [
            bins.kube_controller_manager,
            f"--kubeconfig={kubeconfig}",
            f"--controllers={','.join(CONTROLLERS)}",
            "--leader-elect=false",
            "--secure-port=0",
            f"--service-account-private-key-file={pki.sa_key}",
            f"--root-ca-file={pki.ca_cert}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--v=1",
        ],
    )
    return ControlPlane(server=server, kubeconfig=kubeconfig, pki=pki, etcd_url=etcd_url)
