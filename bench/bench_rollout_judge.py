"""Rollout judge benchmark: healthy versions failed by noise, and bad ones found, with the window
test alone and with the accumulated evidence (core.cohort_chart).

A fleet of 12 pods runs ten minutes, then a rollout begins: the first `new` pods become the new
version. Per 15 s interval each pod gets Poisson(rate x 15) events, the bad ones independent or
in clusters (a client retrying; bench_null.counts). Window counts are the last 8 intervals (2m)
and samples carry the raw counters. Every evaluation runs the product's `judge` twice on the
same counts, before the product's `analyze` and on the previous cycle's detector memory, as the
guard does: without a chart (the window alone, as before) and with one (and the detector's
overdispersion, floor and verdicts). No pod is drained. A `fail` latches, so a rollout counts as
failed at its first `fail`. Null rows: the new version is exactly as good as the old one; fault
rows: its pods answer `fault` of their requests badly, independently.

    python bench/bench_rollout_judge.py [--seeds 100] [--out bench/results/rollout-judge.md]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np

from bench_null import counts, write
from stickyguard.core.analysis import PodMeta, PodSample, Track, analyze
from stickyguard.core.cohort_chart import CohortChart
from stickyguard.core.policy import Detection, Impact, parse_policy
from stickyguard.core.rollout import FAIL, judge

OUT = Path(__file__).resolve().parent / "results" / "rollout-judge.md"
INTERVAL, WINDOW, PODS, WARM = 15.0, 8, 12, 40  # WARM: intervals before the rollout
# (req/s per pod, bad ratio, cluster mean, new pods, minutes, fault ratio or None)
GRID = [
    (2.0, 0.005, 1.0, 1, 10, None),
    (10.0, 0.005, 1.0, 1, 10, None),
    (2.0, 0.005, 3.0, 1, 10, None),
    (10.0, 0.005, 3.0, 1, 10, None),
    (10.0, 0.005, 8.0, 1, 10, None),
    (2.0, 0.02, 3.0, 1, 10, None),
    (10.0, 0.005, 3.0, 3, 10, None),
    (1.0, 0.005, 1.0, 1, 60, None),
    (2.0, 0.005, 3.0, 1, 60, None),
    (10.0, 0.02, 3.0, 6, 60, None),
    (10.0, 0.005, 1.0, 1, 15, 0.3),
    (2.0, 0.005, 1.0, 1, 15, 0.3),
    (2.0, 0.005, 1.0, 1, 15, 0.05),
    (10.0, 0.005, 1.0, 1, 15, 0.05),
    (10.0, 0.005, 3.0, 3, 15, 0.05),
    (2.0, 0.005, 3.0, 1, 15, 0.05),
]


def rollout(
    rate: float,
    ratio: float,
    cluster: float,
    new: int,
    minutes: float,
    fault: float | None,
    seed: int,
) -> tuple[float | None, float | None]:
    """Seconds into the rollout of the first `fail`: (window alone, with evidence)."""
    rng = np.random.default_rng(seed)
    steps = WARM + int(minutes * 60 / INTERVAL)
    n, b = counts(rng, PODS, steps, rate, ratio, cluster, INTERVAL)
    if fault is not None:
        n_new = n[WARM:, :new].astype(np.int64)
        b[WARM:, :new] = rng.binomial(n_new, fault)
    policy = parse_policy(
        {
            "metadata": {"name": "bench", "namespace": "bench"},
            "spec": {"selector": {"matchLabels": {"app": "web"}}},
        }
    )
    names = [f"p{i:02d}" for i in range(PODS)]
    meta = {
        p: PodMeta(p, labels={"pod-template-hash": "v2" if i < new else "v1"})
        for i, p in enumerate(names)
    }
    cn, cb = np.cumsum(n, axis=0), np.cumsum(b, axis=0)
    tracks: dict[str, Track] = {}
    chart = CohortChart()
    first: list[float | None] = [None, None]
    for step in range(steps):
        now = (step + 1) * INTERVAL
        lo = max(0, step + 1 - WINDOW)
        samples = [
            PodSample(
                p,
                float(n[lo : step + 1, j].sum()),
                float(b[lo : step + 1, j].sum()),
                total_counter=float(cn[step, j]),
                bad_counter=float(cb[step, j]),
            )
            for j, p in enumerate(names)
        ]
        if step >= WARM:
            # The guard judges before the cycle's analysis, on the previous cycle's tracks.
            since = now - WARM * INTERVAL
            alone = judge(policy, samples, meta, "v2")
            if first[0] is None and alone.verdict == FAIL:
                first[0] = since
            v = judge(
                policy,
                samples,
                meta,
                "v2",
                chart=chart,
                now=now,
                window_seconds=WINDOW * INTERVAL,
                tracks=tracks,
            )
            chart = v.chart or chart
            if first[1] is None and v.verdict == FAIL:
                first[1] = since
            if None not in first:
                break
        d: Detection = policy.detection
        tracks = dict(analyze(samples, meta, d, Impact(), tracks, now=now).tracks)
    return first[0], first[1]


def spread(times: list[float | None]) -> str:
    """median / p90 / worst seconds, counting a miss as never."""
    xs = sorted(float("inf") if t is None else t for t in times)

    def show(x: float) -> str:
        return "never" if x == float("inf") else f"{x:.0f}"

    p90 = xs[min(len(xs) - 1, int(0.9 * len(xs)))]
    return f"{show(statistics.median_low(xs))} / {show(p90)} / {show(xs[-1])}"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    lines = [
        "# Rollout judge: healthy versions failed by noise, bad ones found",
        "",
        f"Produced by `python bench/bench_rollout_judge.py --seeds {args.seeds}` (see its "
        f"docstring): {PODS} pods, the first `new` of them the new version, evaluated every "
        f"{INTERVAL:g} s on 2m windows with the default detection; the same counts judged by "
        "the window's test alone and with the accumulated evidence. Null rows count rollouts "
        "failed (a `fail` latches); fault rows give seconds from the rollout's start to the "
        "first `fail`, median / p90 / worst over the seeds.",
        "",
        "| req/s per pod | bad ratio | clusters | new pods | minutes | new version | "
        "window alone | with evidence |",
        "| ---: | ---: | ---: | ---: | ---: | :--- | ---: | ---: |",
    ]
    for i, (rate, ratio, cluster, new, minutes, fault) in enumerate(GRID):
        runs = [
            rollout(rate, ratio, cluster, new, minutes, fault, 1000 * i + s)
            for s in range(args.seeds)
        ]
        if fault is None:
            cells = [
                f"{sum(r[k] is not None for r in runs)} of {args.seeds} failed" for k in (0, 1)
            ]
            what = "as good"
        else:
            cells = [spread([r[k] for r in runs]) for k in (0, 1)]
            what = f"{fault:.0%} bad"
        lines.append(
            f"| {rate:g} | {ratio:.1%} | {'none' if cluster <= 1 else f'mean {cluster:g}'} | "
            f"{new} | {minutes:g} | {what} | {cells[0]} | {cells[1]} |"
        )
        print(lines[-1], file=sys.stderr, flush=True)
    write(args.out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
