"""Review reproducer (review-detect): the null benchmark on window counts as Prometheus returns
them. Per-pod counters are scraped every --scrape s at random offsets; the window count is
rate(x[2m]) * 120 by Prometheus' extrapolatedRate (samples in (t-120, t], extrapolated to the
range edges), evaluated every 15 s by the product's `analyze`. --exact sums the last 8
intervals instead (the simulator's scraper). --jitter adds uniform jitter to evaluation times.

    python bench/bench_null_prom.py --rate 1 --ratio 0.005 --pods 20 --hours 24 [--exact]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from stickyguard.core.analysis import PodSample, analyze, forget
from stickyguard.core.policy import Detection, Impact


def extrapolated_increase(ts, vs, t, rng):
    # ts, vs: numpy arrays of sample times/values within (t-rng, t]
    if len(ts) < 2:
        return None
    # counter resets
    res = vs[-1] - vs[0]
    d = np.diff(vs)
    res += -d[d < 0].sum() + 0  # add back value before reset
    if (d < 0).any():
        res = vs[-1] - vs[0] + np.sum(vs[:-1][d < 0])
    start, end = t - rng, t
    dstart, dend = ts[0] - start, end - ts[-1]
    sampled = ts[-1] - ts[0]
    avg = sampled / (len(ts) - 1)
    if res > 0 and vs[0] >= 0:
        dzero = sampled * vs[0] / res
        if dzero < dstart:
            dstart = dzero
    thr = avg * 1.1
    ext = sampled
    ext += dstart if dstart < thr else avg / 2
    ext += dend if dend < thr else avg / 2
    return res * ext / sampled


class PromFleet:
    """arrivals per scrape interval -> window counts at eval times."""

    def __init__(self, n_arr, b_arr, scrape=15.0, offsets=None, base_counter=1000.0):
        self.steps, self.pods = n_arr.shape
        self.scrape = scrape
        self.off = np.zeros(self.pods) if offsets is None else np.asarray(offsets)
        # counter value at scrape j (time j*scrape + off): cumulative arrivals through interval j
        self.cn = base_counter + np.cumsum(n_arr, axis=0)
        self.cb = base_counter * 0.01 + np.cumsum(b_arr, axis=0)

    def window(self, t, rng=120.0):
        out = []
        for p in range(self.pods):
            j_hi = math.floor((t - self.off[p]) / self.scrape + 1e-9)
            j_lo = math.floor((t - rng - self.off[p]) / self.scrape + 1e-9) + 1
            j_lo = max(j_lo, 0)
            j_hi = min(j_hi, self.steps - 1)
            if j_hi - j_lo < 1:
                out.append((None, None))
                continue
            ts = np.arange(j_lo, j_hi + 1) * self.scrape + self.off[p]
            n = extrapolated_increase(ts, self.cn[j_lo : j_hi + 1, p], t, rng)
            b = extrapolated_increase(ts, self.cb[j_lo : j_hi + 1, p], t, rng)
            out.append((n, b))
        return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pods", type=int, default=20)
    ap.add_argument("--hours", type=float, default=6)
    ap.add_argument("--rate", type=float, default=1.0)
    ap.add_argument("--ratio", type=float, default=0.005)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--exact", action="store_true")
    ap.add_argument("--eval-offset", type=float, default=7.0)
    ap.add_argument("--scrape", type=float, default=15.0)
    ap.add_argument("--jitter", type=float, default=0.0)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    steps = int(a.hours * 3600 / a.scrape) + 10
    n = rng.poisson(a.rate * a.scrape, size=(steps, a.pods)).astype(float)
    b = rng.binomial(n.astype(np.int64), a.ratio).astype(float)
    pf = PromFleet(n, b, scrape=a.scrape, offsets=rng.uniform(0, a.scrape, a.pods))
    d, tracks = Detection(), {}  # type: ignore[var-annotated]
    drains: list[tuple[int, tuple[str, ...]]] = []
    names = [f"p{j:03d}" for j in range(a.pods)]
    t0 = time.time()
    for k in range(9, int(a.hours * 3600 / 15)):
        t = k * 15.0 + a.eval_offset + (rng.uniform(-a.jitter, a.jitter) if a.jitter else 0.0)
        if a.exact:  # only meaningful with --scrape 15
            lo = max(0, k - 7)
            w = [
                (float(n[lo : k + 1, j].sum()), float(b[lo : k + 1, j].sum()))
                for j in range(a.pods)
            ]
        else:
            w = pf.window(t)
        samples = [PodSample(names[j], w[j][0], w[j][1]) for j in range(a.pods)]
        f = analyze(samples, {}, d, Impact(), tracks, now=t, window_seconds=120.0)
        tracks = dict(f.tracks)
        if f.degraded_pods:
            drains.append((round(t), f.degraded_pods))
            tracks = forget(tracks, f.degraded_pods)
    pod_days = a.pods * a.hours / 24
    print(
        f"rate={a.rate} ratio={a.ratio} pods={a.pods} {'exact' if a.exact else 'prometheus'} "
        f"scrape={a.scrape} jitter={a.jitter}: pod-days={pod_days:.1f} false drains={len(drains)} "
        f"per pod-year={len(drains) / pod_days * 365.25:.1f} first={drains[:3]} "
        f"({time.time() - t0:.0f}s)"
    )


if __name__ == "__main__":
    main()
