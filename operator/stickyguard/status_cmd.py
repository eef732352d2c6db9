"""`stickyguard status` (also `kubectl sticky status`): policies, their classification and the
pods they drained, from the StickyPolicy objects' status."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from stickyguard.statusview import render

GROUP, VERSION, PLURAL = "stickyguard.dev", "v1alpha1", "stickypolicies"


def add_cluster_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--kubeconfig",
        default=os.environ.get("KUBECONFIG"),
        help="kubeconfig file (default: $KUBECONFIG, else ~/.kube/config or in-cluster)",
    )
    p.add_argument("--context", help="kubeconfig context")


def api_client(args: argparse.Namespace) -> Any:
    from kubernetes import client, config

    try:
        return config.new_client_from_config(config_file=args.kubeconfig, context=args.context)
    except config.ConfigException:
        config.load_incluster_config()
        return client.ApiClient()


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("status", help="policies, classification, drained pods", description=__doc__)
    p.add_argument("-n", "--namespace", help="only this namespace (default: all)")
    p.add_argument("-A", "--all-namespaces", action="store_true", help="all namespaces (default)")
    p.add_argument("-o", "--output", choices=["table", "wide", "json"], default="table")
    add_cluster_args(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    custom = client.CustomObjectsApi(api_client(args))
    try:
        if args.namespace and not args.all_namespaces:
            res = custom.list_namespaced_custom_object(GROUP, VERSION, args.namespace, PLURAL)
        else:
            res = custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)
    except ApiException as e:
        print(f"error: listing StickyPolicies: {e.status} {e.reason}", file=sys.stderr)
        return 1
    items = res.get("items") or []
    if args.output == "json":
        print(json.dumps([{"metadata": i["metadata"], "status": i.get("status")} for i in items]))
    else:
        print(render(items, time.time(), wide=args.output == "wide"))
    return 0
