"""What the canary-tool end-to-end tests (test_argo_rollouts.py, test_flagger.py) share: the
peer controller's lifetime, the examples under examples/ loaded and applied as they are plus
the documented lab patch, a workload's synthetic traffic with HTTP-200 quality errors, what a
user changes to release a version, a recorder of when things first happened, and the figures
they write.

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
from typing import Any, TypeVar

import yaml
from kubernetes import client

from operator_support import GVR
from stickyguard_lab import testenv
from stickyguard_lab.exporter import SyntheticExporter
from stickyguard_lab.kubectl import apply
from stickyguard_lab.operatorproc import OperatorProcess
from stickyguard_lab.procs import Supervisor
from support import wait_for

RESULTS_ENV = "STICKYGUARD_PEERS_RESULTS"  # a JSON file the tests merge their figures into
MIN_REQUESTS = 30  # the lab policy's detection.minRequests: fewer answers are no evidence

# What the lab changes in the examples' StickyPolicy: time scales only.
LAB_POLICY_PATCH: dict[str, Any] = {
    "spec": {
        "prometheus": {"window": "20s"},
        "detection": {"intervalSeconds": 5, "minRequests": MIN_REQUESTS},
        "safety": {"cooldownSeconds": 0},
    }
}

Peer = TypeVar("Peer")


@contextmanager
def peer_controller(tool: str, work: Path, start: Callable[[Supervisor], Peer]) -> Iterator[Peer]:
    """The canary tool `start` runs under its own Supervisor in `work`, stopped at the end; the
    module's wall time beyond the session's lab (the tool's start and every scenario) is
    recorded under `tool`."""
    started = time.time()
    sup = Supervisor(work)
    try:
        yield start(sup)
    finally:
        sup.stop_all()
        record(tool, "module", {"wall_s": round(time.time() - started, 1)})


def load(path: Path) -> list[dict[str, Any]]:
    """The objects of a manifest file, as written."""
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def on_loopback(url: str, port: int) -> str:
    """`url` with its scheme and host replaced by the operator's gate on loopback (the
    examples name the in-cluster Service, which no DNS resolves next to the lab)."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(("http", f"127.0.0.1:{port}", *parts[2:]))


def apply_examples(lab: testenv.LabEnv, ns: str, *manifests: Path | list[dict[str, Any]]) -> None:
    """Applies manifest files or objects into `ns` one after the other, as a user would."""
    for manifest in manifests:
        apply(lab.binaries.kubectl, lab.kubeconfig, manifest, namespace=ns)


def apply_lab_policy(
    lab: testenv.LabEnv, custom: client.CustomObjectsApi, ns: str, path: Path, name: str = "shop"
) -> None:
    """The example StickyPolicy at `path`, applied and then given the lab patch (time scales)."""
    apply_examples(lab, ns, path)
    custom.patch_namespaced_custom_object(GVR[0], GVR[1], ns, GVR[2], name, LAB_POLICY_PATCH)


def rollout_section(custom: client.CustomObjectsApi, ns: str, name: str = "shop") -> dict[str, Any]:
    obj = custom.get_namespaced_custom_object(GVR[0], GVR[1], ns, GVR[2], name)
    return dict((obj.get("status") or {}).get("rollout") or {})


def wait_for_evidence(
    custom: client.CustomObjectsApi,
    ns: str,
    cohorts: tuple[str, ...],
    detail: Callable[[], object],
) -> None:
    """Until stickyguard has counted MIN_REQUESTS answers in one of `cohorts` (oldCohort,
    newCohort): the judge needs the old version's evidence to compare a canary with."""

    def counted() -> bool:
        section = rollout_section(custom, ns)
        return any(section.get(c, {}).get("requests", 0) >= MIN_REQUESTS for c in cohorts)

    what = f"stickyguard counts {MIN_REQUESTS} answers in {' or '.join(cohorts)}"
    wait_for(counted, timeout=60, what=what, detail=detail)


def ready_pods(core: client.CoreV1Api, ns: str, selector: str) -> list[str]:
    """Names of the pods `selector` picks that are Ready and not terminating: those serving."""
    return [
        p.metadata.name
        for p in core.list_namespaced_pod(ns, label_selector=selector).items
        if not p.metadata.deletion_timestamp
        and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
    ]


def release_patch(version: str) -> dict[str, Any]:
    """What a user changes to release `version`: the pod template's image and version label."""
    return {
        "spec": {
            "template": {
                "metadata": {"labels": {"version": version}},
                "spec": {
                    "containers": [{"name": "app", "image": f"registry.example/shop:{version}"}]
                },
            }
        }
    }


def state_and_logs(
    custom: client.CustomObjectsApi, ns: str, tool: str, tool_log: str, operator: OperatorProcess
) -> str:
    """stickyguard's rollout section and both controllers' logs: the tail of a test's detail."""
    return (
        f"stickyguard: {rollout_section(custom, ns)}\n"
        f"{tool} log:\n{tool_log}\noperator log:\n{operator.log()}"
    )


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

    def wait(self, name: str, timeout: float, what: str, detail: Callable[[], object]) -> None:
        """Until `name` has first held."""
        wait_for(lambda: name in self.times, timeout=timeout, what=what, detail=detail)

    def between(self, start: str, end: str) -> float | None:
        if start in self.times and end in self.times:
            return round(self.times[end] - self.times[start], 1)
        return None


@contextmanager
def released(timeline: FirstTimes, release: Callable[[], None]) -> Iterator[FirstTimes]:
    """`timeline` running while a user releases the new version; "released" is marked right
    after `release` returns, so the figures measure from the user's change."""
    with timeline as times:
        release()
        times.mark("released")
        yield times


def fault_to_action_figures(times: FirstTimes, acted: str, action: str) -> dict[str, float | None]:
    """The chain from a bad release to the tool's `action` (first held as `acted`): release to
    a serving canary, its fault to stickyguard's fail, and fail and fault to the action."""
    return {
        "release_to_canary_ready_s": times.between("released", "canary_ready"),
        "fault_to_verdict_s": times.between("canary_ready", "verdict_fail"),
        f"verdict_to_{action}_s": times.between("verdict_fail", acted),
        f"fault_to_{action}_s": times.between("canary_ready", acted),
    }


def scenario_figures(started: float, **figures: Any) -> dict[str, Any]:
    """`figures` and, last, scenario_s: the wall time since `started` (time.time())."""
    return {**figures, "scenario_s": round(time.time() - started, 1)}


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
