"""`stickyguard status` (also `kubectl sticky status`): policies, their classification and the
pods they drained, from the StickyPolicy objects' status."""

from __future__ import annotations

import argparse
import json
import sys
import time

from stickyguard.cli.options import add_cluster_args, api_client
from stickyguard.core.names import GROUP, PLURAL, VERSION
from stickyguard.core.status_table import render


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
