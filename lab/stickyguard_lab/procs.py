"""Starting, watching and stopping the lab's child processes.

Every process runs in its own session so that a later `testenv down` (another Python process)
can stop the whole group from the PID file, leaving nothing behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

PIDS_FILE = "pids.json"


class StartupError(RuntimeError):
    """A lab process did not come up; the message quotes the tail of its log."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
        return True


@dataclass
class Child:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class Supervisor:
    """Owns the lab's processes and records their PIDs in `state_dir/pids.json`."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.children: list[Child] = []

    def start(
        self, name: str, argv: Sequence[str | os.PathLike[str]], env: dict[str, str] | None = None
    ) -> Child:
        log = self.state_dir / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            popen = subprocess.Popen(
                [str(a) for a in argv],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env={**os.environ, **(env or {})},
            )
        child = Child(name, popen, log)
        self.children.append(child)
        self._record()
        return child

    def _record(self) -> None:
        pids = {c.name: c.popen.pid for c in self.children if c.alive()}
        (self.state_dir / PIDS_FILE).write_text(json.dumps(pids))

    def wait_until(
        self, child: Child, ready: Callable[[], bool], what: str, timeout: float = 60.0
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not child.alive():
                raise StartupError(
                    f"{child.name} exited with {child.popen.returncode} before {what}:\n"
                    f"{child.log_tail()}"
                )
            with contextlib.suppress(Exception):
                if ready():
                    return
            time.sleep(0.1)
        raise StartupError(
            f"{child.name}: timed out after {timeout}s waiting for {what}:\n{child.log_tail()}"
        )

    def stop(self, child: Child, timeout: float = 15.0) -> None:
        terminate_group(child.popen.pid, timeout)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.popen.wait(timeout=1)
        self.children = [c for c in self.children if c is not child]
        self._record()

    def stop_all(self) -> None:
        for child in reversed(list(self.children)):
            self.stop(child)
        (self.state_dir / PIDS_FILE).unlink(missing_ok=True)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def terminate_group(pgid: int, timeout: float = 15.0) -> None:
    """SIGTERM a process group, then SIGKILL what is left after `timeout` seconds."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pgid)
        if not _group_alive(pgid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    for _ in range(100):
        _reap(pgid)
        if not _group_alive(pgid):
            return
        time.sleep(0.05)


def _reap(pid: int) -> None:
    # Zombies of our own children keep the group "alive" for killpg(0); collect them.
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def stop_recorded(state_dir: Path) -> list[str]:
    """Stops every process group recorded in state_dir/pids.json (from another process)."""
    path = state_dir / PIDS_FILE
    if not path.exists():
        return []
    pids: dict[str, int] = json.loads(path.read_text())
    for pid in reversed(list(pids.values())):
        terminate_group(pid)
    path.unlink(missing_ok=True)
    return list(pids)
