"""`python -m stickyguard_lab testenv up|down|status [--dir DIR]` and
`python -m stickyguard_lab demo [...]`: the developer commands behind `make testenv-up` and
`make demo`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from stickyguard_lab import testenv
from stickyguard_lab.binaries import LabError
from stickyguard_lab.procs import StartupError


def _demo(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="python -m stickyguard_lab demo",
        description="replay an incident on a local cluster: two shops side by side, the same "
        "users and the same fault, one guarded by stickyguard",
    )
    from stickyguard_lab.demo import Demo, DemoSettings
    from stickyguard_lab.demoreport import headline, render_html, table

    default = DemoSettings()
    p.add_argument("--state-dir", type=Path, default=Path(".demo"))
    p.add_argument("--report", type=Path, default=Path("bench/results/demo-report.json"))
    p.add_argument("--duration", type=float, default=default.duration, help="seconds of load")
    p.add_argument("--users", type=int, default=default.users)
    p.add_argument("--seed", type=int, default=default.seed, help="the users' plan of arrivals")
    args = p.parse_args(argv)

    settings = DemoSettings(duration=args.duration, users=args.users, seed=args.seed)
    report = Demo(args.state_dir, settings).run()
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=2) + "\n")
    page = args.report.with_suffix(".html")
    page.write_text(render_html(report))
    print()
    print(table(report))
    print(f"\n{headline(report)}")
    print(f"wrote {args.report} and {page} ({report['elapsed_seconds']:.0f}s)")
    return 0


def main(argv: list[str]) -> int:
    try:
        if argv[:1] == ["testenv"]:
            return testenv.main(argv[1:])
        if argv[:1] == ["demo"]:
            return _demo(argv[1:])
    except LabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except StartupError as e:
        # A component died on start: its own words are in the log tail that follows.
        first, _, tail = str(e).partition("\n")
        print(f"error: {first}", file=sys.stderr)
        print("\n".join(f"  | {line}" for line in tail.splitlines()), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    print(
        "usage: python -m stickyguard_lab testenv up|down|status [--dir DIR]\n"
        "       python -m stickyguard_lab demo [--report FILE] [--duration S] [--users N]"
        " [--seed K]",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
