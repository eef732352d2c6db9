"""The node agent's runtime for the demo: one real demo-app process per pod, listening on the
loopback twin of the pod's IP, and a Prometheus file_sd file listing them all."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from stickyguard.lab.nodeagent import loopback_for
from stickyguard.lab.prom import write_targets

APP_PORT = 8080


class DemoRuntime:
    def __init__(self, targets_dir: Path, log_dir: Path) -> None:
        self.targets_dir, self.log_dir = targets_dir, log_dir
        self.procs: dict[str, tuple[subprocess.Popen[bytes], str]] = {}

    def _publish(self) -> None:
        write_targets(self.targets_dir, "demo-pods", {addr: {} for _, addr in self.procs.values()})

    def start(self, pod: dict[str, Any], ip: str) -> None:
        meta = pod["metadata"]
        addr = f"{loopback_for(ip)}:{APP_PORT}"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        app = (meta.get("labels") or {}).get("app", "app")
        with (self.log_dir / f"{meta['name']}.log").open("ab") as log:
            # Same process group as the agent: stopping the agent stops its pods too.
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "stickyguard.lab.demoapp",
                    f"--listen={addr}",
                    f"--pod={meta['name']}",
                    f"--namespace={meta['namespace']}",
                    f"--app={app}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.procs[meta["uid"]] = (proc, addr)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not self._listening(addr):
            time.sleep(0.05)
        self._publish()

    @staticmethod
    def _listening(addr: str) -> bool:
        host, port = addr.rsplit(":", 1)
        with socket.socket() as s:
            s.settimeout(0.2)
            return s.connect_ex((host, int(port))) == 0

    def ready(self, pod: dict[str, Any]) -> bool:
        entry = self.procs.get(pod["metadata"]["uid"])
        return entry is not None and entry[0].poll() is None and self._listening(entry[1])

    def stop(self, pod: dict[str, Any]) -> None:
        entry = self.procs.pop(pod["metadata"]["uid"], None)
        if entry:
            entry[0].terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                entry[0].wait(timeout=5)
            if entry[0].poll() is None:
                entry[0].kill()
            self._publish()
