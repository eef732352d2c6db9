"""Writes the Grafana dashboard (manifests/components/monitoring/dashboards/stickyguard.json)
from the panel list below: edit here, run `python hack/gen_dashboard.py`, commit both."""

from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "manifests/components/monitoring/dashboards"
SEL = 'namespace=~"$namespace", policy=~"$policy"'

# (title, unit, [(expr, legend)], kind, width)
PANELS = [
    (
        "Sessions affected",
        "percentunit",
        [(f"stickyguard_affected_session_ratio{{{SEL}}}", "{{namespace}}/{{policy}}")],
        "timeseries",
        8,
    ),
    (
        "Requests bad (fleet)",
        "percentunit",
        [(f"stickyguard_bad_request_ratio{{{SEL}}}", "{{namespace}}/{{policy}}")],
        "timeseries",
        8,
    ),
    (
        "Amplification (sessions / requests)",
        "x",
        [(f"stickyguard_amplification_ratio{{{SEL}}}", "{{namespace}}/{{policy}}")],
        "timeseries",
        8,
    ),
    (
        "Pods drained",
        "short",
        [(f"stickyguard_drained_pods{{{SEL}}}", "{{namespace}}/{{policy}}")],
        "timeseries",
        8,
    ),
    (
        "Pods by finding",
        "short",
        [(f"sum by (status) (stickyguard_pods{{{SEL}}})", "{{status}}")],
        "timeseries",
        8,
    ),
    (
        "Classification",
        "short",
        [
            (
                f"stickyguard_policy_classification{{{SEL}}} == 1",
                "{{namespace}}/{{policy}}: {{classification}}",
            )
        ],
        "timeseries",
        8,
    ),
    (
        "Actions per hour",
        "short",
        [(f"sum by (action) (increase(stickyguard_actions_total{{{SEL}}}[1h]))", "{{action}}")],
        "timeseries",
        8,
    ),
    (
        "Blocked by budget (per 10m)",
        "short",
        [
            (
                f"sum by (reason) (increase(stickyguard_actions_blocked_total{{{SEL}}}[10m]))",
                "{{reason}}",
            )
        ],
        "timeseries",
        8,
    ),
    (
        "Prometheus query errors (per 10m)",
        "short",
        [
            (
                "sum by (signal) "
                f"(increase(stickyguard_prometheus_query_errors_total{{{SEL}}}[10m]))",
                "{{signal}}",
            )
        ],
        "timeseries",
        8,
    ),
    (
        "Evaluation duration p95",
        "s",
        [
            (
                "histogram_quantile(0.95, sum by (le, policy) "
                f"(rate(stickyguard_evaluation_duration_seconds_bucket{{{SEL}}}[5m])))",
                "{{policy}}",
            )
        ],
        "timeseries",
        8,
    ),
    (
        "Metrics available",
        "short",
        [(f"stickyguard_metrics_available{{{SEL}}}", "{{namespace}}/{{policy}}")],
        "timeseries",
        8,
    ),
    (
        "Seconds since last evaluation",
        "s",
        [
            (
                f"time() - stickyguard_last_evaluation_timestamp_seconds{{{SEL}}}",
                "{{namespace}}/{{policy}}",
            )
        ],
        "timeseries",
        8,
    ),
]


def panel(
    i: int, title: str, unit: str, targets: list[tuple[str, str]], kind: str, width: int
) -> dict[str, object]:
    return {
        "id": i + 1,
        "type": kind,
        "title": title,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"h": 8, "w": width, "x": (i * width) % 24, "y": (i * width) // 24 * 8},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [
            {"refId": chr(65 + j), "expr": expr, "legendFormat": legend}
            for j, (expr, legend) in enumerate(targets)
        ],
    }


def variable(name: str, query: str) -> dict[str, object]:
    return {
        "name": name,
        "type": "query",
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "query": query,
        "includeAll": True,
        "multi": True,
        "current": {"text": "All", "value": "$__all"},
        "refresh": 2,
    }


def dashboard() -> dict[str, object]:
    return {
        "uid": "stickyguard",
        "title": "stickyguard",
        "tags": ["stickyguard", "kubernetes"],
        "schemaVersion": 39,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "templating": {
            "list": [
                {"name": "datasource", "type": "datasource", "query": "prometheus"},
                variable("namespace", "label_values(stickyguard_evaluations_total, namespace)"),
                variable(
                    "policy",
                    'label_values(stickyguard_evaluations_total{namespace=~"$namespace"}, policy)',
                ),
            ]
        },
        "panels": [panel(i, *p) for i, p in enumerate(PANELS)],
    }


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "stickyguard.json").write_text(json.dumps(dashboard(), indent=2) + "\n")
