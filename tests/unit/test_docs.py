"""Docs that cannot drift: README's shell commands are run here (make targets with `make -n`,
every `stickyguard` command with `--help`, its flags checked against the real parser), every
relative link in README and docs/ resolves, and every figure in README's "Figures" section comes
from a committed file under bench/results/.

How figures are tied to their source (so that edits keep working): in the Figures section, a
*figure* is a number with a decimal point, a percentage, a `×N` factor, or a number with a unit
of time or size (`64 ms`, `30 s`, `143 MiB`). Each sentence's figures must be found in the
bench/results/ files that sentence links to, or, when it links none, the ones the nearest
sentence before it in the same paragraph links to. "Found" means some number in the file
rounds to the figure at the figure's precision (`21.3%` matches 21.333; `×28` matches 27.7);
percentages also match ratios (0.213 for 21.3%), and a `×N` factor also matches the ratio of
two numbers on one row of a source (one table line, or one JSON object's values: ×29 for
24.39 % users over 0.852 % requests). A figure with no source fails the test with the sentence
it is in.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from readme import README_COMMANDS

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
DOCS = [README, *sorted((REPO / "docs").rglob("*.md"))]
STICKYGUARD = str(Path(sys.executable).parent / "stickyguard")


# --- commands in README's fenced shell blocks


def test_readme_has_the_two_commands() -> None:
    assert "make demo" in README_COMMANDS and "make test" in README_COMMANDS


def flags_of(command: str) -> list[str]:
    """The long and short options a documented command line uses, placeholders and all
    (`[--seed 1]`, `-o table|json`, `--webhook-port 9443`)."""
    words = re.sub(r"[\[\]]", " ", command).split()
    return [w.split("=", 1)[0] for w in words if re.fullmatch(r"--?[A-Za-z][\w-]*(=.*)?", w)]


@pytest.mark.parametrize(
    "command", [c for c in README_COMMANDS if c.startswith("stickyguard ")], ids=lambda c: c[:40]
)
def test_stickyguard_commands_and_their_flags_exist(command: str) -> None:
    sub = command.split()[1]
    out = subprocess.run(
        [STICKYGUARD, sub, "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, f"`stickyguard {sub} --help`: {out.stderr}"
    known = set(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", out.stdout))
    missing = [f for f in flags_of(command) if f not in known]
    assert not missing, f"README's `{command}` uses flags `stickyguard {sub}` lacks: {missing}"


@pytest.mark.parametrize(
    "command", [c for c in README_COMMANDS if c.startswith("make ")], ids=lambda c: c
)
def test_make_commands_exist(command: str) -> None:
    # -n: what the target would run, without running it (the targets themselves are what CI
    # and a newcomer run).
    out = subprocess.run(
        ["make", "-n", "-C", str(REPO), *shlex.split(command)[1:]],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr


def test_every_readme_command_is_checked() -> None:
    unchecked = [c for c in README_COMMANDS if not c.startswith(("make ", "stickyguard "))]
    assert not unchecked, f"README commands no test runs: {unchecked} (teach test_docs.py)"


def test_readme_make_targets_in_prose_exist() -> None:
    targets = set(re.findall(r"`make ([a-z][\w-]*)", README.read_text()))
    out = subprocess.run(["make", "-C", str(REPO), "-n", *sorted(targets)], capture_output=True)
    assert out.returncode == 0, out.stderr.decode()


# --- links


def relative_links(text: str) -> Iterator[str]:
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)  # code is not a link
    for m in re.finditer(r"\]\(([^)\s]+)\)|^\[[^\]]+\]:\s*(\S+)", text, re.M):
        target = m.group(1) or m.group(2)
        if not re.match(r"[a-z][a-z0-9+.-]*:|#", target):
            yield target


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(doc: Path) -> None:
    broken = []
    for target in relative_links(doc.read_text()):
        path, _, anchor = target.partition("#")
        resolved = (doc.parent / path).resolve()
        if not resolved.exists() or (
            anchor and resolved.suffix == ".md" and anchor not in anchors(resolved)
        ):
            broken.append(target)
    assert not broken, f"{doc.relative_to(REPO)}: links that resolve to nothing: {broken}"


def anchors(md: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes."""
    out = set()
    for m in re.finditer(r"^#+\s+(.*)$", md.read_text(), re.M):
        slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
        out.add(slug)
    return out


def test_link_check_can_fail(tmp_path: Path) -> None:
    doc = tmp_path / "x.md"
    doc.write_text("[a](missing.md) [b](https://example.org) [c](#top)\n```sh\n[d](no)\n```\n")
    assert list(relative_links(doc.read_text())) == ["missing.md"]


# --- figures


FIGURE = re.compile(
    r"×\s?(?P<factor>\d+(?:\.\d+)?)"
    r"|(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)"
    r"(?P<unit>\s?%|\s(?:ms|s|MiB|GiB|minutes?)\b)?"
)


def figures(sentence: str) -> list[str]:
    """The figures of a sentence, as written (`21.3%`, `×28`, `64 ms`, `0.37`)."""
    plain = re.sub(r"`[^`]*`|\[[^\]]*\]\([^)]*\)", " ", sentence)  # code and links: not figures
    out = []
    for m in FIGURE.finditer(plain):
        if m.group("factor"):
            out.append("×" + m.group("factor"))
        elif "." in m.group("num") or m.group("unit"):
            out.append(m.group(0).strip())
    return out


def value_of(figure: str) -> tuple[float, int, bool]:
    """(value, decimals, is_percentage)."""
    number = re.search(r"\d[\d,]*(?:\.\d+)?", figure)
    assert number
    text = number.group(0).replace(",", "")
    decimals = len(text.partition(".")[2])
    return float(text), decimals, figure.endswith("%")


def numbers_in(path: Path) -> list[float]:
    if path.suffix == ".json":
        found: list[float] = []

        def walk(node: object) -> None:
            if isinstance(node, bool):
                return
            if isinstance(node, int | float):
                found.append(float(node))
            elif isinstance(node, dict):
                for v in node.values():
                    walk(v)
            elif isinstance(node, list):
                for v in node:
                    walk(v)

        walk(json.loads(path.read_text()))
        return found
    return [float(n.replace(",", "")) for n in re.findall(r"\d[\d,]*(?:\.\d+)?", path.read_text())]


def rows_in(path: Path) -> list[list[float]]:
    """The numbers of each row: a line of a text file, or one JSON object's own values."""
    if path.suffix != ".json":
        return [
            [float(n.replace(",", "")) for n in re.findall(r"\d[\d,]*(?:\.\d+)?", line)]
            for line in path.read_text().splitlines()
        ]
    rows: list[list[float]] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            rows.append(
                [
                    float(v)
                    for v in node.values()
                    if isinstance(v, int | float) and not isinstance(v, bool)
                ]
            )
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(json.loads(path.read_text()))
    return rows


def ratios(rows: list[list[float]]) -> list[float]:
    return [a / b for row in rows for a in row for b in row if b and a is not b]


def sourced(figure: str, values: list[float], row_ratios: list[float] | None = None) -> bool:
    value, decimals, pct = value_of(figure)
    candidates = values + ([100 * v for v in values] if pct else [])
    if figure.startswith("×"):
        candidates += row_ratios or []
    tolerance = 0.5 * 10**-decimals + 1e-9
    return any(abs(v - value) <= tolerance for v in candidates)


def figures_section(text: str) -> str:
    m = re.search(r"^## Figures\n(.*?)(?=^## )", text, re.S | re.M)
    assert m, "README has no '## Figures' section"
    return m.group(1)


def sentences(paragraph: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+(?=[A-Z`(])", " ".join(paragraph.split())) if s]


def unsourced_figures(section: str, root: Path) -> list[str]:
    problems = []
    for paragraph in section.split("\n\n"):
        sources: list[Path] = []
        for sentence in sentences(paragraph):
            linked = [
                root / t
                for t in re.findall(r"\]\((bench/results/[^)#\s]+)\)", sentence)
                if (root / t).is_file()
            ]
            sources = linked or sources
            values = [v for p in sources for v in numbers_in(p)]
            row_ratios = [r for p in sources for r in ratios(rows_in(p))]
            for fig in figures(sentence):
                if not sourced(fig, values, row_ratios):
                    where = ", ".join(str(p.relative_to(root)) for p in sources) or "no source"
                    problems.append(f"{fig!r} (looked in: {where}) in: {sentence}")
    return problems


def test_every_readme_figure_comes_from_a_committed_result() -> None:
    problems = unsourced_figures(figures_section(README.read_text()), REPO)
    assert not problems, "figures without a bench/results source:\n" + "\n".join(problems)


def test_readme_figure_sources_are_committed() -> None:
    linked = set(re.findall(r"\]\((bench/results/[^)#\s]+)\)", README.read_text()))
    tracked = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "bench/results"], capture_output=True, text=True
    )
    if tracked.returncode != 0:
        pytest.skip("not a git checkout")
    missing = linked - set(tracked.stdout.split())
    assert not missing, f"README links results that are not committed: {sorted(missing)}"


def test_figure_check_can_fail(tmp_path: Path) -> None:
    (tmp_path / "bench" / "results").mkdir(parents=True)
    (tmp_path / "bench" / "results" / "r.json").write_text('{"users": 21.333, "t": 11.62}')
    ok = "Demo ([r](bench/results/r.json)): 21.3% of users, drained 11.6 s after. Then 21 %."
    assert unsourced_figures(ok, tmp_path) == []
    bad = "Demo ([r](bench/results/r.json)): 24.4% of users (×3). Analysis takes 64 ms."
    problems = unsourced_figures(bad, tmp_path)
    assert [p.split(" ")[0] for p in problems] == ["'24.4%'", "'×3'", "'64"]
    (tmp_path / "bench" / "results" / "t.md").write_text("| a | 24.39 | 0.852 |\n| b | 3 | 9 |\n")
    derived = "Sim ([t](bench/results/t.md)): ×29 the share of bad requests. Not ×5."
    assert [p.split(" ")[0] for p in unsourced_figures(derived, tmp_path)] == ["'×5'"]
    assert figures("seed 1, 3 of 30 pods, `make bench`, ×29, 2,000 pods, 0.37 of a core") == [
        "×29",
        "0.37",
    ]


# --- docs/operations.md against the metrics the operator really registers


def operations_rows() -> dict[str, str]:
    text = (REPO / "docs" / "operations.md").read_text()
    return {
        m.group(1): m.group(0) for m in re.finditer(r"^\| `(stickyguard_\w+)` \|.*$", text, re.M)
    }


def test_operations_doc_lists_every_metric_and_label_value() -> None:
    from stickyguard.controller.telemetry import REGISTRY

    rows = operations_rows()
    problems = []
    for family in REGISTRY.collect():
        name = family.name + ("_total" if family.type == "counter" else "")
        row = rows.get(name)
        if row is None:
            problems.append(f"{name}: not in docs/operations.md")
            continue
        # Enumerations in the help text, "(ok, metrics_unavailable, ...)", are label values.
        for group in re.findall(r"\(([a-z_]+(?:, [a-z_]+)+)\)", family.documentation):
            missing = [v for v in group.split(", ") if not re.search(rf"\b{v}\b", row)]
            if missing:
                problems.append(f"{name}: label values {missing} missing from its row")
    assert not problems, "\n".join(problems)


# --- manifest excerpts: docs show the files the tests apply, not snippets nobody ran

EXCERPT = re.compile(r"^<!-- excerpt: (\S+) -->\n```\w*\n(.*?)^```", re.S | re.M)


def stale_excerpts(text: str, root: Path) -> list[str]:
    """Excerpts (a fenced block right after `<!-- excerpt: PATH -->`) that are not, line for
    line and in order, a contiguous part of the file PATH names (relative to the repo)."""
    problems = []
    for m in EXCERPT.finditer(text):
        source = root / m.group(1)
        block = m.group(2).splitlines()
        if not source.is_file():
            problems.append(f"{m.group(1)}: no such file")
            continue
        lines = source.read_text().splitlines()
        if not any(lines[i : i + len(block)] == block for i in range(len(lines))):
            problems.append(f"{m.group(1)}: not in the file:\n" + "\n".join(block))
    return problems


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_manifest_excerpts_are_in_their_files(doc: Path) -> None:
    problems = stale_excerpts(doc.read_text(), REPO)
    assert not problems, f"{doc.relative_to(REPO)}:\n" + "\n".join(problems)


def test_rollout_docs_show_the_tested_examples() -> None:
    text = (REPO / "docs" / "rollouts.md").read_text()
    shown = {m.group(1) for m in EXCERPT.finditer(text)}
    assert {
        "examples/argo-rollouts/analysistemplate.yaml",
        "examples/argo-rollouts/rollout.yaml",
        "examples/flagger/canary.yaml",
    } <= shown
    # Every yaml block of the page is an excerpt of a tested file.
    blocks = len(re.findall(r"^```yaml$", text, re.M))
    assert blocks == len(EXCERPT.findall(text)) + UNTESTED_ROLLOUT_BLOCKS


# docs/rollouts.md's opening policy snippet is a fragment of no single file.
UNTESTED_ROLLOUT_BLOCKS = 1


def test_excerpt_check_can_fail(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text("a: 1\nb:\n  c: 2\n")
    ok = "<!-- excerpt: m.yaml -->\n```yaml\nb:\n  c: 2\n```\n"
    assert stale_excerpts(ok, tmp_path) == []
    changed = "<!-- excerpt: m.yaml -->\n```yaml\nb:\n  c: 3\n```\n"
    missing = "<!-- excerpt: n.yaml -->\n```yaml\nb: 1\n```\n"
    assert len(stale_excerpts(changed + missing, tmp_path)) == 2
