"""`stickyguard run`: the operator process (kopf), with Lease-based leader election."""

from __future__ import annotations

import argparse
import logging
import os
import sys

import kopf


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("run", help="run the operator", description=__doc__)
    p.add_argument(
        "--kubeconfig",
        default=os.environ.get("KUBECONFIG"),
        help="kubeconfig file (default: $KUBECONFIG, else in-cluster)",
    )
    p.add_argument(
        "--prometheus-url",
        default=os.environ.get("STICKYGUARD_PROMETHEUS_URL"),
        help="default Prometheus URL for policies without spec.prometheus.url",
    )
    p.add_argument(
        "--namespace",
        action="append",
        default=[],
        help="watch only this namespace (repeatable; default: all)",
    )
    p.add_argument(
        "--lease-namespace", default=os.environ.get("POD_NAMESPACE", "stickyguard-system")
    )
    p.add_argument("--lease-name", default="stickyguard-leader")
    p.add_argument(
        "--identity",
        default=os.environ.get("POD_NAME"),
        help="leader-election identity (default: host name + random suffix)",
    )
    p.add_argument(
        "--liveness-port", type=int, default=0, help="serve kopf's /healthz on this port (0: off)"
    )
    p.add_argument(
        "--webhook-port",
        type=int,
        default=0,
        help="serve the readiness-gate mutating webhook (TLS) on this port (0: off)",
    )
    p.add_argument("--webhook-cert", help="TLS certificate file of the webhook")
    p.add_argument("--webhook-key", help="TLS private key file of the webhook")
    p.add_argument(
        "--webhook-host",
        default="127.0.0.1",
        help="host name the apiserver uses to reach the webhook",
    )
    p.add_argument(
        "--gate-port",
        type=int,
        default=0,
        help="serve the Flagger / Argo Rollouts gate on this port (0: off)",
    )
    p.add_argument(
        "--metrics-port",
        type=int,
        default=0,
        help="serve the operator's Prometheus metrics on /metrics on this port (0: off)",
    )
    p.add_argument("--verbose", action="store_true")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from stickyguard import controller
    from stickyguard.leader import LeaseElector

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.webhook_port and not (args.webhook_cert and args.webhook_key):
        print(
            "error: --webhook-port needs --webhook-cert and --webhook-key (the webhook "
            "only serves TLS)",
            file=sys.stderr,
        )
        return 2
    state = controller.configure(args.kubeconfig, args.prometheus_url)
    if args.webhook_port:
        controller.enable_webhook(
            controller.WebhookConfig(
                args.webhook_port, args.webhook_cert, args.webhook_key, args.webhook_host
            )
        )
    if args.metrics_port:
        from stickyguard import telemetry

        telemetry.serve(args.metrics_port)
    elector = LeaseElector(state.api, args.lease_namespace, args.lease_name, identity=args.identity)
    state.leader = elector
    elector.start()
    if args.gate_port:
        from stickyguard.gate import GateServer

        GateServer(state.verdicts, args.gate_port).start()
    kopf.run(
        standalone=True,
        clusterwide=not args.namespace,
        namespaces=list(args.namespace),
        liveness_endpoint=(
            f"http://0.0.0.0:{args.liveness_port}/healthz" if args.liveness_port else None
        ),
    )
    return 0
