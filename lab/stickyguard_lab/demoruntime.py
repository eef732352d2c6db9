"""The node agent's runtime for the demo: one real demo-app process per pod, inside the pod
network (stickyguard_lab.netns) and listening on the pod's own IP, so an ingress controller
there reaches it at its EndpointSlice address.

Host-side tools (Prometheus scraping, the demo's fault switch) reach each pod through a
forward on the loopback twin of its podIP (198.18.a.b <-> 127.18.a.b), the way a port-forward
would; the runtime also lists those twins in a Prometheus file_sd file.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from stickyguard_lab.netns import Forward, PodNetwork, forward_out
from stickyguard_lab.nodeagent import loopback_for
from stickyguard_lab.prom import write_targets

APP_PORT = 8080


class DemoRuntime:
    def __init__(self, targets_dir: Path, log_dir: Path, network: PodNetwork) -> None:
        self.targets_dir, self.log_dir, self.network = targets_dir, log_dir, network
        # pod uid -> (process, pod IP, host twin address, forward)
        self.procs: dict[str, tuple[subprocess.Popen[bytes], str, str, Forward]] = {}

    def _publish(self) -> None:
        write_targets(
            self.targets_dir, "demo-pods", {twin: {} for _, _, twin, _ in self.procs.values()}
        )

    def start(self, pod: dict[str, Any], ip: str) -> None:
        meta = pod["metadata"]
        self.log_dir.mkdir(parents=True, exist_ok=True)
        app = (meta.get("labels") or {}).get("app", "app")
        with (self.log_dir / f"{meta['name']}.log").open("ab") as log:
            # Same process group as the agent: stopping the agent stops its pods too.
            proc = subprocess.Popen(
                self.network.command(
                    [
                        sys.executable,
                        "-m",
                        "stickyguard_lab.demoapp",
                        f"--listen={ip}:{APP_PORT}",
                        f"--pod={meta['name']}",
                        f"--namespace={meta['namespace']}",
                        f"--app={app}",
                    ]
                ),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        twin = loopback_for(ip)
        forward = forward_out(self.network, (twin, APP_PORT), (ip, APP_PORT))
        self.procs[meta["uid"]] = (proc, ip, f"{twin}:{APP_PORT}", forward)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not self.network.reachable((ip, APP_PORT)):
            time.sleep(0.05)
        self._publish()

    def ready(self, pod: dict[str, Any]) -> bool:
        entry = self.procs.get(pod["metadata"]["uid"])
        if entry is None or entry[0].poll() is not None:
            return False
        # The pod's own address, checked from inside the pod network (never from the host).
        return self.network.reachable((entry[1], APP_PORT))

    def stop(self, pod: dict[str, Any]) -> None:
        entry = self.procs.pop(pod["metadata"]["uid"], None)
        if entry:
            proc, _, _, forward = entry
            forward.stop()
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
            if proc.poll() is None:
                proc.kill()
            self._publish()
