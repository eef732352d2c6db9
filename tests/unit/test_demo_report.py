"""The demo's end screen and HTML report, rendered from fixed report data
(tests/fixtures/demo-report.json, shaped like what `make demo` writes)."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

from stickyguard_lab.demo import hurt_timeline
from stickyguard_lab.demoreport import chart_svg, headline, render_html, table

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "demo-report.json"


@pytest.fixture
def report() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(FIXTURE.read_text())
    return data


def test_table_has_both_runs_and_every_column(report: dict[str, Any]) -> None:
    lines = table(report).splitlines()
    assert len(lines) == 3
    assert "users affected %" in lines[0] and "healthy pods drained" in lines[0]
    assert lines[1].split()[:3] == ["unmitigated", "0.77", "21.333"]
    assert lines[2].split()[0] == "mitigated" and " 11.6 " in lines[2]
    assert " - " in lines[1]  # no detection without the operator


def test_headline_rounds_the_shares(report: dict[str, Any]) -> None:
    assert headline(report) == (
        "Without stickyguard 21.3% of users got a degraded answer; with it, 2.3%."
    )


def test_chart_is_valid_svg_with_two_runs_and_the_drain_marked(report: dict[str, Any]) -> None:
    svg = chart_svg(report)
    root = ElementTree.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    paths = {p.get("data-run"): p.get("d") for p in root.iter(f"{ns}path")}
    assert set(paths) == {"unmitigated", "mitigated"}
    texts = " ".join(t.text or "" for t in root.iter(f"{ns}text"))
    assert "fault begins (t=10 s)" in texts
    assert "stickyguard drains the bad pod (11.6 s after the fault)" in texts
    assert "without stickyguard" in texts and "with stickyguard" in texts
    # The drain line sits at t=21.7 s on the same x scale as the curves.
    xs = [float(x) for x in re.findall(r'x1="([\d.]+)"', svg)]
    width, left, right = 720, 72, 20
    x_max = report["unmitigated"]["users_hurt_timeline"][-1][0]
    assert any(abs(x - (left + (width - left - right) * 21.7 / x_max)) < 0.2 for x in xs)


def test_chart_curves_end_at_each_runs_final_share(report: dict[str, Any]) -> None:
    root = ElementTree.fromstring(chart_svg(report))
    labels = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text") if t.get("font-weight")]
    last = [report[r]["users_hurt_timeline"][-1][1] for r in ("unmitigated", "mitigated")]
    assert labels == [f"{v:.1f}%" for v in last]


def test_page_is_self_contained(report: dict[str, Any]) -> None:
    page = render_html(report)
    assert page.startswith("<!doctype html>")
    assert "<script" not in page
    # No resource fetched from anywhere: the only URL is the SVG namespace.
    assert re.findall(r"(?:src|href)=", page) == []
    assert set(re.findall(r"https?://[^\s\"']+", page)) == {"http://www.w3.org/2000/svg"}
    assert "×28" in page and "<svg" in page and "21.333" in page


def test_page_escapes_what_it_quotes(report: dict[str, Any]) -> None:
    hostile = copy.deepcopy(report)
    hostile["settings"]["users"] = "<b>300</b>"
    assert "<b>300</b>" not in render_html(hostile)


def test_report_without_timeline_still_renders(report: dict[str, Any]) -> None:
    for run in ("unmitigated", "mitigated"):
        del report[run]["users_hurt_timeline"]
    assert "no timeline" in render_html(report)


def test_hurt_timeline_counts_first_hurts_per_step() -> None:
    assert hurt_timeline([1, 2, 12, 12.5], users=10, end=17.5) == [
        [0.0, 0.0],
        [5.0, 20.0],
        [10.0, 20.0],
        [15.0, 40.0],
        [17.5, 40.0],
    ]
