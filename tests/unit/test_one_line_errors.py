"""Every expected failure a user can meet is one line that says what to do, never a traceback:
the `stickyguard` commands (bad or missing kubeconfig, unreachable apiserver, taken port), the
lab behind `make demo` (missing tool or binaries, taken demo port) and hack/setup.sh (missing
Debian packages when not root, old Python, missing or old Go). Each case runs the real command
in a subprocess, the way a person would meet it."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def one_line_error(cmd: list[str], code: int, *, env: dict[str, str] | None = None) -> str:
    # analyze needs a Prometheus URL before it looks at the cluster; nothing listens on port 1.
    base = {**os.environ, "STICKYGUARD_PROMETHEUS_URL": "http://127.0.0.1:1"}
    out = subprocess.run(
        cmd, capture_output=True, text=True, timeout=120, env={**base, **(env or {})}
    )
    lines = out.stderr.strip().splitlines()
    assert "Traceback" not in out.stderr, out.stderr
    assert len(lines) == 1, out.stderr
    assert out.returncode == code, (out.returncode, out.stderr)
    return lines[0]


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (bound then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        s.listen()
        yield int(s.getsockname()[1])


def kubeconfig(path: Path, server: str) -> Path:
    path.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters: [{{name: c, cluster: {{server: '{server}'}}}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\n"
    )
    return path


def sg(*args: str) -> list[str]:
    return [str(BIN / "stickyguard"), *args]


@pytest.mark.parametrize(
    "command", ["status", "run", "doctor -n x p", "analyze -n x --selector a=b"]
)
def test_missing_kubeconfig_file(command: str, tmp_path: Path) -> None:
    line = one_line_error(sg(*command.split(), f"--kubeconfig={tmp_path / 'nope'}"), 2)
    assert line.startswith("error: kubeconfig ") and "no such file" in line
    assert "--kubeconfig FILE or set KUBECONFIG" in line


@pytest.mark.parametrize("command", ["status", "run"])
def test_kubeconfig_that_is_not_yaml(command: str, tmp_path: Path) -> None:
    bad = tmp_path / "kubeconfig"
    bad.write_text(": [not yaml\n")
    line = one_line_error(sg(command, f"--kubeconfig={bad}"), 2)
    assert "is not valid YAML" in line and str(bad) in line


@pytest.mark.parametrize("command", ["status", "run"])
def test_kubeconfig_without_a_cluster(command: str, tmp_path: Path) -> None:
    bad = tmp_path / "kubeconfig"
    bad.write_text("apiVersion: v1\nkind: Config\n")
    line = one_line_error(sg(command, f"--kubeconfig={bad}"), 2)
    assert line.startswith(f"error: kubeconfig {bad}: ")


@pytest.mark.parametrize(
    "command", ["status", "run", "doctor -n x p", "analyze -n x --selector a=b"]
)
def test_unreachable_apiserver(command: str, tmp_path: Path, closed_port: int) -> None:
    server = f"https://127.0.0.1:{closed_port}"
    cfg = kubeconfig(tmp_path / "kubeconfig", server)
    line = one_line_error(sg(*command.split(), f"--kubeconfig={cfg}"), 3)
    assert f"cannot reach the Kubernetes API server at {server}" in line
    assert "Connection refused" in line


def test_no_kubeconfig_outside_a_cluster(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "KUBECONFIG": "", "KUBERNETES_SERVICE_HOST": ""}
    line = one_line_error(sg("status"), 2, env=env)
    assert "no kubeconfig found and not running in a cluster" in line


@pytest.mark.parametrize("flag", ["--metrics-port", "--gate-port", "--liveness-port"])
def test_taken_port(flag: str, taken_port: int, tmp_path: Path) -> None:
    cfg = kubeconfig(tmp_path / "kubeconfig", "https://127.0.0.1:1")
    line = one_line_error(sg("run", f"--kubeconfig={cfg}", f"{flag}={taken_port}"), 2)
    assert line == (
        f"error: {flag} {taken_port}: already in use; pick another port or stop the process "
        "using it"
    )


def test_scenario_file_that_is_not_yaml(tmp_path: Path) -> None:
    bad = tmp_path / "scenario.yaml"
    bad.write_text("users: [oops\n")
    line = one_line_error(sg("simulate", f"--scenario={bad}"), 2)
    assert line.startswith(f"error: {bad}: not valid YAML: ")


def test_scenario_with_a_bad_policy(tmp_path: Path) -> None:
    bad = tmp_path / "scenario.yaml"
    bad.write_text(
        "name: x\npods: 3\nusers: 10\nduration: 60\nfaults: []\n"
        "policy: {safety: {maxDrainedPercent: 500}}\n"
    )
    line = one_line_error(sg("simulate", f"--scenario={bad}"), 2)
    assert line.startswith(f"error: {bad}: policy: ") and "maxDrainedPercent" in line


# --- the lab (`make demo`, `make testenv-up`)


def lab(*args: str) -> list[str]:
    return [sys.executable, "-m", "stickyguard_lab", *args]


def test_lab_without_built_binaries(tmp_path: Path) -> None:
    line = one_line_error(
        lab("testenv", "up", f"--dir={tmp_path / 'env'}"),
        2,
        env={"STICKYGUARD_BIN_DIR": str(tmp_path / "bin")},
    )
    assert "is missing: run 'make binaries' first" in line


def path_without(tmp_path: Path, *missing: str) -> str:
    """A PATH holding the tools of PATH except `missing` (symlinked into one directory)."""
    d = tmp_path / "path"
    d.mkdir(mode=0o755)
    for entry in os.environ["PATH"].split(os.pathsep):
        if not os.path.isdir(entry):
            continue
        for tool in os.listdir(entry):
            if tool not in missing and not (d / tool).exists():
                (d / tool).symlink_to(os.path.join(entry, tool))
    return str(d)


def test_demo_without_prometheus(tmp_path: Path) -> None:
    line = one_line_error(
        lab("demo", f"--state-dir={tmp_path / 'demo'}"),
        2,
        env={"STICKYGUARD_TOOL_PATH": path_without(tmp_path, "prometheus")},
    )
    assert "prometheus not found on PATH: run 'bash hack/setup.sh demo'" in line


def test_demo_with_its_port_taken(tmp_path: Path) -> None:
    if not shutil.which("prometheus", path="/usr/sbin:" + os.environ["PATH"]):
        pytest.fail("prometheus is needed here: run 'bash hack/setup.sh test'")
    # The address the demo probes, not the wildcard: a demo running beside this test (its
    # pods on other 127.18.x.y addresses) is left alone, and a wildcard listener on 8080
    # would block this probe address all the same.
    with socket.socket() as s:
        try:
            s.bind(("127.18.255.254", 8080))
            s.listen()
        except OSError:
            pass  # already taken (a wildcard listener): the demo must say so all the same
        line = one_line_error(lab("demo", f"--state-dir={tmp_path / 'demo'}"), 2)
    assert "port 8080 is taken on this machine" in line


# --- hack/setup.sh


def setup(target: str, env: dict[str, str], *, as_user: bool = False) -> list[str]:
    cmd = ["bash", str(REPO / "hack" / "setup.sh"), target]
    if as_user:
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
    return cmd


def fake_tool(d: Path, name: str, script: str) -> None:
    d.mkdir(exist_ok=True)
    (d / name).write_text(f"#!/bin/sh\n{script}\n")
    (d / name).chmod(0o755)


def test_setup_names_the_apt_command_when_not_root() -> None:
    # Outside pytest's private tmp: the unprivileged user must reach the PATH directory.
    with tempfile.TemporaryDirectory() as d:
        os.chmod(d, 0o755)
        env = {"PATH": path_without(Path(d), "prometheus", "promtool")}
        # The unprivileged user may not reach root's Python (pyenv); the system's will do.
        if os.geteuid() == 0 and os.path.exists("/usr/bin/python3"):
            env["PYTHON"] = "/usr/bin/python3"
        line = one_line_error(setup("demo", env, as_user=os.geteuid() == 0), 2, env=env)
    prefix = "setup: missing Debian packages; run: sudo apt-get install -y --no-install-recommends "
    assert line.startswith(prefix) and "prometheus" in line.removeprefix(prefix).split()


def test_setup_rejects_an_old_python(tmp_path: Path) -> None:
    fake_tool(
        tmp_path / "fake",
        "python3",
        'case "$2" in *platform*) echo 3.9.18 ;; *) exit 1 ;; esac',
    )
    line = one_line_error(setup("venv", {}), 2, env={"PYTHON": str(tmp_path / "fake" / "python3")})
    assert "stickyguard needs Python >= 3.11" in line and "3.9.18" in line


def test_setup_needs_go_only_to_build_the_binaries(tmp_path: Path) -> None:
    env = {"STICKYGUARD_CACHE": str(tmp_path / "cache"), "PATH": path_without(tmp_path, "go")}
    line = one_line_error(setup("demo", env), 2, env=env)
    assert line.startswith("setup: Go >= 1.") and "needed once to build" in line
    fake_tool(tmp_path / "fake", "go", "echo go1.20.1")
    env["PATH"] = f"{tmp_path / 'fake'}:{env['PATH']}"
    line = one_line_error(setup("demo", env), 2, env=env)
    assert "found go1.20.1" in line


def test_setup_passes_when_everything_is_there() -> None:
    if not shutil.which("prometheus"):
        pytest.skip("the machine lacks the demo's packages (the other tests cover that)")
    out = subprocess.run(setup("demo", {}), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout == "" and out.stderr == "", out


def test_demo_as_a_user_without_privilege(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to drop to another user")
    cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"]
    line = one_line_error([*cmd, *lab("demo", f"--state-dir={tmp_path / 'demo'}")], 2)
    assert "needs root or CAP_SYS_ADMIN" in line and "sudo make demo" in line
