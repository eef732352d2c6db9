"""`make demo` over several plans of arrivals: the demo is random (which users land on the bad
pod while it is being found), so one run is one draw. Runs the demo once per seed, keeps each
report, and writes the distribution (median, worst) to bench/results/demo-seeds.md:

    python bench/bench_demo.py --seeds 1 2 3 4 5        # about 11 minutes per seed, as root
    python bench/bench_demo.py --summarize-only --seeds 1 2 3 4 5   # from the kept reports
    python bench/bench_demo.py --users 900 --seeds 1 2 3 4 5   # another load, kept apart

Detection rests on the bad pod's bad answers, so it is faster the more traffic the pod serves:
runs at another number of users than the demo's default go to their own directory and summary
(`demo-seeds-<N>users/`, `demo-seeds-<N>users.md`) and never mix with the default's.

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

from stickyguard_lab.demo import REPLICAS, DemoSettings

RESULTS = Path(__file__).resolve().parent / "results"
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


def places(users: int, default_users: int) -> tuple[Path, Path]:
    """(reports directory, summary file) of a number of users: the default's are the plain
    names, any other load's carry its number."""
    if users == default_users:
        return RESULTS / "demo-seeds", RESULTS / "demo-seeds.md"
    return RESULTS / f"demo-seeds-{users}users", RESULTS / f"demo-seeds-{users}users.md"


def describe(settings: dict[str, Any], reports: Path) -> str:
    """The runs' conditions, from the settings each report records."""
    users, duration = settings["users"], settings["duration"]
    requests = users * settings["sessions"] * settings["requests"]
    per_pod = requests / duration / REPLICAS
    return (
        f"Written by `bench/bench_demo.py` from the reports in `bench/results/{reports.name}/`. "
        f"Each seed is one run of `make demo` (two shops side by side, {duration:.0f} s of load, "
        f"{users} users: about {per_pod:.0f} requests/s per pod; a "
        f"{settings['fault_rate']:.0%} quality bug on one pod of {REPLICAS} at "
        f"t = {settings['fault_at']:.0f} s). The ratio is the share of users hurt without "
        "stickyguard over the share with it (1/ratio of unmitigated): higher is better."
    )


def summary(rows: list[dict[str, Any]], settings: dict[str, Any], reports: Path) -> str:
    keys = ["ratio", *(f"ratio_at_{h:.0f}s" for h in HORIZONS)]
    lines = [
        "# `make demo` over several seeds",
        "",
        describe(settings, reports),
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
    default_users = DemoSettings().users
    parser.add_argument("--users", type=int, default=default_users)
    args = parser.parse_args()
    reports, out = places(args.users, default_users)
    reports.mkdir(parents=True, exist_ok=True)
    rows, settings = [], []
    for seed in args.seeds:
        path = reports / f"seed{seed}.json"
        if not args.summarize_only:
            cmd = [sys.executable, "-m", "stickyguard_lab", "demo", "--seed", str(seed)]
            cmd += ["--users", str(args.users), "--report", str(path)]
            subprocess.run(cmd, check=True)
        report = json.loads(path.read_text())
        rows.append(row(seed, report))
        settings.append({k: v for k, v in report["settings"].items() if k != "seed"})
    if any(s != settings[0] for s in settings):
        print(f"the reports in {reports} were run with different settings", file=sys.stderr)
        return 1
    text = summary(rows, settings[0], reports)
    out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
