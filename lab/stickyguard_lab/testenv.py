"""The whole lab environment: control plane + node agent + live Prometheus.

With the demo runtime (real pod processes) it also creates the pod network
(stickyguard_lab.netns), where pods listen on their own IPs and the apiserver is relayed in at
its usual address, so an ingress controller started there (stickyguard_lab.traefik) works as it
would in a cluster.

`python -m stickyguard_lab testenv up|down|status [--dir .testenv]` is what `make testenv-up`
and `make testenv-down` run; the pytest session fixture uses `LabEnv` directly.
"""

from __future__ import annotations

import shutil
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from stickyguard_lab.binaries import Binaries, find_binaries
from stickyguard_lab.controlplane import ControlPlane, start_control_plane
from stickyguard_lab.netns import PodNetwork, create_pod_network, require_privilege, start_relay
from stickyguard_lab.procs import Supervisor, stop_recorded
from stickyguard_lab.prom import Prometheus, start_prometheus

DEFAULT_NODES = ("lab-node-0", "lab-node-1", "lab-node-2")


@dataclass
class LabEnv:
    state_dir: Path
    supervisor: Supervisor
    binaries: Binaries
    control_plane: ControlPlane
    prometheus: Prometheus
    pod_network: PodNetwork | None = None  # demo runtime only

    @property
    def kubeconfig(self) -> Path:
        return self.control_plane.kubeconfig

    def env_lines(self) -> str:
        return f"KUBECONFIG={self.kubeconfig}\nSTICKYGUARD_PROMETHEUS_URL={self.prometheus.url}\n"

    def down(self) -> None:
        self.supervisor.stop_all()

    def restart_apiserver(self, downtime: float = 0.0) -> float:
        """Stops kube-apiserver (SIGTERM), waits `downtime`, starts it with the same arguments
        and waits until it is ready again; returns the seconds it was unavailable."""
        from stickyguard_lab.controlplane import _https_ok

        sup = self.supervisor
        old = next(c for c in sup.children if c.name == "kube-apiserver")
        argv = [str(a) for a in old.popen.args]  # type: ignore[union-attr]
        start = time.monotonic()
        sup.stop(old)
        time.sleep(downtime)
        new = sup.start("kube-apiserver", argv)
        sup.wait_until(
            new,
            lambda: _https_ok(f"{self.control_plane.server}/readyz", self.control_plane.pki),
            "apiserver /readyz",
            timeout=120,
        )
        return time.monotonic() - start


def up(state_dir: Path, nodes: tuple[str, ...] = DEFAULT_NODES, runtime: str = "none") -> LabEnv:
    """Starts everything in a fresh state_dir; on any failure stops what it started."""
    if runtime == "demo":
        require_privilege()
    state_dir = state_dir.resolve()  # the kubeconfig and the processes need absolute paths
    if state_dir.exists():
        stop_recorded(state_dir)
        shutil.rmtree(state_dir)
    state_dir.mkdir(parents=True)
    bins = find_binaries()
    sup = Supervisor(state_dir)
    try:
        cp = start_control_plane(sup, bins, state_dir)
        prom = start_prometheus(sup, bins, state_dir / "prometheus")
        net = None
        agent_args = []
        if runtime == "demo":
            net = create_pod_network(sup)
            api = urllib.parse.urlsplit(cp.server)
            start_relay(sup, net, "apiserver-relay", into=[(api.hostname or "", api.port or 443)])
            agent_args.append(f"--netns={net.path}")
        sup.start(
            "node-agent",
            [
                sys.executable,
                "-m",
                "stickyguard_lab.nodeagent",
                f"--kubeconfig={cp.kubeconfig}",
                f"--nodes={','.join(nodes)}",
                f"--runtime={runtime}",
                f"--targets-dir={prom.targets_dir}",
                f"--log-dir={state_dir / 'logs' / 'pods'}",
                *agent_args,
            ],
        )
    except BaseException:
        sup.stop_all()
        raise
    env = LabEnv(state_dir, sup, bins, cp, prom, net)
    (state_dir / "env").write_text(env.env_lines())
    return env


def down(state_dir: Path) -> list[str]:
    stopped = stop_recorded(state_dir)
    return stopped


def status(state_dir: Path) -> str:
    env_file = state_dir / "env"
    if not env_file.exists():
        return f"no test environment in {state_dir}"
    values = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line)
    report = [f"state: {state_dir}"]
    for key, value in values.items():
        report.append(f"{key}={value}")
    try:
        with urllib.request.urlopen(
            f"{values['STICKYGUARD_PROMETHEUS_URL']}/-/ready", timeout=2
        ) as r:
            report.append(f"prometheus: {'ready' if r.status == 200 else r.status}")
    except OSError as e:
        report.append(f"prometheus: unreachable ({e})")
    return "\n".join(report)


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m stickyguard_lab testenv")
    parser.add_argument("action", choices=["up", "down", "status"])
    parser.add_argument("--dir", default=".testenv", type=Path)
    args = parser.parse_args(argv)
    state_dir = args.dir.resolve()
    if args.action == "up":
        t0 = time.monotonic()
        env = up(state_dir)
        print(
            f"test environment up in {time.monotonic() - t0:.1f}s "
            f"(Kubernetes {env.binaries.k8s_version}); source {state_dir / 'env'}"
        )
        print(env.env_lines(), end="")
    elif args.action == "down":
        stopped = down(state_dir)
        print(f"stopped: {', '.join(stopped) or 'nothing was running'}")
    else:
        print(status(state_dir))
    return 0
