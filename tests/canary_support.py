"""What the canary-tool end-to-end tests (test_argo_rollouts.py, test_flagger.py) share: the
examples under examples/ loaded as they are plus the documented lab patch, a workload's
synthetic traffic with HTTP-200 quality errors, a recorder of when things first happened,
and the figures they write.

The lab patch changes only what cannot be true next to a test cluster: the gate's address
(no cluster DNS out of cluster: the loopback port of the test's operator) and time scales
(detection window and intervals of seconds, not minutes, so a scenario takes a minute or two).
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from operator_support import GVR
from stickyguard_lab import testenv
from stickyguard_lab.exporter import SyntheticExporter

RESULTS_ENV = "STICKYGUARD_PEERS_RESULTS"  # a JSON file the tests merge their figures into

# What the lab changes in the examples' StickyPolicy: time scales only.
LAB_POLICY_PATCH: dict[str, Any] = {
    "spec": {
        "prometheus": {"window": "20s"},
        "detection": {"intervalSeconds": 5, "minRequests": 30},
        "safety": {"cooldownSeconds": 0},
    }
}


def load(path: Path) -> list[dict[str, Any]]:
    """The objects of a manifest file, as written."""
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def on_loopback(url: str, port: int) -> str:
    """`url` with its scheme and host replaced by the operator's gate on loopback (the
    examples name the in-cluster Service, which no DNS resolves next to the lab)."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(("http", f"127.0.0.1:{port}", *parts[2:]))


def patch_policy(custom: client.CustomObjectsApi, ns: str, name: str = "shop") -> None:
    custom.patch_namespaced_custom_object(GVR[0], GVR[1], ns, GVR[2], name, LAB_POLICY_PATCH)


def rollout_section(custom: client.CustomObjectsApi, ns: str, name: str = "shop") -> dict[str, Any]:
    obj = custom.get_namespaced_custom_object(GVR[0], GVR[1], ns, GVR[2], name)
    return dict((obj.get("status") or {}).get("rollout") or {})


@contextmanager
def traffic(
    lab: testenv.LabEnv,
    core: client.CoreV1Api,
    ns: str,
    selector: str,
    series_labels: tuple[str, ...] = (),
) -> Iterator[SyntheticExporter]:
    """Requests to every serving pod `selector` picks, 20/s each, counted as the app would:
    HTTP 200 always, app_answers_total{quality="ok"|"degraded"}; scraped by the lab's
    Prometheus for as long as the block runs."""
    exporter = SyntheticExporter(
        ns, "shop", default_ratio=0.001, quality=True, series_labels=series_labels
    )
    exporter.register(lab.prometheus.targets_dir, ns)
    exporter.follow(core, selector, interval=0.25)
    try:
        yield exporter
    finally:
        exporter.stop()
        (lab.prometheus.targets_dir / f"{ns}.json").unlink(missing_ok=True)


class FirstTimes:
    """Polls named conditions every 0.2 s in a thread and keeps the first time each held."""

    def __init__(self, conditions: dict[str, Callable[[], bool]]) -> None:
        self.conditions = conditions
        self.times: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, check in self.conditions.items():
                if name in self.times:
                    continue
                try:
                    held = check()
                except Exception:  # an object not created yet, the apiserver mid-update
                    held = False
                if held:
                    self.times[name] = time.time()
            self._stop.wait(0.2)

    def __enter__(self) -> FirstTimes:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def mark(self, name: str) -> None:
        """Records that `name` happened now (something the test did itself)."""
        self.times[name] = time.time()

    def between(self, start: str, end: str) -> float | None:
        if start in self.times and end in self.times:
            return round(self.times[end] - self.times[start], 1)
        return None


def record(tool: str, scenario: str, figures: dict[str, Any]) -> None:
    """Merges one scenario's figures into $STICKYGUARD_PEERS_RESULTS (two pytest-xdist
    workers may write at once: the file is locked), and prints them."""
    print(f"\n[{tool} {scenario}] {json.dumps(figures)}")
    out = os.environ.get(RESULTS_ENV)
    if not out:
        return
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        text = f.read()
        data = json.loads(text) if text.strip() else {}
        data.setdefault(tool, {})[scenario] = figures
        f.seek(0)
        f.truncate()
        f.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
