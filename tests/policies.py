"""Policy fixtures shared by unit and integration tests: the samples and the invalid table."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from stickyguard.core.names import API_VERSION

REPO = Path(__file__).resolve().parents[1]
CRD = REPO / "crds" / "stickypolicy.yaml"
SAMPLES = sorted((REPO / "crds" / "examples").glob("*.yaml"))


def load_sample(path: Path, namespace: str = "default") -> dict[str, Any]:
    obj: dict[str, Any] = yaml.safe_load(path.read_text())
    obj["metadata"]["namespace"] = namespace
    return obj


def minimal(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": "StickyPolicy",
        "metadata": {"name": "p", "namespace": "default"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}},
    }
    base["spec"].update(copy.deepcopy(spec))
    return base


# (id, spec overrides, text the apiserver's rejection must contain — it names the field)
INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("empty-selector", {"selector": {}}, "spec.selector"),
    ("threshold-zero", {"detection": {"absoluteThreshold": 0}}, "spec.detection.absoluteThreshold"),
    (
        "threshold-above-one",
        {"detection": {"absoluteThreshold": 1.5}},
        "spec.detection.absoluteThreshold",
    ),
    ("confidence-one", {"detection": {"confidence": 1}}, "spec.detection.confidence"),
    (
        "relative-below-one",
        {"detection": {"relativeThreshold": 0.5}},
        "spec.detection.relativeThreshold",
    ),
    ("max-drained-zero", {"safety": {"maxDrainedPercent": 0}}, "spec.safety.maxDrainedPercent"),
    (
        "max-drained-over-100",
        {"safety": {"maxDrainedPercent": 101}},
        "spec.safety.maxDrainedPercent",
    ),
    ("min-ready-zero", {"safety": {"minReadyPods": 0}}, "spec.safety.minReadyPods"),
    ("window-not-duration", {"prometheus": {"window": "2 minutes"}}, "spec.prometheus.window"),
    ("window-injection", {"prometheus": {"window": "2m])or vector(1"}}, "spec.prometheus.window"),
    ("custom-without-queries", {"prometheus": {"preset": "custom"}}, "spec.prometheus.queries"),
    (
        "rollout-acted-on-by-stickyguard",
        {
            "workloadRef": {"kind": "Rollout", "name": "shop"},
            "actions": {"rollout": {"onCanaryDegraded": "Pause"}},
        },
        "spec.actions.rollout.onCanaryDegraded",
    ),
    (
        "rollout-with-hold",
        {
            "workloadRef": {"kind": "Rollout", "name": "shop"},
            "actions": {"rollout": {"onCanaryDegraded": "None", "holdSeconds": 60}},
        },
        "spec.actions.rollout.holdSeconds",
    ),
    (
        "workload-kind-unknown",
        {"workloadRef": {"kind": "StatefulSet", "name": "x"}},
        "spec.workloadRef.kind",
    ),
    (
        "total-without-bad",
        {"prometheus": {"queries": {"total": "sum by (pod) (x)"}}},
        "spec.prometheus.queries",
    ),
    ("unknown-preset", {"prometheus": {"preset": "nginx"}}, "spec.prometheus.preset"),
    (
        "bad-pod-label",
        {"prometheus": {"podLabel": "pod}) or vector(1"}},
        "spec.prometheus.podLabel",
    ),
    (
        "bad-series-key",
        {"prometheus": {"seriesSelector": {'app=~".*"': "x"}}},
        "spec.prometheus.seriesSelector",
    ),
    (
        "evict-without-timeout",
        {"actions": {"drain": {"evict": True, "drainTimeoutSeconds": 0}}},
        "spec.actions.drain.drainTimeoutSeconds",
    ),
    ("unknown-mode", {"actions": {"mode": "Auto"}}, "spec.actions.mode"),
    (
        "unknown-drain-method",
        {"actions": {"drain": {"method": "Delete"}}},
        "spec.actions.drain.method",
    ),
    ("header-without-name", {"affinity": {"mode": "Header"}}, "spec.affinity.headerName"),
    ("interval-too-short", {"detection": {"intervalSeconds": 1}}, "spec.detection.intervalSeconds"),
    (
        "hold-without-workload",
        {"actions": {"rollout": {"holdSeconds": 60}}},
        "spec.actions.rollout.holdSeconds",
    ),
    ("url-not-http", {"prometheus": {"url": "file:///etc/passwd"}}, "spec.prometheus.url"),
    (
        "in-without-values",
        {"selector": {"matchExpressions": [{"key": "app", "operator": "In"}]}},
        "spec.selector.matchExpressions[0]",
    ),
    ("wrong-type", {"detection": {"minRequests": "fifty"}}, "spec.detection.minRequests"),
]
