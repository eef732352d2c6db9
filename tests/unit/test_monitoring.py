"""The shipped PrometheusRule passes `promtool check rules` and its unit tests, every alert has
a test, the alerts only use metrics the operator exports, and the dashboard is valid."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from stickyguard.controller import telemetry
from stickyguard.core.problems import Held, HoldCause

MONITORING = Path(__file__).resolve().parents[2] / "manifests" / "components" / "monitoring"


@pytest.fixture(scope="module")
def rules_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("promtool") is None:
        pytest.fail("promtool is missing: install Debian's prometheus package (.ci/run does)")
    work = tmp_path_factory.mktemp("rules")
    rule = yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())
    (work / "rules.yaml").write_text(yaml.safe_dump(rule["spec"], sort_keys=False))
    shutil.copy(MONITORING / "tests" / "alerts_test.yaml", work)
    return work


def promtool(work: Path, *args: str) -> str:
    out = subprocess.run(["promtool", *args], cwd=work, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def alerts() -> list[dict[str, object]]:
    rule = yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())
    return [r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r]


def test_rules_pass_promtool_check(rules_dir: Path) -> None:
    out = promtool(rules_dir, "check", "rules", "rules.yaml")
    assert f"{len(alerts())} rules found" in out


def test_alert_unit_tests_pass(rules_dir: Path) -> None:
    promtool(rules_dir, "test", "rules", "alerts_test.yaml")


def test_every_alert_has_a_firing_and_a_silent_case() -> None:
    cases = yaml.safe_load((MONITORING / "tests" / "alerts_test.yaml").read_text())["tests"]
    firing: set[str] = set()
    silent: set[str] = set()
    for case in cases:
        for t in case["alert_rule_test"]:
            (firing if t["exp_alerts"] else silent).add(t["alertname"])
    names = {str(a["alert"]) for a in alerts()}
    assert names - firing == set(), "alerts without a firing test"
    assert names - silent == set(), "alerts without a test where they stay silent"


def exported_metric_names() -> set[str]:
    names = set()
    for metric in telemetry.REGISTRY.collect():
        names |= {s.name for s in metric.samples} | {metric.name}
    return names


def test_rules_and_dashboard_only_use_exported_metrics() -> None:
    # Touch every labelled family once so its samples exist.
    telemetry.record_evaluation(
        "x",
        "y",
        result="ok",
        seconds=0.1,
        now=1.0,
        blocked=[Held(HoldCause.ACTION_FAILED, "a failed: ")],
    )
    telemetry.ACTIONS.labels("x", "y", "drain")
    telemetry.QUERY_ERRORS.labels("x", "y", "total")
    telemetry.PODS.labels("x", "y", "healthy")
    telemetry.AMPLIFICATION.labels("x", "y")
    telemetry.AFFECTED.labels("x", "y")
    telemetry.BAD_RATIO.labels("x", "y")
    exported = exported_metric_names()
    telemetry.forget("x", "y")
    texts = [str(a["expr"]) for a in alerts()]
    dashboard = json.loads((MONITORING / "dashboards" / "stickyguard.json").read_text())
    texts += [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    used = {m for text in texts for m in re.findall(r"\bstickyguard_[a-z_]+", text)}
    assert used, "no stickyguard metric referenced"
    assert used - exported == set()


def test_dashboard_is_grafana_json_with_unique_panel_ids() -> None:
    dashboard = json.loads((MONITORING / "dashboards" / "stickyguard.json").read_text())
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert dashboard["uid"] == "stickyguard"
    assert any(v["name"] == "datasource" for v in dashboard["templating"]["list"])
