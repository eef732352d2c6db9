"""Benchmark: analysis time and Prometheus queries per evaluation at 100, 1,000 and 10,000 pods.

Analysis runs on synthetic samples (pure core, median of repeated runs). The query count comes
from the real reader against a real Prometheus backfilled with that many pods, so "one query per
signal, never one per pod" is measured, not assumed.

    python bench/bench_analysis.py [--sizes 100,1000,10000] [--repeat 15]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from promdata import AT, requests
from stickyguard.adapters.prometheus import PrometheusReader
from stickyguard.core.analysis import PodMeta, PodSample, analyze
from stickyguard.core.policy import Detection, Impact, parse_policy
from stickyguard_lab.binaries import find_binaries
from stickyguard_lab.procs import Supervisor
from stickyguard_lab.prom import backfill, start_prometheus


def synthetic(n: int, seed: int = 1) -> tuple[list[PodSample], dict[str, PodMeta]]:
    rnd = random.Random(seed)
    samples, meta = [], {}
    for i in range(n):
        total = rnd.uniform(500, 3000)
        ratio = 0.05 if i % 97 == 0 else rnd.uniform(0.0005, 0.0015)
        pod = f"pod-{i:05d}"
        samples.append(PodSample(pod, total, total * ratio))
        meta[pod] = PodMeta(
            pod, node=f"node-{i % 50}", zone=f"zone-{i % 3}", version="v2" if i % 97 == 0 else "v1"
        )
    return samples, meta


def time_analysis(n: int, repeat: int) -> tuple[float, int]:
    samples, meta = synthetic(n)
    d = Detection(consecutive=1)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        f = analyze(samples, meta, d, Impact())
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000, len(f.degraded_pods)


def count_queries(n: int) -> tuple[int, float]:
    bins = find_binaries()
    pods = {f"pod-{i:05d}": (10.0, 0.05 if i % 97 == 0 else 0.01) for i in range(n)}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        backfill(bins, requests("generic", "bench", "web", pods), work / "tsdb")
        sup = Supervisor(work)
        prom = start_prometheus(sup, bins, work / "prom", tsdb_dir=work / "tsdb")
        try:
            policy = parse_policy(
                {
                    "metadata": {"name": "b", "namespace": "bench"},
                    "spec": {"selector": {"matchLabels": {"app": "web"}}},
                }
            )
            reader = PrometheusReader(prom.url, timeout=60)
            t0 = time.perf_counter()
            snap = reader.snapshot(policy, AT)
            elapsed = time.perf_counter() - t0
            assert not snap.problems, snap.problems
            assert len(snap.samples) == n
            return reader.queries_run, elapsed * 1000
        finally:
            sup.stop_all()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--no-prometheus", action="store_true")
    args = parser.parse_args()
    print(
        "| pods | analysis median (ms) | degraded found | queries / evaluation | "
        "snapshot read (ms) |"
    )
    print("| ---: | ---: | ---: | ---: | ---: |")
    for n in (int(x) for x in args.sizes.split(",")):
        ms, found = time_analysis(n, args.repeat)
        q, read_ms = (0, 0.0) if args.no_prometheus else count_queries(n)
        print(f"| {n} | {ms:.1f} | {found} | {q or '-'} | {read_ms:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
