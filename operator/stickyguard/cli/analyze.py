"""`stickyguard analyze`: a one-shot incident report from Prometheus (and the cluster, if a
kubeconfig is given), using the same analysis the operator runs."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from typing import Any

from prometheus_api_client import PrometheusApiClientException
from requests import RequestException

from stickyguard.adapters.prometheus import PrometheusReader, QueryError
from stickyguard.cli.options import add_prometheus_arg
from stickyguard.core.analysis import analyze, single_shot
from stickyguard.core.analyze_report import to_json, to_table
from stickyguard.core.policy import PRESETS, PolicyError, parse_policy

EXIT_PROMETHEUS, EXIT_NO_DATA, EXIT_BAD_INPUT = 3, 4, 2


def parse_time(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"--time {text!r}: use RFC3339 or unix seconds") from e


def parse_selector(text: str) -> dict[str, str]:
    out = {}
    for part in filter(None, text.split(",")):
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"--selector {text!r}: use K=V[,K=V]")
        out[key.strip()] = value.strip()
    return out


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("analyze", help="one-shot incident report", description=__doc__)
    add_prometheus_arg(p, "Prometheus URL")
    p.add_argument("-n", "--namespace", required=True)
    p.add_argument("--selector", required=True, type=parse_selector, help="pod labels, K=V[,K=V]")
    p.add_argument(
        "--kubeconfig",
        help="read pod metadata from the cluster (else from kube-state-metrics series, if present)",
    )
    p.add_argument("--context", help="kubeconfig context")
    p.add_argument(
        "--time", type=parse_time, help="evaluation time, RFC3339 or unix seconds (default: now)"
    )
    p.add_argument("--preset", default="generic", choices=[x for x in PRESETS if x != "custom"])
    p.add_argument("--window", default="2m")
    p.add_argument("--pod-label", help="series label holding the pod (default: the preset's)")
    p.add_argument(
        "--series-selector",
        type=parse_selector,
        help="series labels K=V[,K=V] (default: derived from --selector)",
    )
    p.add_argument("-o", "--output", choices=["table", "json"], default="table")
    p.set_defaults(handler=run)


def build_policy(args: argparse.Namespace) -> Any:
    prom: dict[str, Any] = {"preset": args.preset, "window": args.window}
    if args.pod_label:
        prom["podLabel"] = args.pod_label
    if args.series_selector:
        prom["seriesSelector"] = args.series_selector
    return parse_policy(
        {
            "metadata": {"name": "analyze", "namespace": args.namespace},
            "spec": {"selector": {"matchLabels": args.selector}, "prometheus": prom},
        }
    )


def run(args: argparse.Namespace) -> int:
    if not args.prometheus_url:
        print(
            "error: --prometheus-url (or $STICKYGUARD_PROMETHEUS_URL) is required", file=sys.stderr
        )
        return EXIT_BAD_INPUT
    try:
        policy = build_policy(args)
    except PolicyError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    reader = PrometheusReader(args.prometheus_url, policy.prometheus.timeout_seconds)
    meta: dict[str, Any] = {}
    pods = None
    if args.kubeconfig:
        from kubernetes import client

        from stickyguard.adapters.kube_reads import read_pod_meta
        from stickyguard.cli.options import api_client

        core = client.CoreV1Api(api_client(args))
        meta = read_pod_meta(core, policy)
        pods = list(meta)
    snap = reader.snapshot(policy, args.time, pods)
    fatal = [p for p in snap.problems if p.signal in ("total", "bad")]
    if fatal:
        print("error: " + "; ".join(str(p) for p in fatal), file=sys.stderr)
        failed = any(p.kind.prometheus_failed for p in fatal)
        return EXIT_PROMETHEUS if failed else EXIT_NO_DATA
    if not args.kubeconfig:
        try:
            meta = reader.pod_meta_from_kube_state_metrics(policy, snap.time)
        except (QueryError, PrometheusApiClientException, RequestException, ValueError) as e:
            # Metadata only adds attribution; the report is still right without it.
            print(f"warning: no pod metadata from kube-state-metrics: {e}", file=sys.stderr)
    findings = analyze(
        snap.samples,
        meta,
        single_shot(policy.detection),
        policy.impact,
        sessions_expected=policy.prometheus.session_gauges,
    )
    for problem in snap.problems:
        print(f"warning: {problem}", file=sys.stderr)
    if args.output == "json":
        print(json.dumps(to_json(findings, snap), indent=2))
    else:
        print(to_table(findings))
    return 0
