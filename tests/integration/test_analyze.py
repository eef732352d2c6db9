"""`stickyguard analyze` and the Prometheus reader against real, backfilled Prometheus."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from promdata import AT, kube_state, requests
from stickyguard.adapters.prometheus import PrometheusReader
from stickyguard.core.analysis import analyze, single_shot
from stickyguard.core.policy import parse_policy
from stickyguard_lab import testenv
from stickyguard_lab.procs import Supervisor
from stickyguard_lab.prom import Prometheus, backfill, start_prometheus
from support import wait_for

pytestmark = pytest.mark.integration


def rates(
    n: int, bad: dict[int, float], base: float = 0.001, rps: float = 10.0
) -> dict[str, tuple[float, float]]:
    return {f"pod-{i:02d}": (rps, rps * bad.get(i, base)) for i in range(n)}


SCENARIOS: dict[str, tuple[str, dict[str, tuple[float, float]]]] = {
    "one-of-12": ("generic", rates(12, {0: 0.05})),
    "three-of-8": ("istio", rates(8, {0: 0.2, 1: 0.2, 2: 0.2})),
    "uniform": ("linkerd", rates(10, {}, base=0.02)),
    "thin-pod": ("haproxy", {**rates(8, {}), "pod-thin": (3 / 120, 2 / 120)}),
    "quality": ("quality", rates(10, {3: 0.03})),
    "node": ("generic", rates(9, {0: 0.06, 1: 0.06})),
    "kube": ("generic", rates(6, {4: 0.08})),
}
NODE_OF = {f"pod-{i:02d}": f"worker-{i // 3 + 1}" for i in range(9)}


@pytest.fixture(scope="module")
def prom(lab: testenv.LabEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    work = tmp_path_factory.mktemp("analyze")
    series = []
    for ns, (preset, pods) in SCENARIOS.items():
        series += requests(preset, ns, "web", pods)
    series += kube_state("node", "web", NODE_OF)
    backfill(lab.binaries, series, work / "tsdb")
    sup = Supervisor(work)
    p = start_prometheus(sup, lab.binaries, work / "prom", tsdb_dir=work / "tsdb")
    yield p
    sup.stop_all()


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stickyguard", "analyze", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def analyze_json(prom: Prometheus, ns: str, *extra: str) -> dict[str, Any]:
    proc = cli(
        "--prometheus",
        prom.url,
        "-n",
        ns,
        "--selector",
        "app=web",
        "--time",
        str(AT),
        "-o",
        "json",
        *extra,
    )
    assert proc.returncode == 0, proc.stderr
    out: dict[str, Any] = json.loads(proc.stdout)
    return out


def test_one_of_twelve_at_five_percent_is_flagged(prom: Prometheus) -> None:
    out = analyze_json(prom, "one-of-12")
    assert out["degraded_pods"] == ["pod-00"]
    assert out["classification"] == "concentrated"
    assert {"pod", "node", "version", "total", "bad", "ratio", "degraded"} <= set(out["pods"][0])
    pod0 = next(p for p in out["pods"] if p["pod"] == "pod-00")
    assert pod0["ratio"] == pytest.approx(0.05, rel=1e-6)
    assert pod0["total"] == pytest.approx(1200, rel=1e-6)  # 10 rps over a 2m window
    assert out["impact"]["method"] == "estimated"
    assert out["impact"]["amplification"] > 5
    assert len(out["queries"]) == 5, "total, bad, freshness and the two raw counters; none per pod"


def test_three_of_eight_bad_are_all_flagged_istio(prom: Prometheus) -> None:
    out = analyze_json(prom, "three-of-8", "--preset", "istio")
    assert out["degraded_pods"] == ["pod-00", "pod-01", "pod-02"]
    assert out["classification"] == "concentrated"


def test_uniform_degradation_is_fleet_wide_linkerd(prom: Prometheus) -> None:
    out = analyze_json(prom, "uniform", "--preset", "linkerd")
    assert out["classification"] == "fleet_wide"
    assert out["degraded_pods"] == []
    assert out["fleet_bad_ratio"] == pytest.approx(0.02, rel=1e-6)


def test_thin_pod_is_insufficient_data_haproxy(prom: Prometheus) -> None:
    out = analyze_json(prom, "thin-pod", "--preset", "haproxy", "--series-selector", "proxy=web")
    thin = next(p for p in out["pods"] if p["pod"] == "pod-thin")
    assert thin["bad"] == pytest.approx(2) and thin["total"] == pytest.approx(3)
    assert thin["status"] == "insufficient_data" and not thin["degraded"]
    assert out["classification"] == "healthy"


def test_quality_sli_with_http_200(prom: Prometheus) -> None:
    answers = 'app_answers_total{namespace="{namespace}",{selector}'
    policy = parse_policy(
        {
            "metadata": {"name": "q", "namespace": "quality"},
            "spec": {
                "selector": {"matchLabels": {"app": "web"}},
                "prometheus": {
                    "preset": "custom",
                    "queries": {
                        "total": f"sum by ({{pod_label}}) (rate({answers}}}[{{window}}]))",
                        "bad": f'sum by ({{pod_label}}) (rate({answers},quality="degraded"}}'
                        "[{window}]))",
                    },
                },
            },
        }
    )
    reader = PrometheusReader(prom.url)
    snap = reader.snapshot(policy, AT)
    assert snap.problems == ()
    assert reader.queries_run == 2
    f = analyze(snap.samples, {}, single_shot(policy.detection), policy.impact)
    assert f.degraded_pods == ("pod-03",)
    # The same traffic read as HTTP errors shows nothing: every answer was a 200.
    out = analyze_json(prom, "quality")
    assert out["classification"] == "healthy" and out["degraded_pods"] == []


def test_concentration_names_the_node_from_kube_state_metrics(prom: Prometheus) -> None:
    out = analyze_json(prom, "node")
    assert out["degraded_pods"] == ["pod-00", "pod-01"]
    assert out["concentration"]["dimension"] == "node"
    assert out["concentration"]["value"] == "worker-1"
    proc = cli("--prometheus", prom.url, "-n", "node", "--selector", "app=web", "--time", str(AT))
    assert "concentrated on node=worker-1: 2 of 9 pods" in proc.stdout


def test_pod_metadata_from_the_cluster(
    prom: Prometheus, lab: testenv.LabEnv, core: client.CoreV1Api
) -> None:
    core.create_namespace({"metadata": {"name": "kube"}})
    try:
        for i in range(6):
            core.create_namespaced_pod(
                "kube",
                {
                    "metadata": {
                        "name": f"pod-{i:02d}",
                        "labels": {"app": "web", "version": f"v{1 + i // 4}"},
                    },
                    "spec": {
                        "nodeSelector": {"kubernetes.io/hostname": f"lab-node-{i % 3}"},
                        "containers": [{"name": "c", "image": "example.invalid/x"}],
                    },
                },
            )
        wait_for(
            lambda: all(p.spec.node_name for p in core.list_namespaced_pod("kube").items),
            what="pods bound",
        )
        out = analyze_json(prom, "kube", "--kubeconfig", str(lab.kubeconfig))
        pod4 = next(p for p in out["pods"] if p["pod"] == "pod-04")
        assert pod4["node"] == "lab-node-1" and pod4["version"] == "v2"
        assert out["degraded_pods"] == ["pod-04"]
    finally:
        core.delete_namespace("kube")


def test_unreachable_prometheus_fails_clearly() -> None:
    proc = cli("--prometheus", "http://127.0.0.1:9", "-n", "x", "--selector", "app=web")
    assert proc.returncode == 3
    assert "unreachable" in proc.stderr


def test_no_series_for_selector_fails_clearly(prom: Prometheus) -> None:
    proc = cli(
        "--prometheus", prom.url, "-n", "one-of-12", "--selector", "app=nope", "--time", str(AT)
    )
    assert proc.returncode == 4
    assert 'no series for the selector (app="nope")' in proc.stderr


def test_stale_series_are_reported_not_read_as_zero(prom: Prometheus) -> None:
    # Ten minutes after the last sample, rate() windows are empty and freshness says stale.
    proc = cli(
        "--prometheus",
        prom.url,
        "-n",
        "one-of-12",
        "--selector",
        "app=web",
        "--time",
        str(AT + 600),
        "-o",
        "json",
    )
    assert proc.returncode == 4, proc.stdout
    assert "no series" in proc.stderr


def test_hostile_selector_cannot_inject(prom: Prometheus, tmp_path: Path) -> None:
    proc = cli(
        "--prometheus",
        prom.url,
        "-n",
        "one-of-12",
        "--selector",
        'app=web"} or vector(1) or {a="',
        "--time",
        str(AT),
    )
    assert proc.returncode == 4, proc.stdout + proc.stderr


def test_pods_without_error_series_had_no_errors(prom: Prometheus) -> None:
    # "quality" exports http_requests_total with code 200 only: no 5xx series exists at all.
    out = analyze_json(prom, "quality")
    assert all(p["bad"] == 0 for p in out["pods"])
    assert out["fleet_bad_ratio"] == 0
