"""The rollout guard next to a reconciler that re-applies the workload from "Git" every few
seconds (a stand-in: `kubectl apply --server-side` as Flux's field manager, without force, so
any conflict fails the apply and is counted; tests/integration/test_flux.py runs the real Flux
controllers). Real apiserver, Deployment/ReplicaSet/EndpointSlice controllers, Prometheus and
operator: a bad version is contained without touching the Deployment, stays contained through
re-applies, and the revert clears it; every stickyguard write is a server-side apply as
`stickyguard` on its own fields only."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

import gitops_support as gitops
from operator_support import events, get_policy
from stickyguard.core.names import CONTAINED, DELETION_COST, DRAINED_BY, GROUP
from stickyguard_lab import testenv
from stickyguard_lab.exporter import SyntheticExporter
from stickyguard_lab.operatorproc import OperatorProcess
from support import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("crd_installed")]


class Reconciler:
    """The stand-in: applies the tree and counts conflicts (and any other failure)."""

    def __init__(self, lab: testenv.LabEnv, tree: gitops.GitTree) -> None:
        self.lab, self.tree = lab, tree
        self.applies = 0
        self.conflicts = 0
        self.failures: list[str] = []

    def apply(self) -> None:
        proc = gitops.reconcile(self.lab.binaries.kubectl, self.lab.kubeconfig, self.tree)
        self.applies += 1
        if proc.returncode != 0:
            self.failures.append(proc.stderr)
            if "conflict" in proc.stderr.lower():
                self.conflicts += 1


@pytest.fixture
def git(
    lab: testenv.LabEnv, core: client.CoreV1Api, namespace: str, tmp_path: Path
) -> Iterator[tuple[Reconciler, SyntheticExporter]]:
    exporter = gitops.web_traffic(lab, core, namespace)
    yield Reconciler(lab, gitops.GitTree(tmp_path / "git", namespace)), exporter
    exporter.stop()


def gate(operator: OperatorProcess, ns: str) -> dict[str, Any]:
    url = f"http://127.0.0.1:{operator.gate_port}/gate/argo/{ns}/web"
    with urllib.request.urlopen(url, timeout=5) as r:
        body: dict[str, Any] = json.loads(r.read())
    return body


def managers(obj: Any) -> dict[tuple[str, str, str], dict[str, Any]]:
    """(manager, operation, subresource) -> fieldsV1 of an object's managedFields."""
    return {
        (m.manager, m.operation, m.subresource or ""): m.fields_v1
        for m in obj.metadata.managed_fields or []
    }


def test_bad_version_from_git_is_contained_through_reapplies_and_the_revert_clears_it(
    operator: OperatorProcess,
    git: tuple[Reconciler, SyntheticExporter],
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
    custom: client.CustomObjectsApi,
    api_client: client.ApiClient,
    namespace: str,
) -> None:
    rec, exporter = git
    discovery = client.DiscoveryV1Api(api_client)
    exporter.set_label_ratio("version", "v2", 0.2)
    rec.apply()
    wait_for(
        lambda: len(gitops.ready_pods(core, namespace, "v1")) == 6,
        timeout=90,
        what="6 v1 pods serving",
        detail=operator.log,
    )
    # The default (onCanaryDegraded: Auto) on a Deployment Flux's field manager applied.
    mode = gitops.wait_web_condition(custom, namespace, "GitOpsConflict")
    assert (mode["status"], mode["reason"]) == ("False", "GitOpsCompatible"), mode
    assert "managed by Flux (field manager kustomize-controller)" in mode["message"]

    rec.tree.write("v2")  # the bad version is committed...
    rec.apply()  # ...and applied by the reconciler
    applied = time.monotonic()
    # The new pod is marked serving and users get pinned to it (the guard needs traffic to
    # judge it), then it is judged failing and contained: its sessions re-pin to v1.
    gitops.wait_repinned(core, discovery, namespace, "v2", detail=operator.log)
    repin_seconds = time.monotonic() - applied
    guarded = gitops.wait_version_contained(custom, namespace)
    assert guarded["status"] == "False" and guarded["observedGeneration"] >= 1
    assert "revert Deployment web in Git (Flux) to revision 1" in guarded["message"]
    assert "registry.example.com/web:v1" in guarded["message"]

    # Several reconciles later: still contained, the Deployment is what Git says, no conflict.
    for _ in range(5):
        time.sleep(2)
        rec.apply()
        assert gitops.repinned(core, discovery, namespace, "v2"), operator.log()
    dep = apps.read_namespaced_deployment("web", namespace)
    assert not dep.spec.paused
    assert dep.spec.template.metadata.labels["version"] == "v2"
    assert not [k for k in managers(dep) if k[0] == "stickyguard"], "Contain wrote the Deployment"
    assert (rec.conflicts, rec.failures) == (0, [])
    # The old version serves every session; the rollout cannot progress.
    assert len(gitops.ready_pods(core, namespace, "v1")) == 6
    assert gitops.ready_endpoints(discovery, namespace) == set(
        gitops.ready_pods(core, namespace, "v1")
    )

    # What each contained pod carries, and who owns it: stickyguard, its own fields only.
    for p in gitops.pods_of(core, namespace, "v2"):
        assert p.metadata.annotations[DRAINED_BY] == "web"
        assert p.metadata.annotations[CONTAINED] == p.metadata.labels["pod-template-hash"]
        owned = managers(p)
        meta = owned[("stickyguard", "Apply", "")]["f:metadata"]
        assert set(meta) == {"f:annotations"}
        theirs = [
            k
            for k in meta["f:annotations"]
            if not k.startswith(f"f:{GROUP}/") and k != f"f:{DELETION_COST}"
        ]
        assert theirs == [], meta
        status = owned[("stickyguard", "Apply", "status")]["f:status"]["f:conditions"]
        assert list(status) == [f'k:{{"type":"{GROUP}/serving"}}']

    # Tell people: status, one Event, the gate (from status, on every replica), the CLI.
    section = get_policy(custom, namespace, "web")["status"]["rollout"]
    assert section["verdict"] == "fail" and section["action"] == "contain"
    assert section["containment"]["revertTo"]["revision"] == "1"
    # kopf posts Events from a queue of its own: wait for one, then check there is only one.
    wait_for(lambda: events(core, namespace, "VersionContained"), timeout=15, what="Event")
    assert len(events(core, namespace, "VersionContained")) == 1
    answer = gate(operator, namespace)
    assert answer["verdict"] == "fail" and answer["pass"] is False
    assert "containment" in answer

    # The revert, committed to Git and applied, clears the containment by itself.
    rec.tree.write("v1")
    rec.apply()
    reverted = time.monotonic()
    gitops.wait_containment_cleared(custom, namespace, timeout=60, detail=operator.log)
    wait_for(
        lambda: events(core, namespace, "ContainmentCleared"), timeout=15, what="cleared Event"
    )
    gitops.wait_back_on_v1(core, namespace, timeout=60)
    rec.apply()
    assert (rec.conflicts, rec.failures) == (0, [])
    print(
        f"\ngitops stand-in: v2 applied -> every v2 session re-pinned in {repin_seconds:.1f}s; "
        f"revert applied -> containment cleared in {time.monotonic() - reverted:.1f}s; "
        f"{rec.applies} applies by {'kustomize-controller'}, {rec.conflicts} conflicts"
    )


def test_pause_is_refused_on_a_gitops_managed_deployment(
    operator: OperatorProcess,
    git: tuple[Reconciler, SyntheticExporter],
    custom: client.CustomObjectsApi,
    namespace: str,
) -> None:
    rec, _ = git
    rec.apply()
    custom.patch_namespaced_custom_object(
        GROUP,
        "v1alpha1",
        namespace,
        "stickypolicies",
        "web",
        {"spec": {"actions": {"rollout": {"onCanaryDegraded": "Pause"}}}},
    )
    refused = gitops.wait_web_condition(
        custom,
        namespace,
        "GitOpsConflict",
        lambda c: c["status"] == "True",
        what="GitOpsConflict=True",
        detail=operator.log,
    )
    assert refused["reason"] == "SpecChangesRefused"
    assert (
        "spec.actions.rollout.onCanaryDegraded: Pause would change spec.paused"
        in refused["message"]
    )
    assert "allowSpecChanges: true" in refused["message"]
    assert get_policy(custom, namespace, "web")["status"]["rollout"]["mode"] == "Contain"
