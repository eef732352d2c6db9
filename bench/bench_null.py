"""Long-horizon null benchmark: false drains per pod-year of the real detector on healthy fleets.

Every pod of a fleet has the same true bad ratio; per interval (15 s, or `--interval`) a pod
gets Poisson(rate x interval) events, of which the bad ones are binomial (independent) or come
in clusters (a client retrying a failed call: clusters of geometric size, mean 3, same mean bad
ratio). Window counts are the sums of the last 8 intervals (a 2m window at 15 s, as the
simulator's scraper and Prometheus give), fed to the pure `analyze` with the default Detection
every interval. A pod offered for draining counts as a false drain and its memory is forgotten,
as the caller does after a drain and restore. An event-level simulation of this many pod-days
would take hours; the counts are drawn with numpy, the detector is the product's own code.

    python bench/bench_null.py [--pods 100] [--days 30] [--interval 15]
                               [--out bench/results/null.md]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from stickyguard.core.analysis import PodSample, Track, analyze, forget
from stickyguard.core.policy import Detection, Impact

OUT = Path(__file__).resolve().parent / "results" / "null.md"
INTERVAL, WINDOW_INTERVALS = 15.0, 8  # the defaults: a 2m window read every 15 s
CLUSTER_MEAN = 3.0
# (req/s per pod, bad ratio, clustered)
GRID = [
    (0.2, 0.02, False),
    (1.0, 0.005, False),
    (10.0, 0.001, False),
    (0.2, 0.005, True),
    (1.0, 0.02, True),
    (10.0, 0.005, True),
]


def counts(
    rng: np.random.Generator,
    pods: int,
    steps: int,
    rate: float,
    ratio: float,
    cluster: float,
    interval: float,
) -> tuple[np.ndarray, np.ndarray]:
    """(events, bad events) per interval and pod; bad events independent (`cluster` 1) or in
    clusters of mean size `cluster`."""
    total = rng.poisson(rate * interval, size=(steps, pods)).astype(float)
    if cluster <= 1.0:
        bad = rng.binomial(total.astype(np.int64), ratio).astype(float)
    else:
        # Clusters start at a rate that keeps the mean bad ratio; each holds 1 + Geometric
        # extra bad events (mean `cluster`), all on the same pod and interval.
        starts = rng.poisson(total * ratio / cluster)
        extra = rng.negative_binomial(starts.clip(min=1), 1.0 / cluster) * (starts > 0)
        bad = np.minimum(total, starts + extra).astype(float)
    return total, bad


def run(
    pods: int,
    days: float,
    rate: float,
    ratio: float,
    clustered: bool,
    seed: int,
    interval: float = INTERVAL,
) -> tuple[int, float, float]:
    """(false drains, max CUSUM seen / threshold, seconds). The window is always
    WINDOW_INTERVALS intervals long (2m at 15 s, 40 s at 5 s), as docs/writing-a-policy.md
    advises."""
    rng = np.random.default_rng(seed)
    steps = int(days * 86400 / interval)
    d, imp = Detection(interval_seconds=round(interval)), Impact()
    names = [f"pod-{i:03d}" for i in range(pods)]
    tracks: dict[str, Track] = {}
    drains, worst = 0, 0.0
    t0 = time.monotonic()
    chunk = 5760  # a day at a time keeps memory small
    tail_n = np.zeros((WINDOW_INTERVALS - 1, pods))
    tail_b = np.zeros((WINDOW_INTERVALS - 1, pods))
    before_n = np.zeros(pods)  # the raw counters before this chunk's first new interval
    before_b = np.zeros(pods)
    step = 0
    while step < steps:
        k = min(chunk, steps - step)
        n, b = counts(rng, pods, k, rate, ratio, CLUSTER_MEAN if clustered else 1.0, interval)
        n_all, b_all = np.vstack([tail_n, n]), np.vstack([tail_b, b])
        cn, cb = np.cumsum(n_all, axis=0), np.cumsum(b_all, axis=0)
        cn = np.vstack([np.zeros((1, pods)), cn])
        cb = np.vstack([np.zeros((1, pods)), cb])
        # What rate(x[2m]) * 120 returns with 15 s scrapes: the 8 samples of the range span 7
        # intervals, extrapolated by 8/7 (the window only feeds the per-window guard).
        scale = WINDOW_INTERVALS / (WINDOW_INTERVALS - 1)
        win_n = (cn[WINDOW_INTERVALS:] - cn[1 : 1 - WINDOW_INTERVALS or None]) * scale
        win_b = (cb[WINDOW_INTERVALS:] - cb[1 : 1 - WINDOW_INTERVALS or None]) * scale
        for i in range(k):
            now = (step + i + 1) * interval
            samples = [
                PodSample(
                    p,
                    float(win_n[i, j]),
                    float(win_b[i, j]),
                    total_counter=float(
                        before_n[j] + cn[WINDOW_INTERVALS + i, j] - cn[WINDOW_INTERVALS - 1, j]
                    ),
                    bad_counter=float(
                        before_b[j] + cb[WINDOW_INTERVALS + i, j] - cb[WINDOW_INTERVALS - 1, j]
                    ),
                )
                for j, p in enumerate(names)
            ]
            f = analyze(
                samples, {}, d, imp, tracks, now=now, window_seconds=WINDOW_INTERVALS * interval
            )
            tracks = dict(f.tracks)
            if f.degraded_pods:
                drains += len(f.degraded_pods)
                tracks = forget(tracks, f.degraded_pods)
            if i % round(300 / interval) == 0:
                h = f.pods[0].threshold or 1.0
                worst = max(worst, max((t.score for t in tracks.values()), default=0.0) / h)
        before_n += cn[-1] - cn[WINDOW_INTERVALS - 1]
        before_b += cb[-1] - cb[WINDOW_INTERVALS - 1]
        tail_n, tail_b = n_all[-(WINDOW_INTERVALS - 1) :], b_all[-(WINDOW_INTERVALS - 1) :]
        step += k
    return drains, worst, time.monotonic() - t0


def write(out: Path, lines: list[str]) -> None:
    """The table's lines to `out` (its folder made if needed)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}", file=sys.stderr)


def command(args: argparse.Namespace) -> str:
    """The options that reproduce this table (the output path aside)."""
    words = [f"--pods {args.pods}", f"--days {args.days:g}"]
    if args.only:
        words.append("--only " + " ".join(str(i) for i in args.only))
    if args.seed != 1:
        words.append(f"--seed {args.seed}")
    if args.interval != INTERVAL:
        words.append(f"--interval {args.interval}")
    return " ".join(words)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pods", type=int, default=100)
    parser.add_argument("--days", type=float, default=30)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--only", type=int, nargs="*", help="indexes into the grid")
    parser.add_argument(
        "--interval", type=int, default=int(INTERVAL), help="intervalSeconds (window: 8 of them)"
    )
    args = parser.parse_args()
    window = f"{WINDOW_INTERVALS * args.interval:g}s"
    d = Detection()
    lines = [
        "# Long-horizon null benchmark (false drains)",
        "",
        f"Produced by `python bench/bench_null.py {command(args)}`: "
        f"{args.pods} identical pods for {args.days:g} simulated days per row, evaluated every "
        f"{args.interval:g} s on {window} windows by the product's `analyze` with the default "
        "detection "
        f"(falseDrainsPerPodYear {d.false_drains_per_pod_year:g}, the budget). Clustered rows "
        f"put bad events in clusters of mean size {CLUSTER_MEAN:g} (retries). `max CUSUM / h` is "
        "the highest detector statistic seen (sampled every 5 minutes) over its threshold. "
        "Samples carry the raw counters, as the presets read them, and windows shaped as "
        f"Prometheus' `rate()` returns them ({WINDOW_INTERVALS - 1} intervals extrapolated by "
        f"{WINDOW_INTERVALS}/{WINDOW_INTERVALS - 1}).",
        "",
        "| req/s per pod | bad ratio | clustered | pod-years | false drains | "
        "per pod-year | max CUSUM / h | run s |",
        "| ---: | ---: | :---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    grid = [GRID[i] for i in args.only] if args.only else GRID
    for i, (rate, ratio, clustered) in enumerate(grid):
        drains, worst, secs = run(
            args.pods, args.days, rate, ratio, clustered, args.seed + i, args.interval
        )
        pod_years = args.pods * args.days / 365.25
        lines.append(
            f"| {rate:g} | {ratio:.1%} | {'yes' if clustered else 'no'} | {pod_years:.1f} | "
            f"{drains} | {drains / pod_years:.3f} | {worst:.2f} | {secs:.0f} |"
        )
        print(lines[-1], file=sys.stderr, flush=True)
    write(args.out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
