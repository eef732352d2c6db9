"""The `stickyguard` command line: argument parsing and dispatch to the subcommands' modules."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from stickyguard import __version__

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stickyguard",
        description="Keeps sticky sessions from concentrating failures on unlucky users.",
    )
    parser.add_argument("--version", action="version", version=f"stickyguard {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for register in _subcommands():
        register(sub)
    return parser


def _subcommands() -> list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]]:
    from stickyguard import analyze_cmd, demo_cmd, doctor_cmd, run_cmd, simulate_cmd, status_cmd

    return [
        analyze_cmd.register,
        run_cmd.register,
        status_cmd.register,
        doctor_cmd.register,
        simulate_cmd.register,
        demo_cmd.register,
    ]


def main(argv: Sequence[str] | None = None, prog: str = "stickyguard") -> int:
    parser = build_parser()
    parser.prog = prog
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    return handler(args)


def kubectl_plugin() -> int:
    """`kubectl sticky ...`: kubectl runs the `kubectl-sticky` executable on PATH."""
    return main(prog="kubectl sticky")


if __name__ == "__main__":
    sys.exit(main())
