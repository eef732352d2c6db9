"""Scale benchmark: the real operator against the real control plane and Prometheus with
2,000 pods across 100 StickyPolicies (10 namespaces x 10 apps x 20 pods).

Pods are created directly (bare, gated) and run by the node agent without processes; each
app's per-pod counters come from a synthetic exporter scraped by the lab Prometheus. Five apps
get one bad pod, so drains happen while we measure. After warm-up (every pod serving, every
policy evaluated), the operator's own /metrics are sampled every 2 s for the measurement window:

- evaluation duration per policy (histogram) and the gap between evaluations of each policy
  (from stickyguard_last_evaluation_timestamp_seconds), against the 15 s interval;
- Prometheus queries and Kubernetes API requests per cycle (a cycle = one evaluation of every
  policy), against policies x signals;
- operator RSS and CPU (from /proc).

    python bench/bench_scale.py [--namespaces 10] [--apps 10] [--pods 20] [--measure 180]
    [--out bench/results/scale.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kubernetes import client, config

from stickyguard.core.names import GROUP, PLURAL, SERVING, VERSION
from stickyguard.core.policy import parse_policy
from stickyguard_lab import testenv
from stickyguard_lab.exporter import SyntheticExporter
from stickyguard_lab.operatorproc import (
    OperatorProcess,
    install_crd,
    install_rbac,
    service_account_kubeconfig,
)
from stickyguard_lab.procs import Supervisor, free_port

SAMPLE = re.compile(r"^(\w+)\{([^}]*)\} (\S+)$")


def scrape(port: int) -> dict[tuple[str, str], float]:
    """(metric name, label text) -> value, for stickyguard_* samples."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out = {}
    for line in text.splitlines():
        if not line.startswith("stickyguard_"):
            continue
        m = SAMPLE.match(line)
        if m:
            out[(m.group(1), m.group(2))] = float(m.group(3))
        else:
            name, value = line.rsplit(" ", 1)
            out[(name, "")] = float(value)
    return out


def total(sample: dict[tuple[str, str], float], name: str) -> float:
    return sum(v for (n, _), v in sample.items() if n == name)


def proc_stats(pid: int) -> tuple[float, float]:
    """(RSS in MiB, CPU seconds) of a process."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return rss, cpu


def serves_raw(p: dict[str, Any]) -> bool:
    conds = (p.get("status") or {}).get("conditions") or []
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conds)
    labels = p["metadata"].get("labels") or {}
    return ready and labels.get(SERVING, "true") == "true"


def ready_pods(core: client.CoreV1Api) -> int:
    raw = core.list_pod_for_all_namespaces(label_selector="app", _preload_content=False)
    return sum(1 for p in json.loads(raw.data)["items"] if serves_raw(p))


def pod(name: str, app: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": {
            "readinessGates": [{"conditionType": SERVING}],
            "containers": [{"name": "app", "image": "example.invalid/app:1"}],
        },
    }


def policy(ns: str, app: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "StickyPolicy",
        "metadata": {"name": app, "namespace": ns},
        "spec": {
            "selector": {"matchLabels": {"app": app}},
            "prometheus": {"window": "30s"},
            "detection": {"intervalSeconds": 15, "minRequests": 100},
            "actions": {
                "mode": "Enforce",
                "drain": {"method": "ReadinessGate", "evict": False},
            },
            "safety": {"maxDrainedPercent": 10, "minReadyPods": 5, "cooldownSeconds": 0},
        },
    }


def signals_per_policy() -> int:
    """Queries one evaluation of `policy` runs (the generic preset: total, bad, freshness and
    the two raw counters the detector differences): one each, whatever the pod count."""
    return len(parse_policy(policy("ns", "app")).prometheus.rendered_queries("ns"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--namespaces", type=int, default=10)
    ap.add_argument("--apps", type=int, default=10)
    ap.add_argument("--pods", type=int, default=20)
    ap.add_argument("--measure", type=float, default=180.0)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    n_pods = args.namespaces * args.apps * args.pods
    n_policies = args.namespaces * args.apps
    work = Path(tempfile.mkdtemp(prefix="sg-scale-"))
    t0 = time.monotonic()
    lab = testenv.up(work / "lab")
    exporters: dict[tuple[str, str], SyntheticExporter] = {}
    stop = threading.Event()
    sup = Supervisor(work)
    try:
        api = config.new_client_from_config(config_file=str(lab.kubeconfig))
        api.configuration.connection_pool_maxsize = 32
        core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
        install_rbac(lab)
        install_crd(lab)
        namespaces = [f"scale-{i:02d}" for i in range(args.namespaces)]
        apps = [f"app-{j:02d}" for j in range(args.apps)]
        for ns in namespaces:
            core.create_namespace({"metadata": {"name": ns}})
        for ns in namespaces:
            for app in apps:
                ex = SyntheticExporter(ns, app, rps=20.0)
                ex.register(lab.prometheus.targets_dir, f"{ns}-{app}")
                exporters[(ns, app)] = ex
        bad_apps = [(namespaces[i % len(namespaces)], apps[i]) for i in range(5)]
        for ns, app in bad_apps:
            exporters[(ns, app)].set_ratio(f"{app}-00", 0.2)

        # One lister for all exporters (a follower per app would load the apiserver 100x);
        # raw JSON, because building client models for 2,000 pods costs seconds of CPU.
        def distribute() -> None:
            while not stop.is_set():
                try:
                    raw = core.list_pod_for_all_namespaces(
                        label_selector="app", _preload_content=False
                    )
                    groups: dict[tuple[str, str], dict[str, bool]] = {}
                    for p in json.loads(raw.data)["items"]:
                        meta = p["metadata"]
                        key = (meta["namespace"], (meta.get("labels") or {}).get("app", ""))
                        if key in exporters and not meta.get("deletionTimestamp"):
                            groups.setdefault(key, {})[meta["name"]] = serves_raw(p)
                    for key, ex in exporters.items():
                        ex.set_pods(groups.get(key, {}))
                except Exception as e:  # keep going; the bench reports what it measured
                    print(f"  lister: {e}", file=sys.stderr)
                stop.wait(3.0)

        threading.Thread(target=distribute, daemon=True).start()
        print(f"creating {n_pods} pods ...", flush=True)
        t_create = time.monotonic()
        with ThreadPoolExecutor(16) as pool:
            list(
                pool.map(
                    lambda a: core.create_namespaced_pod(a[0], pod(f"{a[1]}-{a[2]:02d}", a[1])),
                    [(ns, app, k) for ns in namespaces for app in apps for k in range(args.pods)],
                )
            )
        created_s = time.monotonic() - t_create
        kubeconfig = service_account_kubeconfig(lab, work / "sa-kubeconfig")
        port = free_port()
        op = OperatorProcess(
            sup, kubeconfig, lab.prometheus.url, name="scale-operator", metrics_port=port
        )
        op.start()
        assert op.child is not None
        child = op.child
        for ns in namespaces:
            for app in apps:
                custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, policy(ns, app))
        print("warming up (every pod serving, every policy evaluated) ...", flush=True)
        t_warm = time.monotonic()
        while True:
            time.sleep(5)
            try:
                sample = scrape(port)
            except OSError:
                continue
            evaluated = {
                lbl
                for (n, lbl), v in sample.items()
                if n == "stickyguard_last_evaluation_timestamp_seconds" and v > 0
            }
            ready = ready_pods(core)
            print(
                f"  {time.monotonic() - t_warm:5.0f}s evaluated {len(evaluated)}/{n_policies}"
                f" pods ready {ready}/{n_pods}",
                flush=True,
            )
            if len(evaluated) >= n_policies and ready >= n_pods - len(bad_apps):
                break
            if time.monotonic() - t_warm > 900:
                raise RuntimeError("warm-up did not finish in 15 minutes")
        warm_s = time.monotonic() - t_warm
        time.sleep(20)  # let the first-round drains settle
        print(f"measuring for {args.measure:.0f}s ...", flush=True)
        first = scrape(port)
        rss0, cpu0 = proc_stats(child.popen.pid)
        start = time.monotonic()
        last_eval: dict[str, float] = {}
        gaps: list[float] = []
        rss: list[float] = []
        while time.monotonic() - start < args.measure:
            s = scrape(port)
            for (n, lbl), v in s.items():
                if n == "stickyguard_last_evaluation_timestamp_seconds":
                    if lbl in last_eval and v > last_eval[lbl]:
                        gaps.append(v - last_eval[lbl])
                    last_eval[lbl] = v
            rss.append(proc_stats(child.popen.pid)[0])
            time.sleep(2)
        elapsed = time.monotonic() - start
        last = scrape(port)
        rss1, cpu1 = proc_stats(child.popen.pid)
        evals = total(last, "stickyguard_evaluations_total") - total(
            first, "stickyguard_evaluations_total"
        )
        dur_sum = total(last, "stickyguard_evaluation_duration_seconds_sum") - total(
            first, "stickyguard_evaluation_duration_seconds_sum"
        )
        queries = total(last, "stickyguard_prometheus_queries_total") - total(
            first, "stickyguard_prometheus_queries_total"
        )
        kube = total(last, "stickyguard_kube_api_requests_total") - total(
            first, "stickyguard_kube_api_requests_total"
        )
        by_policy: dict[str, float] = {}
        for (n, lbl), v in last.items():
            if n == "stickyguard_evaluations_total":  # labels: namespace, policy, result
                key = re.sub(r',?result="[^"]*"', "", lbl)
                by_policy[key] = by_policy.get(key, 0.0) + v - first.get((n, lbl), 0.0)
        per_policy = list(by_policy.values())
        cycles = evals / n_policies
        drained = total(last, "stickyguard_drained_pods")
        gaps.sort()
        result = {
            "pods": n_pods,
            "policies": n_policies,
            "signals_per_policy": signals_per_policy(),
            "setup_seconds": {
                "lab_up": round(t_create - t0, 1),
                "create_pods": round(created_s, 1),
                "warm_up": round(warm_s, 1),
            },
            "measured_seconds": round(elapsed, 1),
            "evaluations": int(evals),
            "evaluations_per_policy": {
                "min": min(per_policy),
                "median": statistics.median(per_policy),
                "expected": round(elapsed / 15, 1),
            },
            "evaluation_gap_seconds": {
                "median": round(statistics.median(gaps), 2),
                "p99": round(gaps[int(0.99 * (len(gaps) - 1))], 2),
                "max": round(gaps[-1], 2),
                "n": len(gaps),
            },
            "evaluation_duration_seconds_mean": round(dur_sum / max(evals, 1), 4),
            "prometheus_queries_per_cycle": round(queries / cycles, 1),
            "expected_queries_per_cycle": n_policies * signals_per_policy(),
            "kube_api_requests_per_cycle": round(kube / cycles, 1),
            "operator_rss_mib": {
                "start": round(rss0, 1),
                "median": round(statistics.median(rss), 1),
                "max": round(max(rss), 1),
                "end": round(rss1, 1),
            },
            "operator_cpu_cores": round((cpu1 - cpu0) / elapsed, 3),
            "pods_drained_at_end": drained,
        }
        print(json.dumps(result, indent=2))
        if args.out:
            args.out.write_text(json.dumps(result, indent=2) + "\n")
        return 0
    finally:
        stop.set()
        sup.stop_all()
        for ex in exporters.values():
            ex.stop()
        lab.down()


if __name__ == "__main__":
    sys.exit(main())
