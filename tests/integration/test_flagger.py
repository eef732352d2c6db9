"""stickyguard judging canaries for the real Flagger (`-mesh-provider kubernetes`): its
`rollout` and `confirm-promotion` webhooks call the gate, and Flagger rolls back, promotes or
waits on the answers.

Everything is real: the control plane, the node agent, Prometheus (Flagger's
`-metrics-server` too), the operator (its shipped ServiceAccount, gate on a loopback port,
readiness-gate webhook) and Flagger v1.36 (built from the Go module proxy, CRDs from its
module) running out of cluster. The Deployment, Canary and StickyPolicy are the files under
examples/flagger/, applied as they are but for the lab patch (tests/canary_support.py): the
webhooks point at the gate on loopback, the analysis interval is 10 s and 3 iterations, and
the policy's window and interval are seconds.

Flagger's primary and canary pods both get traffic; the new version's answers are HTTP 200
with wrong bodies (app_answers_total{quality="degraded"}). Scenarios: a bad version is rolled
back after `threshold` failed gate checks (fault -> rollback measured); a good one is
promoted; one with almost no traffic is never confirmed for promotion (WaitingPromotion).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes import client

from canary_support import (
    FirstTimes,
    load,
    on_loopback,
    patch_policy,
    record,
    rollout_section,
    traffic,
)
from stickyguard_lab import testenv
from stickyguard_lab.binaries import REPO_ROOT
from stickyguard_lab.exporter import SyntheticExporter
from stickyguard_lab.flagger import Flagger, phase, start_flagger
from stickyguard_lab.kubectl import apply
from stickyguard_lab.operatorproc import OperatorProcess
from stickyguard_lab.procs import Supervisor
from support import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("crd_installed")]

EXAMPLES = REPO_ROOT / "examples" / "flagger"
SELECTOR = "app.kubernetes.io/name=shop"  # primary and canary pods (examples/flagger)
BAD_RATIO = 0.25
INTERVAL_S = 10


@pytest.fixture(scope="module")
def flagger(lab: testenv.LabEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flagger]:
    started = time.time()
    sup = Supervisor(tmp_path_factory.mktemp("flagger"))
    try:
        yield start_flagger(lab, sup)
    finally:
        sup.stop_all()
        # This file's wall time beyond the session's lab: Flagger's start and every scenario.
        record("flagger", "module", {"wall_s": round(time.time() - started, 1)})


def lab_canary(gate_port: int) -> dict[str, Any]:
    """examples/flagger/canary.yaml with the lab patch: webhooks to the gate on loopback, a
    10 s interval and 3 iterations (threshold unchanged)."""
    (canary,) = load(EXAMPLES / "canary.yaml")
    analysis = canary["spec"]["analysis"]
    for hook in analysis["webhooks"]:
        hook["url"] = on_loopback(hook["url"], gate_port)
    analysis.update(interval=f"{INTERVAL_S}s", iterations=3)
    return canary


@dataclass
class Shop:
    """The example Deployment under a Flagger Canary in a test namespace, initialized."""

    flagger: Flagger
    operator: OperatorProcess
    custom: client.CustomObjectsApi
    core: client.CoreV1Api
    apps: client.AppsV1Api
    ns: str
    exporter: SyntheticExporter

    def phase(self) -> str:
        return phase(self.custom, self.ns, "shop")

    def ready(self, selector: str) -> list[str]:
        return [
            p.metadata.name
            for p in self.core.list_namespaced_pod(self.ns, label_selector=selector).items
            if not p.metadata.deletion_timestamp
            and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
        ]

    def primary_version(self) -> str:
        dep = self.apps.read_namespaced_deployment("shop-primary", self.ns)
        return str((dep.spec.template.metadata.labels or {}).get("version"))

    def release(self, version: str) -> None:
        """What a user does: a new image and version label in the Deployment's template."""
        self.apps.patch_namespaced_deployment(
            "shop",
            self.ns,
            {
                "spec": {
                    "template": {
                        "metadata": {"labels": {"version": version}},
                        "spec": {
                            "containers": [
                                {"name": "app", "image": f"registry.example/shop:{version}"}
                            ]
                        },
                    }
                }
            },
        )

    def flagger_events(self) -> list[str]:
        return [
            e.message
            for e in self.core.list_namespaced_event(self.ns).items
            if e.involved_object.kind == "Canary"
        ]

    def timeline(self, version: str) -> FirstTimes:
        def verdict(v: str) -> bool:
            return rollout_section(self.custom, self.ns).get("verdict") == v

        return FirstTimes(
            {
                "progressing": lambda: self.phase() == "Progressing",
                "canary_ready": lambda: bool(self.ready(f"app=shop,version={version}")),
                "verdict_fail": lambda: verdict("fail"),
                "failed": lambda: self.phase() == "Failed",
                "waiting_promotion": lambda: self.phase() == "WaitingPromotion",
                "succeeded": lambda: self.phase() == "Succeeded",
            }
        )

    def detail(self) -> str:
        return (
            f"canary phase: {self.phase()}\nevents: {self.flagger_events()}\n"
            f"stickyguard: {rollout_section(self.custom, self.ns)}\n"
            f"flagger log:\n{self.flagger.log()}\noperator log:\n{self.operator.log()}"
        )


@pytest.fixture
def shop(
    lab: testenv.LabEnv,
    flagger: Flagger,
    operator: OperatorProcess,
    custom: client.CustomObjectsApi,
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
    namespace: str,
) -> Iterator[Shop]:
    kc, kubectl_bin = lab.kubeconfig, lab.binaries.kubectl
    labels = ("app.kubernetes.io/name",)  # as Prometheus' Kubernetes discovery would label
    with traffic(lab, core, namespace, SELECTOR, series_labels=labels) as exporter:
        apply(kubectl_bin, kc, EXAMPLES / "deployment.yaml", namespace=namespace)
        apply(kubectl_bin, kc, EXAMPLES / "stickypolicy.yaml", namespace=namespace)
        patch_policy(custom, namespace)
        apply(kubectl_bin, kc, [lab_canary(operator.gate_port)], namespace=namespace)
        shop = Shop(flagger, operator, custom, core, apps, namespace, exporter)
        wait_for(
            lambda: shop.phase() == "Initialized" and len(shop.ready("app=shop-primary")) == 2,
            timeout=180,
            what="the Canary Initialized (shop-primary serving)",
            detail=shop.detail,
        )
        wait_for(
            lambda: (
                rollout_section(custom, namespace).get("oldCohort", {}).get("requests", 0) >= 30
            ),
            timeout=60,
            what="stickyguard sees the primary's traffic",
            detail=shop.detail,
        )
        yield shop


def test_flagger_rolls_back_a_version_stickyguard_fails(shop: Shop) -> None:
    started = time.time()
    shop.exporter.set_label_ratio("version", "2.0", BAD_RATIO)
    with shop.timeline("2.0") as times:
        shop.release("2.0")
        times.mark("released")
        wait_for(lambda: "failed" in times.times, timeout=240, what="rollback", detail=shop.detail)
    events = shop.flagger_events()
    # Flagger rolled back because the stickyguard webhook failed its checks.
    halts = [m for m in events if "external check stickyguard failed" in m]
    assert halts, shop.detail()
    assert any("failed checks threshold reached 2" in m for m in events), shop.detail()
    assert "verdict_fail" in times.times and times.times["verdict_fail"] <= times.times["failed"]
    assert "succeeded" not in times.times
    assert shop.primary_version() == "1.0", "the primary never ran the bad version"
    wait_for(
        lambda: not shop.ready("app=shop,version=2.0"),
        timeout=60,
        what="the canary scaled to zero",
        detail=shop.detail,
    )
    figures = {
        "release_to_canary_ready_s": times.between("released", "canary_ready"),
        "fault_to_verdict_s": times.between("canary_ready", "verdict_fail"),
        "verdict_to_rollback_s": times.between("verdict_fail", "failed"),
        "fault_to_rollback_s": times.between("canary_ready", "failed"),
        "failed_checks": len(halts),
        "interval_s": INTERVAL_S,
        "scenario_s": round(time.time() - started, 1),
    }
    record("flagger", "bad_version_rolled_back", figures)


def test_flagger_promotes_a_version_stickyguard_passes(shop: Shop) -> None:
    started = time.time()
    with shop.timeline("2.0") as times:
        shop.release("2.0")
        times.mark("released")
        wait_for(
            lambda: "succeeded" in times.times, timeout=300, what="promotion", detail=shop.detail
        )
    assert shop.primary_version() == "2.0"
    assert "failed" not in times.times and "verdict_fail" not in times.times
    assert not [m for m in shop.flagger_events() if "external check stickyguard failed" in m]
    record(
        "flagger",
        "good_version_promoted",
        {
            "canary_ready_to_promoted_s": times.between("canary_ready", "succeeded"),
            "interval_s": INTERVAL_S,
            "scenario_s": round(time.time() - started, 1),
        },
    )


def test_flagger_waits_instead_of_promoting_without_evidence(shop: Shop) -> None:
    """The canary gets almost no requests: every `rollout` check passes (no evidence against
    it is not a failed check), but `confirm-promotion` does not, so Flagger waits."""
    started = time.time()
    shop.exporter.set_label_rps("version", "2.0", 0.05)  # 2 pods x 0.05/s x 20 s: 2 answers
    with shop.timeline("2.0") as times:
        shop.release("2.0")
        times.mark("released")
        wait_for(
            lambda: "waiting_promotion" in times.times,
            timeout=240,
            what="WaitingPromotion",
            detail=shop.detail,
        )
        time.sleep(2 * INTERVAL_S + 2)  # two more analysis intervals: still not promoted
    assert shop.phase() == "WaitingPromotion", shop.detail()
    assert shop.primary_version() == "1.0"
    assert "succeeded" not in times.times and "failed" not in times.times
    section = rollout_section(shop.custom, shop.ns)
    assert section["verdict"] == "inconclusive" and section["newCohort"]["requests"] < 30
    record(
        "flagger",
        "no_evidence_waits",
        {
            "canary_ready_to_waiting_s": times.between("canary_ready", "waiting_promotion"),
            "interval_s": INTERVAL_S,
            "scenario_s": round(time.time() - started, 1),
        },
    )
