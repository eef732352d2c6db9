"""Seeded noisy traffic for the detector's and the rollout judge's tests: Poisson arrivals, bad
events independent or in clusters (a client retrying)."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

INTERVAL = 15.0


def poisson(rng: random.Random, mean: float) -> int:
    limit, k, p = math.exp(-mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


Counts = Callable[[random.Random, int, int], tuple[int, int]]  # (rng, pod, step) -> (n, bad)


def healthy(rate: float, ratio: float, cluster: float = 1.0, interval: float = INTERVAL) -> Counts:
    """Poisson traffic; bad events independent, or in clusters of mean size `cluster`."""

    def draw(rng: random.Random, pod: int, step: int) -> tuple[int, int]:
        n = poisson(rng, rate * interval)
        if cluster <= 1.0:
            return n, sum(1 for _ in range(n) if rng.random() < ratio)
        starts = poisson(rng, n * ratio / cluster)
        bad = sum(1 + int(rng.expovariate(1 / (cluster - 1))) for _ in range(starts))
        return n, min(n, bad)

    return draw
