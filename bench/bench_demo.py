"""`make demo` over several plans of arrivals: the demo is random (which users land on the bad
pod while it is being found), so one run is one draw. Runs the demo once per seed, keeps each
report, and writes the distribution (median, worst) to bench/results/demo-seeds.md:

    python bench/bench_demo.py --seeds 1 2 3 4          # about 11 minutes per seed, as root
    python bench/bench_demo.py --summarize-only --seeds 1 2 3 4   # from the kept reports

The ratio of users hurt with and without stickyguard is given at the end of the load and at
200 s and 400 s into it (from each report's timeline): a drained fault stops hurting users, a
sticky one does not, so the ratio shrinks with the incident's length.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
REPORTS = RESULTS / "demo-seeds"
OUT = RESULTS / "demo-seeds.md"
HORIZONS = (200.0, 400.0)


def hurt_at(run: dict[str, Any], t: float) -> float | None:
    """% of users hurt by `t` seconds into the load (the timeline's last point at or before)."""
    points = [pct for at, pct in run["users_hurt_timeline"] if at <= t + 1e-9]
    return points[-1] if points else None


def ratio(unmitigated: float | None, mitigated: float | None) -> float | None:
    """How many times fewer users were hurt with stickyguard (None when either is unknown)."""
    if unmitigated is None or mitigated is None or mitigated <= 0:
        return None
    return unmitigated / mitigated


def row(seed: int, report: dict[str, Any]) -> dict[str, Any]:
    off, on = report["unmitigated"], report["mitigated"]
    out: dict[str, Any] = {
        "seed": seed,
        "unmitigated_pct": off["users_affected_pct"],
        "mitigated_pct": on["users_affected_pct"],
        "ratio": ratio(off["users_affected_pct"], on["users_affected_pct"]),
        "detection_seconds": on["detection_seconds"],
        "healthy_pods_drained": on["healthy_pods_drained"],
    }
    for h in HORIZONS:
        out[f"ratio_at_{h:.0f}s"] = ratio(hurt_at(off, h), hurt_at(on, h))
    return out


def fmt(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def summary(rows: list[dict[str, Any]]) -> str:
    keys = ["ratio", *(f"ratio_at_{h:.0f}s" for h in HORIZONS)]
    lines = [
        "# `make demo` over several seeds",
        "",
        "Written by `bench/bench_demo.py` from the reports in `bench/results/demo-seeds/`. Each "
        "seed is one run of `make demo` (two shops side by side, 600 s of load, a 5% quality bug "
        "on one pod of six at t = 10 s). The ratio is the share of users hurt without "
        "stickyguard over the share with it (1/ratio of unmitigated): higher is better.",
        "",
        "| seed | users hurt without | with | ratio | at 200 s | at 400 s | detection s | "
        "healthy drained |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['seed']} | {r['unmitigated_pct']:.2f}% | {r['mitigated_pct']:.2f}% | "
            f"{fmt(r['ratio'])} | {fmt(r['ratio_at_200s'])} | {fmt(r['ratio_at_400s'])} | "
            f"{fmt(r['detection_seconds'])} | {r['healthy_pods_drained']} |"
        )
    lines += ["", "| | median | worst |", "|---|---|---|"]
    for key in [*keys, "detection_seconds"]:
        values = [r[key] for r in rows if r[key] is not None]
        if not values:
            continue
        worst = max(values) if key == "detection_seconds" else min(values)
        lines.append(f"| {key} | {fmt(statistics.median(values))} | {fmt(worst)} |")
    healthy = sum(r["healthy_pods_drained"] for r in rows)
    lines += ["", f"Healthy pods drained over the {len(rows)} runs: {healthy}.", ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4])
    parser.add_argument("--summarize-only", action="store_true")
    args = parser.parse_args()
    REPORTS.mkdir(parents=True, exist_ok=True)
    rows = []
    for seed in args.seeds:
        path = REPORTS / f"seed{seed}.json"
        if not args.summarize_only:
            cmd = [sys.executable, "-m", "stickyguard_lab", "demo", "--seed", str(seed)]
            subprocess.run([*cmd, "--report", str(path)], check=True)
        rows.append(row(seed, json.loads(path.read_text())))
    text = summary(rows)
    OUT.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
