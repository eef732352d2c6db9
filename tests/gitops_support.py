"""What the GitOps tests keep in "Git": examples/gitops/apps/web as the base, and an overlay
that puts it in the test's namespace, speeds detection up for a test, and picks the version
(the template's `version` label and image). The same folder is applied by a stand-in
reconciler (`kubectl apply --server-side` as kustomize-controller, without force, so any
conflict shows) or committed to a Git repository that Flux serves from.

Also: the app's synthetic traffic; the sessions of a version and whether they have been
re-pinned, read from the real EndpointSlices (a drained pod's endpoint turns not-ready there,
which is what every sticky layer re-pins on; tests/integration/test_traefik.py shows Traefik
doing it); and the waits both GitOps tests make for the policy's conditions as a bad version
is contained and its revert clears it."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client

from operator_support import condition, get_policy
from stickyguard_lab import testenv
from stickyguard_lab.binaries import REPO_ROOT
from stickyguard_lab.exporter import SyntheticExporter
from support import wait_for

BASE = REPO_ROOT / "examples" / "gitops" / "apps" / "web"
RECONCILER = "kustomize-controller"  # Flux's field manager (what core/gitops.py recognises)


def overlay(version: str, namespace: str, threshold: float = 0.01, mode: str = "Enforce") -> str:
    """The overlay's kustomization.yaml for `version` (v1, v2, ...)."""
    return f"""apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: {namespace}
resources:
  - ../../apps/web
patches:
  - target: {{kind: Deployment, name: web}}
    patch: |
      - {{op: replace, path: /spec/template/metadata/labels/version, value: {version}}}
      - {{op: replace, path: /spec/template/spec/containers/0/image,
          value: registry.example.com/web:{version}}}
  - target: {{kind: StickyPolicy, name: web}}
    patch: |
      - {{op: replace, path: /spec/prometheus/window, value: 10s}}
      - {{op: replace, path: /spec/detection/intervalSeconds, value: 5}}
      - {{op: add, path: /spec/detection/absoluteThreshold, value: {threshold}}}
      - {{op: replace, path: /spec/actions/mode, value: {mode}}}
      - {{op: replace, path: /spec/actions/drain/evict, value: false}}
      - {{op: replace, path: /spec/safety/cooldownSeconds, value: 0}}
"""


@dataclass
class GitTree:
    """The repository's working tree: apps/web (the example) and clusters/test (the overlay)."""

    root: Path
    namespace: str

    def __post_init__(self) -> None:
        shutil.copytree(BASE, self.root / "apps" / "web", dirs_exist_ok=True)
        self.write("v1")

    @property
    def path(self) -> Path:
        return self.root / "clusters" / "test"

    def write(self, version: str, **policy: Any) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / "kustomization.yaml").write_text(overlay(version, self.namespace, **policy))


def reconcile(kubectl: Path, kubeconfig: Path, tree: GitTree) -> subprocess.CompletedProcess[str]:
    """One pass of the stand-in reconciler: server-side apply as Flux's field manager, without
    --force-conflicts (a conflict fails the apply and is counted)."""
    return subprocess.run(
        [
            str(kubectl),
            f"--kubeconfig={kubeconfig}",
            "apply",
            "--server-side",
            f"--field-manager={RECONCILER}",
            "-k",
            str(tree.path),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def pods_of(core: client.CoreV1Api, ns: str, version: str) -> list[Any]:
    return [
        p
        for p in core.list_namespaced_pod(ns, label_selector=f"app=web,version={version}").items
        if not p.metadata.deletion_timestamp
    ]


def ready_pods(core: client.CoreV1Api, ns: str, version: str) -> list[str]:
    """Names of the pods of `version` that are Ready and not terminating."""
    return [
        p.metadata.name
        for p in pods_of(core, ns, version)
        if any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
    ]


def web_traffic(lab: testenv.LabEnv, core: client.CoreV1Api, ns: str) -> SyntheticExporter:
    """Requests to every pod of app=web, scraped by the lab's Prometheus until stopped."""
    exporter = SyntheticExporter(ns, "web")
    exporter.register(lab.prometheus.targets_dir, ns)
    exporter.follow(core, "app=web")
    return exporter


def ready_endpoints(discovery: client.DiscoveryV1Api, ns: str) -> set[str]:
    """Pods behind Service web whose endpoint is ready: where sticky sessions can be pinned."""
    out = set()
    for s in discovery.list_namespaced_endpoint_slice(
        ns, label_selector="kubernetes.io/service-name=web"
    ).items:
        for e in s.endpoints or []:
            if e.target_ref is not None and (e.conditions is None or e.conditions.ready):
                out.add(e.target_ref.name)
    return out


def repinned(
    core: client.CoreV1Api, discovery: client.DiscoveryV1Api, ns: str, version: str
) -> bool:
    """Every pod of `version` exists and is out of the Service's ready endpoints (its sessions
    re-pin to the other pods), and the Service still has ready endpoints to re-pin to."""
    pods = {p.metadata.name for p in pods_of(core, ns, version)}
    ready = ready_endpoints(discovery, ns)
    return bool(pods) and not (pods & ready) and bool(ready)


def wait_repinned(
    core: client.CoreV1Api,
    discovery: client.DiscoveryV1Api,
    ns: str,
    version: str,
    detail: Callable[[], object],
) -> None:
    """Until a pod of `version` has been marked serving (users get pinned to it: the guard
    needs its traffic to judge it) and then, judged failing and contained, every one is out of
    the ready endpoints: its sessions re-pin to the other version."""
    wait_for(
        lambda: (
            {p.metadata.name for p in pods_of(core, ns, version)} & ready_endpoints(discovery, ns)
        ),
        timeout=60,
        what=f"a {version} pod serving",
        detail=detail,
    )
    wait_for(
        lambda: repinned(core, discovery, ns, version),
        timeout=120,
        what=f"every {version} session re-pinned (its pods out of the ready endpoints)",
        detail=detail,
    )


def wait_web_condition(
    custom: client.CustomObjectsApi,
    ns: str,
    ctype: str,
    holds: Callable[[dict[str, Any]], bool] = lambda c: True,
    timeout: float = 30,
    what: str = "",
    detail: Callable[[], object] | None = None,
) -> dict[str, Any]:
    """The web policy's condition `ctype`, once it is set and `holds`."""

    def held() -> dict[str, Any] | None:
        found = condition(get_policy(custom, ns, "web"), ctype)
        return found if found is not None and holds(found) else None

    found = wait_for(held, timeout=timeout, what=what or f"{ctype} condition", detail=detail)
    assert found is not None  # wait_for returns only once held() is truthy
    return found


def wait_version_contained(custom: client.CustomObjectsApi, ns: str) -> dict[str, Any]:
    """The web policy's RolloutGuarded condition, once its reason is VersionContained."""
    return wait_web_condition(
        custom,
        ns,
        "RolloutGuarded",
        lambda c: c["reason"] == "VersionContained",
        what="RolloutGuarded=VersionContained",
    )


def wait_containment_cleared(
    custom: client.CustomObjectsApi, ns: str, timeout: float, detail: Callable[[], object]
) -> None:
    """Until the web policy's RolloutGuarded condition has another reason than
    VersionContained."""
    wait_web_condition(
        custom,
        ns,
        "RolloutGuarded",
        lambda c: c["reason"] != "VersionContained",
        timeout=timeout,
        what="containment cleared",
        detail=detail,
    )


def wait_back_on_v1(core: client.CoreV1Api, ns: str, timeout: float) -> None:
    """Until no v2 pod is left and the example's 6 v1 pods are Ready again."""
    wait_for(
        lambda: not pods_of(core, ns, "v2") and len(ready_pods(core, ns, "v1")) == 6,
        timeout=timeout,
        what="back on v1",
    )
