"""`stickyguard demo`: the incident replay on a local cluster (see stickyguard.lab.demo)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "demo", help="replay an incident twice on a local cluster, operator off then on"
    )
    p.add_argument("--state-dir", type=Path, default=Path(".demo"))
    p.add_argument("--report", type=Path, default=Path("demo-report.json"))
    p.add_argument("--duration", type=float, default=200.0, help="seconds of load per run")
    p.add_argument("--users", type=int, default=300)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from stickyguard.lab.demo import Demo, DemoSettings, table

    report = Demo(args.state_dir, DemoSettings(duration=args.duration, users=args.users)).run()
    args.report.write_text(json.dumps(report, indent=2) + "\n")
    print()
    print(table(report))
    print(f"\nwrote {args.report} ({report['elapsed_seconds']:.0f}s)")
    return 0
