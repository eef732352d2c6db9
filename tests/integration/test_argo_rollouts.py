"""stickyguard judging canaries for the real Argo Rollouts: its analysis asks the gate, and Argo
aborts, promotes or pauses on the answer.

Everything is real: the control plane, the node agent, Prometheus scraping the shop's traffic,
the operator (its shipped ServiceAccount, gate on a loopback port) and Argo Rollouts v1.10
(built from the Go module proxy, CRDs from its module) running out of cluster. The Rollout,
Service, AnalysisTemplate and StickyPolicy are the files under examples/argo-rollouts/, applied
as they are but for the lab patch (tests/canary_support.py): the AnalysisTemplate's URL points
at the gate on loopback and its delays, like the policy's window and interval, are seconds.

The new version's pods answer HTTP 200 with wrong bodies (app_answers_total{quality="degraded"}):
an HTTP success rate would see nothing. Scenarios: a bad canary is aborted by Argo because
the gate said `fail` (fault -> abort measured); a good one is promoted on `pass`; one with
almost no traffic is judged `inconclusive` and Argo pauses it instead of promoting it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes import client

import canary_support as canary
from stickyguard.core.names import ROLLOUTS_POD_TEMPLATE_HASH
from stickyguard_lab import testenv
from stickyguard_lab.argo import (
    GROUP,
    VERSION,
    ArgoRollouts,
    analysis_runs,
    get_rollout,
    measurements,
    start_argo_rollouts,
)
from stickyguard_lab.binaries import REPO_ROOT
from stickyguard_lab.exporter import SyntheticExporter
from stickyguard_lab.operatorproc import OperatorProcess
from support import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("crd_installed")]

EXAMPLES = REPO_ROOT / "examples" / "argo-rollouts"
BAD_RATIO = 0.25  # the bad version's share of degraded answers (HTTP 200)


@pytest.fixture(scope="module")
def argo(lab: testenv.LabEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ArgoRollouts]:
    work = tmp_path_factory.mktemp("argo")
    with canary.peer_controller(
        "argo-rollouts", work, lambda sup: start_argo_rollouts(lab, sup)
    ) as controller:
        yield controller


def lab_analysis_template(gate_port: int) -> dict[str, Any]:
    """examples/argo-rollouts/analysistemplate.yaml with the lab patch: the gate on loopback,
    and its delays in the example's proportions to the policy's window (20 s here, not 2 m) and
    interval (5 s, not 15 s): the first question after one window, then one every two policy
    intervals, so that a `fail`'s four intervals of evidence fit before the inconclusive limit
    ends the run, as they do with the example's 2m and 30s."""
    (template,) = canary.load(EXAMPLES / "analysistemplate.yaml")
    metric = template["spec"]["metrics"][0]
    web = metric["provider"]["web"]
    web["url"] = canary.on_loopback(web["url"], gate_port)
    metric.update(initialDelay="20s", interval="10s")
    return template


def analysis_timing(run: dict[str, Any]) -> dict[str, str]:
    """When Argo started the run and took each measurement (RFC 3339, as Argo wrote them)."""
    status = run.get("status") or {}
    return {
        "startedAt": str(status.get("startedAt")),
        "measured": ",".join(
            str(m.get("finishedAt"))
            for r in status.get("metricResults") or []
            for m in r.get("measurements") or []
        ),
    }


@dataclass
class Shop:
    """The example Rollout in a test namespace, with its traffic, once v1.0 is Healthy."""

    lab: testenv.LabEnv
    argo: ArgoRollouts
    operator: OperatorProcess
    custom: client.CustomObjectsApi
    core: client.CoreV1Api
    ns: str
    exporter: SyntheticExporter
    stable: str  # v1.0's rollouts-pod-template-hash

    def rollout(self) -> dict[str, Any]:
        return get_rollout(self.custom, self.ns, "shop")

    def status(self) -> dict[str, Any]:
        return dict(self.rollout().get("status") or {})

    def new_hash(self) -> str:
        current = str(self.status().get("currentPodHash") or "")
        return current if current != self.stable else ""

    def ready_pods(self, pod_hash: str) -> list[str]:
        return canary.ready_pods(self.core, self.ns, f"{ROLLOUTS_POD_TEMPLATE_HASH}={pod_hash}")

    def canary_run(self) -> dict[str, Any] | None:
        """The AnalysisRun of the canary step (the newest in the namespace)."""
        runs = analysis_runs(self.custom, self.ns)
        return runs[-1] if runs else None

    def run_phase(self) -> str:
        run = self.canary_run()
        return str(((run or {}).get("status") or {}).get("phase") or "")

    def release(self, version: str) -> None:
        """What a user does: a new image and version label in the Rollout's template."""
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.ns, "rollouts", "shop", canary.release_patch(version)
        )

    def timeline(self) -> canary.FirstTimes:
        """When the canary first served, stickyguard first said fail, and Argo acted."""

        def canary_ready() -> bool:
            new = self.new_hash()
            return bool(new and self.ready_pods(new))

        def verdict_fail() -> bool:
            section = canary.rollout_section(self.custom, self.ns)
            return section.get("verdict") == "fail" and section.get("newHash") == self.new_hash()

        def promoted() -> bool:
            s = self.status()
            return s.get("stableRS") not in (None, self.stable) and s.get("phase") == "Healthy"

        return canary.FirstTimes(
            {
                "canary_ready": canary_ready,
                "verdict_fail": verdict_fail,
                "aborted": lambda: bool(self.status().get("abort")),
                "promoted": promoted,
                "run_inconclusive": lambda: self.run_phase() == "Inconclusive",
            }
        )

    def detail(self) -> str:
        return (
            f"rollout status: {self.status()}\nanalysis: {self.canary_run()}\n"
            + canary.state_and_logs(self.custom, self.ns, "argo", self.argo.log(), self.operator)
        )


@pytest.fixture
def shop(
    lab: testenv.LabEnv,
    argo: ArgoRollouts,
    operator: OperatorProcess,
    custom: client.CustomObjectsApi,
    core: client.CoreV1Api,
    namespace: str,
) -> Iterator[Shop]:
    with canary.traffic(lab, core, namespace, "app=shop") as exporter:
        canary.apply_examples(
            lab,
            namespace,
            EXAMPLES / "service.yaml",
            [lab_analysis_template(operator.gate_port)],
            EXAMPLES / "rollout.yaml",
        )
        canary.apply_lab_policy(lab, custom, namespace, EXAMPLES / "stickypolicy.yaml")
        shop = Shop(lab, argo, operator, custom, core, namespace, exporter, stable="")

        def healthy() -> str:
            s = shop.status()
            ok = s.get("phase") == "Healthy" and s.get("availableReplicas") == 4
            return str(s.get("stableRS") or "") if ok else ""

        shop.stable = wait_for(healthy, timeout=120, what="v1.0 Healthy", detail=shop.detail)
        # The old version's evidence first: the judge needs a comparison.
        canary.wait_for_evidence(custom, namespace, ("oldCohort", "newCohort"), detail=shop.detail)
        yield shop


def test_argo_aborts_a_canary_stickyguard_fails(shop: Shop) -> None:
    started = time.time()
    shop.exporter.set_label_ratio("version", "2.0", BAD_RATIO)
    with canary.released(shop.timeline(), lambda: shop.release("2.0")) as times:
        times.wait("aborted", timeout=180, what="abort", detail=shop.detail)
    new = shop.status().get("currentPodHash")
    assert new and new != shop.stable
    # Argo aborted because of stickyguard's answer: the canary's analysis failed on a `fail`.
    run = shop.canary_run()
    assert run is not None and run["status"]["phase"] == "Failed", shop.detail()
    taken = measurements(run)
    assert ("Failed", "fail") in taken, taken
    assert all(value in ("fail", "inconclusive", "pass") for _, value in taken), taken
    assert "verdict_fail" in times.times and times.times["verdict_fail"] <= times.times["aborted"]
    # The stable version never changed; Argo scales the canary away and v1.0 serves alone.
    assert shop.status()["stableRS"] == shop.stable
    wait_for(
        lambda: not shop.ready_pods(str(new)) and len(shop.ready_pods(shop.stable)) == 4,
        timeout=90,
        what="the canary scaled down, v1.0 back to 4 pods",
        detail=shop.detail,
    )
    assert shop.status().get("phase") == "Degraded"
    figures = canary.scenario_figures(
        started,
        **canary.fault_to_action_figures(times, "aborted", "abort"),
        measurements=[v for _, v in taken],
        analysis=analysis_timing(run),
    )
    canary.record("argo-rollouts", "bad_canary_aborted", figures)
    assert figures["fault_to_abort_s"] is not None


def test_argo_promotes_a_canary_stickyguard_passes(shop: Shop) -> None:
    started = time.time()
    with canary.released(shop.timeline(), lambda: shop.release("2.0")) as times:
        times.wait("promoted", timeout=180, what="promotion", detail=shop.detail)
    run = shop.canary_run()
    assert run is not None and run["status"]["phase"] == "Successful", shop.detail()
    taken = measurements(run)
    assert ("Successful", "pass") in taken, taken
    assert "fail" not in [v for _, v in taken]
    assert "aborted" not in times.times and "verdict_fail" not in times.times
    assert shop.status()["stableRS"] == shop.status()["currentPodHash"] != shop.stable
    canary.record(
        "argo-rollouts",
        "good_canary_promoted",
        canary.scenario_figures(
            started,
            canary_ready_to_promoted_s=times.between("canary_ready", "promoted"),
            measurements=[v for _, v in taken],
        ),
    )


def test_argo_does_not_promote_a_canary_without_evidence(shop: Shop) -> None:
    """Sticky sessions keep users on the old pods: the canary gets almost no requests, the
    gate says `inconclusive`, and Argo pauses the Rollout instead of promoting it."""
    started = time.time()
    shop.exporter.set_label_rps("version", "2.0", 0.05)  # 2 pods x 0.05/s x 20 s: 2 answers
    with canary.released(shop.timeline(), lambda: shop.release("2.0")) as times:
        times.wait(
            "run_inconclusive", timeout=180, what="an inconclusive analysis", detail=shop.detail
        )
        time.sleep(15)  # three more analysis intervals: nothing promotes it meanwhile
    taken = measurements(shop.canary_run() or {})
    values = [v for _, v in taken]
    # `unknown` (an evaluation late under load) is Inconclusive to Argo too; the judge's own
    # answer must be inconclusive.
    assert "inconclusive" in values and set(values) <= {"inconclusive", "unknown"}, taken
    status = shop.status()
    reasons = [c.get("reason") for c in status.get("pauseConditions") or []]
    assert "InconclusiveAnalysisRun" in reasons, shop.detail()
    assert status["stableRS"] == shop.stable, "not promoted on no evidence"
    assert "promoted" not in times.times and "aborted" not in times.times
    section = canary.rollout_section(shop.custom, shop.ns)
    assert section["verdict"] == "inconclusive"
    assert section["newCohort"]["requests"] < 30
    canary.record(
        "argo-rollouts",
        "no_evidence_paused",
        canary.scenario_figures(
            started,
            canary_ready_to_paused_s=times.between("canary_ready", "run_inconclusive"),
            measurements=[v for _, v in taken],
        ),
    )
