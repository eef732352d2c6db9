"""`stickyguard simulate`: replay a scenario under each strategy and compare the damage."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

import yaml

from stickyguard.core.policy import PolicyError
from stickyguard.sim.engine import STRATEGIES, _stickyguard_policy, simulate
from stickyguard.sim.scenario import ScenarioError, builtin_names, load

COLUMNS = (
    ("users_affected_pct", "USERS AFFECTED %"),
    ("requests_bad_pct", "REQUESTS BAD %"),
    ("detection_seconds", "DETECTION S"),
    ("healthy_pods_drained", "HEALTHY DRAINED"),
    ("pods_drained", "PODS DRAINED"),
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "simulate", help="compare strategies on simulated sticky traffic", description=__doc__
    )
    p.add_argument(
        "--scenario", required=True, help=f"built-in ({', '.join(builtin_names())}) or a YAML file"
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--users", type=int, help="override the scenario's number of users")
    p.add_argument(
        "--strategy",
        action="append",
        choices=STRATEGIES,
        help="run only these strategies (repeatable; default: all)",
    )
    p.add_argument("-o", "--output", choices=["table", "json"], default="table")
    p.set_defaults(handler=run)


def table(results: dict[str, dict[str, object]]) -> str:
    header = ("STRATEGY", *(c[1] for c in COLUMNS))
    rows = [
        (name, *("-" if r[k] is None else str(r[k]) for k, _ in COLUMNS))
        for name, r in results.items()
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    )


def run(args: argparse.Namespace) -> int:
    try:
        sc = load(args.scenario)
        if "stickyguard" in (args.strategy or STRATEGIES):
            # Its policy is checked before minutes of simulation, not after the first strategy.
            _stickyguard_policy(sc)
    except (ScenarioError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except yaml.YAMLError as e:
        print(
            f"error: {args.scenario}: not valid YAML: {' '.join(str(e).split())}", file=sys.stderr
        )
        return 2
    except PolicyError as e:
        print(f"error: {args.scenario}: policy: {e}", file=sys.stderr)
        return 2
    if args.users:
        sc = dataclasses.replace(sc, users=args.users)
    t0 = time.monotonic()
    results = simulate(
        sc,
        args.seed,
        tuple(args.strategy or STRATEGIES),
        progress=lambda s: print(f"simulating {sc.name} / {s} ...", file=sys.stderr),
    )
    out = {name: r.as_dict() for name, r in results.items()}
    if args.output == "json":
        print(json.dumps(out, indent=2))
    else:
        print(
            f"{sc.name} (seed {args.seed}, {sc.users} users, {sc.duration:.0f}s simulated, "
            f"{time.monotonic() - t0:.1f}s)"
        )
        print(table(out))
    return 0
