"""Options every subcommand spells the same way: where the cluster is and where Prometheus is,
and the Kubernetes client they lead to."""

from __future__ import annotations

import argparse
import os
from typing import Any


def add_cluster_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--kubeconfig",
        default=os.environ.get("KUBECONFIG"),
        help="kubeconfig file (default: $KUBECONFIG, else ~/.kube/config or in-cluster)",
    )
    p.add_argument("--context", help="kubeconfig context")


def add_prometheus_arg(p: argparse.ArgumentParser, help_text: str) -> None:
    # `--prometheus` is the spelling `analyze` has always had (DESIGN.md); both work everywhere.
    p.add_argument(
        "--prometheus-url",
        "--prometheus",
        dest="prometheus_url",
        default=os.environ.get("STICKYGUARD_PROMETHEUS_URL"),
        help=f"{help_text} (default: $STICKYGUARD_PROMETHEUS_URL)",
    )


def api_client(args: argparse.Namespace) -> Any:
    # A bad kubeconfig is one line with the fix (cli.errors), never a traceback.
    from stickyguard.cli.errors import cluster_client

    return cluster_client(args.kubeconfig, getattr(args, "context", None))
