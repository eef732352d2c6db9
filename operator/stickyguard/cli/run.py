"""`stickyguard run`: the operator process (kopf), with Lease-based leader election.

The Lease lives in `--lease-namespace`; by default the operator's own namespace: $POD_NAMESPACE,
else (in a cluster) the ServiceAccount's namespace file, else (out of cluster) the kubeconfig
context's namespace, else `default`, as kubectl would. If that namespace does not exist, or the
operator may not use Leases there, `run` exits at once (status 2) naming it and the flag,
instead of idling without ever leading."""

from __future__ import annotations

import argparse
import logging
import os
import sys

import kopf

from stickyguard.cli.options import add_prometheus_arg


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("run", help="run the operator", description=__doc__)
    p.add_argument(
        "--kubeconfig",
        default=os.environ.get("KUBECONFIG"),
        help="kubeconfig file (default: $KUBECONFIG, else in-cluster)",
    )
    add_prometheus_arg(p, "default Prometheus URL for policies without spec.prometheus.url")
    p.add_argument(
        "--namespace",
        action="append",
        default=[],
        help="watch only this namespace (repeatable; default: all)",
    )
    p.add_argument(
        "--lease-namespace",
        default=os.environ.get("POD_NAMESPACE"),
        help="namespace of the leader-election Lease (default: $POD_NAMESPACE, else the "
        "in-cluster ServiceAccount namespace, else the kubeconfig context's namespace, "
        "else default)",
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


SA_NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def lease_namespace(flag: str | None, kubeconfig: str | None) -> str:
    """Where the Lease lives when the flag is not given (see the module docstring)."""
    if flag:
        return flag
    if not kubeconfig:
        try:
            with open(SA_NAMESPACE_FILE) as f:
                if ns := f.read().strip():
                    return ns
        except OSError:
            pass
        return "default"
    from kubernetes import config

    try:
        _contexts, current = config.list_kube_config_contexts(config_file=kubeconfig)
    except (config.ConfigException, OSError):
        return "default"
    return str(((current or {}).get("context") or {}).get("namespace") or "default")


def run(args: argparse.Namespace) -> int:
    from stickyguard.adapters.lease import LeaseElector, LeaseSetupError
    from stickyguard.controller import (
        handlers,  # registers the kopf handlers
        telemetry,
        webhook,
    )
    from stickyguard.controller import state as controller

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
        webhook.enable_webhook(
            controller.WebhookConfig(
                args.webhook_port, args.webhook_cert, args.webhook_key, args.webhook_host
            )
        )
    if args.metrics_port:
        telemetry.serve(args.metrics_port)
    namespace = lease_namespace(args.lease_namespace, args.kubeconfig)
    elector = LeaseElector(
        state.api,
        namespace,
        args.lease_name,
        identity=args.identity,
        on_change=lambda leading: telemetry.LEADER.set(1.0 if leading else 0.0),
    )
    try:
        elector.check_setup()
    except LeaseSetupError as e:
        print(
            f"error: {e}; create it, or choose the namespace of the leader-election Lease "
            f"with --lease-namespace (or $POD_NAMESPACE)",
            file=sys.stderr,
        )
        return 2
    state.leader = elector
    elector.start()
    if args.gate_port:
        from stickyguard.controller.gate import GateServer

        GateServer(state.published, args.gate_port, lookup=handlers.read_published).start()
    try:
        kopf.run(
            standalone=True,
            clusterwide=not args.namespace,
            namespaces=list(args.namespace),
            liveness_endpoint=(
                f"http://0.0.0.0:{args.liveness_port}/healthz" if args.liveness_port else None
            ),
        )
    finally:
        # Stop acting, then hand the lease over so a standby need not wait for it to expire.
        elector.stop()
        elector.release()
    return 0
