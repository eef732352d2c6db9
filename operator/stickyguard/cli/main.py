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
    from stickyguard.cli import analyze, doctor, run, simulate, status

    return [analyze.register, run.register, status.register, doctor.register, simulate.register]


def main(argv: Sequence[str] | None = None, prog: str = "stickyguard") -> int:
    parser = build_parser()
    parser.prog = prog
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    from stickyguard.cli import errors

    try:
        errors.check_ports(args)
        if args.command == "run":
            # Fail at start, in one line, when the cluster cannot be reached: the operator
            # itself would retry forever, logging tracebacks of a cluster it never saw.
            errors.check_reachable(errors.cluster_client(args.kubeconfig))
        return handler(args)
    except KeyboardInterrupt:
        return 130
    except Exception as e:
        message = errors.describe(e)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return errors.exit_code(e)


def kubectl_plugin() -> int:
    """`kubectl sticky ...`: kubectl runs the `kubectl-sticky` executable on PATH."""
    return main(prog="kubectl sticky")


if __name__ == "__main__":
    sys.exit(main())
