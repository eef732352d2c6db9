"""README's `stickyguard` commands run for real against the test environment, as a reader would
type them: optional `[...]` parts dropped, the first of `a|b` choices taken, upper-case
placeholders filled, and the lab's Prometheus and kubeconfig in place of the example ones.
`run` is left to test_image.py and test_manifests.py (it does not return)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from readme import README_COMMANDS
from stickyguard_lab import testenv

pytestmark = pytest.mark.integration
STICKYGUARD = str(Path(sys.executable).parent / "stickyguard")
# Exit codes README documents: analyze 4 = no series for the selector; doctor 1 = a check
# failed (the example policy does not exist here).
ALLOWED = {"analyze": {0, 4}, "simulate": {0}, "status": {0}, "doctor": {0, 1}}


def as_typed(command: str, lab: testenv.LabEnv) -> list[str]:
    line = re.sub(r"\[[^\]]*\]", " ", command)  # optional parts
    line = re.sub(r"(\S+?)\|\S+", r"\1", line)  # first choice
    line = re.sub(r"https?://prometheus:9090", lab.prometheus.url, line)
    words = line.split()[1:]
    fill = {"NS": "default", "POLICY": "web", "URL": lab.prometheus.url}
    return [fill.get(w, w) for w in words]


@pytest.mark.parametrize(
    "command",
    [c for c in README_COMMANDS if c.startswith("stickyguard ") and c.split()[1] != "run"],
    ids=lambda c: c.split()[1],
)
def test_readme_command_runs_against_the_lab(
    command: str, lab: testenv.LabEnv, crd_installed: None
) -> None:
    args = as_typed(command, lab)
    env = {**os.environ, "KUBECONFIG": str(lab.kubeconfig)}
    if args[0] == "analyze":
        args.append(f"--kubeconfig={lab.kubeconfig}")
    out = subprocess.run([STICKYGUARD, *args], capture_output=True, text=True, timeout=300, env=env)
    assert "Traceback" not in out.stderr, out.stderr
    assert out.returncode in ALLOWED[args[0]], (args, out.returncode, out.stderr)
    assert out.stdout.strip() or out.stderr.strip(), f"{args}: printed nothing"
