"""Benchmark table: every built-in scenario x strategy over many seeds, as distributions.

Writes bench/results/simulation.md (committed with the numbers it produced):
    python bench/bench_simulate.py [--seeds 20] [--only SCENARIO ...] [--out FILE]
Each cell is median / p90 / worst over the seeds (worst: the highest users affected and
detection time, the most healthy pods drained); detection counts only the runs that detected.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from stickyguard.sim.engine import STRATEGIES, Result, run, traffic
from stickyguard.sim.scenario import builtin_names, load

OUT = Path(__file__).resolve().parent / "results" / "simulation.md"


def p90(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(0.9 * (len(xs) - 1)))]


def dist(xs: list[float], digits: int = 2) -> str:
    if not xs:
        return "-"
    return (
        f"{round(statistics.median(xs), digits)} / {round(p90(xs), digits)} / "
        f"{round(max(xs), digits)}"
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--only", nargs="*", help="scenario names")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    seeds = range(1, args.seeds + 1)
    command = f"python bench/bench_simulate.py --seeds {args.seeds}"
    if args.only:
        command += " --only " + " ".join(args.only)
    if args.out != OUT:
        command += f" --out {args.out}"
    lines = [
        "# Simulation benchmark",
        "",
        f"Produced by `{command}`: the same sticky "
        "traffic is replayed under each strategy (see `operator/stickyguard/sim/`), for seeds "
        f"1-{args.seeds}. Cells are **median / p90 / worst** over the seeds. `users affected %` "
        "counts users with an answer the scenario's faults spoiled; detection is from fault "
        "onset to the first drain or ejection of a faulty pod (runs that detected; `missed` "
        "counts the others).",
        "",
        "| scenario | strategy | users affected % | detection s | missed | healthy pods drained "
        "| users affected vs none (median) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    timings: dict[str, float] = {}
    for name in args.only or builtin_names():
        sc = load(name)
        t0 = time.monotonic()
        results: dict[str, list[Result]] = {s: [] for s in STRATEGIES}
        for seed in seeds:
            requests = traffic(sc, seed)
            for strategy in STRATEGIES:
                results[strategy].append(run(sc, strategy, requests))
        timings[name] = time.monotonic() - t0
        none_median = statistics.median(r.users_affected_pct for r in results["none"])
        for strategy in STRATEGIES:
            rs = results[strategy]
            users = [r.users_affected_pct for r in rs]
            det = [r.detection_seconds for r in rs if r.detection_seconds is not None]
            missed = sum(1 for r in rs if r.detection_seconds is None) if sc.faults else 0
            med = statistics.median(users)
            ratio = f"1/{none_median / med:.0f}" if med > 0 and strategy != "none" else "-"
            lines.append(
                f"| {name} | {strategy} | {dist(users)} | {dist(det, 0)} | "
                f"{missed if sc.faults else '-'} | "
                f"{dist([float(r.healthy_pods_drained) for r in rs], 0)} | {ratio} |"
            )
        print(f"{name}: {timings[name]:.0f}s", file=sys.stderr, flush=True)
    lines += ["", "## Run time (all strategies, all seeds, this machine)", ""]
    lines += ["| scenario | seconds |", "| --- | ---: |"]
    lines += [f"| {k} | {v:.0f} |" for k, v in timings.items()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
