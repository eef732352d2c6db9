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

import canary_support as canary
from stickyguard_lab import testenv
from stickyguard_lab.binaries import REPO_ROOT
from stickyguard_lab.exporter import SyntheticExporter
from stickyguard_lab.flagger import Flagger, phase, start_flagger
from stickyguard_lab.operatorproc import OperatorProcess
from support import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("crd_installed")]

EXAMPLES = REPO_ROOT / "examples" / "flagger"
SELECTOR = "app.kubernetes.io/name=shop"  # primary and canary pods (examples/flagger)
BAD_RATIO = 0.25
INTERVAL_S = 10


@pytest.fixture(scope="module")
def flagger(lab: testenv.LabEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flagger]:
    work = tmp_path_factory.mktemp("flagger")
    with canary.peer_controller("flagger", work, lambda sup: start_flagger(lab, sup)) as controller:
        yield controller


def lab_canary(gate_port: int) -> dict[str, Any]:
    """examples/flagger/canary.yaml with the lab patch: webhooks to the gate on loopback, a
    10 s interval and 3 iterations (threshold unchanged)."""
    (obj,) = canary.load(EXAMPLES / "canary.yaml")
    analysis = obj["spec"]["analysis"]
    for hook in analysis["webhooks"]:
        hook["url"] = canary.on_loopback(hook["url"], gate_port)
    analysis.update(interval=f"{INTERVAL_S}s", iterations=3)
    return obj


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
        return canary.ready_pods(self.core, self.ns, selector)

    def primary_version(self) -> str:
        dep = self.apps.read_namespaced_deployment("shop-primary", self.ns)
        return str((dep.spec.template.metadata.labels or {}).get("version"))

    def release(self, version: str) -> None:
        """What a user does: a new image and version label in the Deployment's template."""
        self.apps.patch_namespaced_deployment("shop", self.ns, canary.release_patch(version))

    def flagger_events(self) -> list[str]:
        return [
            e.message
            for e in self.core.list_namespaced_event(self.ns).items
            if e.involved_object.kind == "Canary"
        ]

    def timeline(self, version: str) -> canary.FirstTimes:
        def verdict(v: str) -> bool:
            return canary.rollout_section(self.custom, self.ns).get("verdict") == v

        return canary.FirstTimes(
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
            + canary.state_and_logs(
                self.custom, self.ns, "flagger", self.flagger.log(), self.operator
            )
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
    labels = ("app.kubernetes.io/name",)  # as Prometheus' Kubernetes discovery would label
    with canary.traffic(lab, core, namespace, SELECTOR, series_labels=labels) as exporter:
        canary.apply_examples(lab, namespace, EXAMPLES / "deployment.yaml")
        canary.apply_lab_policy(lab, custom, namespace, EXAMPLES / "stickypolicy.yaml")
        canary.apply_examples(lab, namespace, [lab_canary(operator.gate_port)])
        shop = Shop(flagger, operator, custom, core, apps, namespace, exporter)
        wait_for(
            lambda: shop.phase() == "Initialized" and len(shop.ready("app=shop-primary")) == 2,
            timeout=180,
            what="the Canary Initialized (shop-primary serving)",
            detail=shop.detail,
        )
        canary.wait_for_evidence(custom, namespace, ("oldCohort",), detail=shop.detail)
        yield shop


def test_flagger_rolls_back_a_version_stickyguard_fails(shop: Shop) -> None:
    started = time.time()
    shop.exporter.set_label_ratio("version", "2.0", BAD_RATIO)
    with canary.released(shop.timeline("2.0"), lambda: shop.release("2.0")) as times:
        times.wait("failed", timeout=240, what="rollback", detail=shop.detail)
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
    figures = canary.scenario_figures(
        started,
        **canary.fault_to_action_figures(times, "failed", "rollback"),
        failed_checks=len(halts),
        interval_s=INTERVAL_S,
    )
    canary.record("flagger", "bad_version_rolled_back", figures)


def test_flagger_promotes_a_version_stickyguard_passes(shop: Shop) -> None:
    started = time.time()
    with canary.released(shop.timeline("2.0"), lambda: shop.release("2.0")) as times:
        times.wait("succeeded", timeout=300, what="promotion", detail=shop.detail)
    assert shop.primary_version() == "2.0"
    assert "failed" not in times.times and "verdict_fail" not in times.times
    assert not [m for m in shop.flagger_events() if "external check stickyguard failed" in m]
    canary.record(
        "flagger",
        "good_version_promoted",
        canary.scenario_figures(
            started,
            canary_ready_to_promoted_s=times.between("canary_ready", "succeeded"),
            interval_s=INTERVAL_S,
        ),
    )


def test_flagger_waits_instead_of_promoting_without_evidence(shop: Shop) -> None:
    """The canary gets almost no requests: every `rollout` check passes (no evidence against
    it is not a failed check), but `confirm-promotion` does not, so Flagger waits."""
    started = time.time()
    shop.exporter.set_label_rps("version", "2.0", 0.05)  # 2 pods x 0.05/s x 20 s: 2 answers
    with canary.released(shop.timeline("2.0"), lambda: shop.release("2.0")) as times:
        times.wait("waiting_promotion", timeout=240, what="WaitingPromotion", detail=shop.detail)
        time.sleep(2 * INTERVAL_S + 2)  # two more analysis intervals: still not promoted
    assert shop.phase() == "WaitingPromotion", shop.detail()
    assert shop.primary_version() == "1.0"
    assert "succeeded" not in times.times and "failed" not in times.times
    section = canary.rollout_section(shop.custom, shop.ns)
    assert section["verdict"] == "inconclusive" and section["newCohort"]["requests"] < 30
    canary.record(
        "flagger",
        "no_evidence_waits",
        canary.scenario_figures(
            started,
            canary_ready_to_waiting_s=times.between("canary_ready", "waiting_promotion"),
            interval_s=INTERVAL_S,
        ),
    )
