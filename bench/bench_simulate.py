"""Benchmark table: every built-in scenario x strategy, plus the false-positive check.

Writes bench/results/simulation.md (committed with the numbers it produced):
    python bench/bench_simulate.py [--seed 1] [--fp-seeds 20]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from stickyguard.sim.engine import STRATEGIES, run, simulate, traffic
from stickyguard.sim.scenario import builtin_names, load

OUT = Path(__file__).resolve().parent / "results" / "simulation.md"


def fmt(x: object) -> str:
    return "-" if x is None else str(x)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--fp-seeds", type=int, default=20)
    args = parser.parse_args()
    lines = [
        "# Simulation benchmark",
        "",
        f"Produced by `python bench/bench_simulate.py --seed {args.seed} --fp-seeds "
        f"{args.fp_seeds}`; the same sticky traffic is replayed under each strategy "
        "(see `operator/stickyguard/sim/`). `users affected %` and `requests bad %` count the "
        "answers the scenario's faults spoiled; detection is from fault onset to the first "
        "drain or ejection of a faulty pod.",
        "",
        "| scenario | strategy | users affected % | requests bad % | detection s | "
        "healthy pods drained | pods drained |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    timings = {}
    for name in builtin_names():
        sc = load(name)
        t0 = time.monotonic()
        results = simulate(sc, args.seed)
        timings[name] = time.monotonic() - t0
        for strategy in STRATEGIES:
            d = results[strategy].as_dict()
            lines.append(
                f"| {name} | {strategy} | {d['users_affected_pct']} | "
                f"{d['requests_bad_pct']} | {fmt(d['detection_seconds'])} | "
                f"{d['healthy_pods_drained']} | {d['pods_drained']} |"
            )
        print(f"{name}: {timings[name]:.1f}s", file=sys.stderr, flush=True)
    lines += [
        "",
        f"## False positives over {args.fp_seeds} seeds (stickyguard)",
        "",
        "| scenario | seeds | runs with any pod drained | pods drained in all |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name in ("noise-only", "fleet-wide"):
        sc = load(name)
        drained = [
            run(sc, "stickyguard", traffic(sc, s)).pods_drained for s in range(1, args.fp_seeds + 1)
        ]
        lines.append(
            f"| {name} | {args.fp_seeds} | {sum(1 for d in drained if d)} | {sum(drained)} |"
        )
        print(f"{name} false positives: {sum(drained)}", file=sys.stderr, flush=True)
    lines += [
        "",
        "## Run time (all three strategies, this machine)",
        "",
        "| scenario | seconds |",
        "| --- | ---: |",
    ]
    lines += [f"| {k} | {v:.1f} |" for k, v in timings.items()]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(lines) + "\n")
    print(f"wrote {OUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
