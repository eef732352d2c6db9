"""The simulation: the same sticky traffic replayed under each strategy.

Traffic: users open sessions over time; each session makes requests at exponential intervals and
is pinned by cookie affinity with consistent hashing over the pods that serve (a pod leaving the
ring moves only its own sessions). Each request draws one random number, shared by all
strategies, so they differ only by what they do. Faults make a share of a pod's requests bad:
`error` answers are HTTP 5xx, `quality` ones are HTTP 200 with a bad answer, `latency` ones miss
the SLO. `users_affected_pct` and `requests_bad_pct` count what the faults spoiled; the
`*_any_bad_pct` figures add the background errors every strategy lives with. Strategies:
- `none`: no mitigation;
- `outlier_detection`: Envoy's documented defaults, per proxy (see envoy.py);
- `stickyguard`: Prometheus-like scrapes every 15 s feed the operator's own cycle step
  (core.cycle.decide) at the policy's interval, and its actions are applied (drain, evict +
  replacement, restore).
"""

from __future__ import annotations

import bisect
import hashlib
import heapq
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from stickyguard.core.analysis import MetricsSnapshot, PodMeta, PodSample
from stickyguard.core.cycle import ClusterSnapshot, Memory, decide, remember
from stickyguard.core.planner import DRAIN, EVICT, RESTORE, ActionRecord, PodState
from stickyguard.core.policy import Policy, parse_policy
from stickyguard.core.promql import duration_seconds
from stickyguard.sim.envoy import OutlierDetector
from stickyguard.sim.scenario import Scenario

STRATEGIES = ("none", "outlier_detection", "stickyguard")
SCRAPE_SECONDS = 15.0
VNODES = 40


def _h(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


class Ring:
    """Consistent hashing over pod names."""

    def __init__(self, pods: list[str]) -> None:
        points = sorted((_h(f"{p}#{v}"), p) for p in pods for v in range(VNODES))
        self.keys = [k for k, _ in points]
        self.pods = [p for _, p in points]

    def lookup(self, key: int) -> str:
        i = bisect.bisect(self.keys, key)
        return self.pods[i % len(self.pods)]


@dataclass
class Pod:
    name: str
    node: str
    index: int | None  # index in the initial fleet (faults are bound to it); None: replacement
    serving: bool = True
    drained_at: float | None = None


@dataclass(frozen=True)
class Request:
    t: float
    user: int
    session: int
    session_key: int
    coin: float
    retry: bool = False  # bad whatever the pod (a retry storm's, a failing user's): no pod's fault


def traffic(sc: Scenario, seed: int) -> list[Request]:
    """Every request of the run, in time order (the same for every strategy)."""
    rng = random.Random(seed)
    out: list[Request] = []
    session = 0
    for user in range(sc.users):
        n_sessions = max(1, _poisson(rng, sc.sessions_per_user))
        for _ in range(n_sessions):
            t = rng.uniform(0, sc.duration)
            key = rng.getrandbits(64)
            n = max(1, _poisson(rng, sc.requests_per_session))
            for _ in range(n):
                if t >= sc.duration:
                    break
                out.append(Request(t, user, session, key, rng.random()))
                t += rng.expovariate(1.0 / sc.request_interval)
            session += 1
    storms = sc.retry_storms
    if storms is not None:
        # Each burst is one session's retries (pinned to one pod); a later burst of the same
        # user comes in another session, so on whatever pod that one is pinned to.
        for user in range(min(storms.users, sc.users)):
            t = rng.expovariate(1.0 / storms.every)
            while t < sc.duration:
                key = rng.getrandbits(64)
                for i in range(storms.size):
                    if t + i * storms.spacing < sc.duration:
                        out.append(Request(t + i * storms.spacing, user, session, key, 1.0, True))
                session += 1
                t += rng.expovariate(1.0 / storms.every)
    failing = sc.failing_users
    if failing is not None:
        first = storms.users if storms is not None else 0
        for user in range(first, min(first + failing.users, sc.users)):
            key = rng.getrandbits(64)
            t = rng.expovariate(1.0 / failing.interval)
            while t < sc.duration:
                out.append(Request(t, user, session, key, 1.0, True))
                t += rng.expovariate(1.0 / failing.interval)
            session += 1
    out.sort(key=lambda r: r.t)
    return out


def _poisson(rng: random.Random, mean: float) -> int:
    # Knuth for small means, normal approximation beyond (means here are small).
    if mean > 50:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, k, p = math.exp(-mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


@dataclass
class Result:
    strategy: str
    users_affected_pct: float
    requests_bad_pct: float
    detection_seconds: float | None
    healthy_pods_drained: int
    pods_drained: int
    users: int
    requests: int
    users_any_bad_pct: float  # including background errors
    requests_any_bad_pct: float
    actions: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "users_affected_pct": round(self.users_affected_pct, 3),
            "requests_bad_pct": round(self.requests_bad_pct, 3),
            "detection_seconds": None
            if self.detection_seconds is None
            else round(self.detection_seconds, 1),
            "healthy_pods_drained": self.healthy_pods_drained,
            "pods_drained": self.pods_drained,
            "users": self.users,
            "requests": self.requests,
            "users_any_bad_pct": round(self.users_any_bad_pct, 3),
            "requests_any_bad_pct": round(self.requests_any_bad_pct, 3),
        }


class Fleet:
    """Pods, their faults and the ring of serving pods."""

    def __init__(self, sc: Scenario) -> None:
        self.sc = sc
        self.pods = {
            f"pod-{i:02d}": Pod(f"pod-{i:02d}", f"node-{i % sc.nodes}", i) for i in range(sc.pods)
        }
        self.faults: dict[int, list[Any]] = {}
        for f in sc.faults:
            for i in f.pods:
                self.faults.setdefault(i, []).append(f)
        self._ring: Ring | None = None
        self.replacements = 0

    def ring(self) -> Ring:
        if self._ring is None:
            serving = sorted(p.name for p in self.pods.values() if p.serving)
            self._ring = Ring(serving or sorted(self.pods))
        return self._ring

    def changed(self) -> None:
        self._ring = None

    def bad_probability(self, pod: Pod, t: float) -> tuple[float, float, bool]:
        """(P(bad because of a fault), P(bad at all), visible as 5xx) for a request to `pod`
        at `t`. One uniform draw u decides: u < first is a fault's bad answer, first <= u <
        second a background error."""
        p_fault, visible = 0.0, False
        for f in self.faults.get(pod.index, []) if pod.index is not None else []:
            if f.start <= t and (f.end is None or t < f.end):
                p_fault = 1 - (1 - p_fault) * (1 - f.rate)
                visible = visible or f.kind == "error"
        bg = self.sc.background_error_rate
        return p_fault, 1 - (1 - p_fault) * (1 - bg), visible or p_fault == 0.0

    def faulty(self, pod: Pod, t: float) -> bool:
        return pod.index is not None and any(
            f.start <= t + 1e-9 and (f.end is None or t < f.end)
            for f in self.faults.get(pod.index, [])
        )


def _stickyguard_policy(sc: Scenario) -> Policy:
    spec: dict[str, Any] = {
        "selector": {"matchLabels": {"app": "sim"}},
        "prometheus": {"window": "2m"},
        "detection": {"intervalSeconds": 15},
        "actions": {"mode": "Enforce", "drain": {"drainTimeoutSeconds": 300}},
    }
    if sc.session_metrics:  # as the app's policy would read them (the simulator fills them)
        spec["prometheus"]["queries"] = {
            "activeSessions": "sum by ({pod_label}) (app_sessions_active{{selector}})",
            "degradedSessions": "sum by ({pod_label}) (app_sessions_degraded{{selector}})",
        }
    for key, value in sc.policy.items():
        spec[key] = {**spec.get(key, {}), **value} if isinstance(value, dict) else value
    return parse_policy({"metadata": {"name": "sim", "namespace": "sim"}, "spec": spec})


class Scraper:
    """Prometheus-like: per-pod counters sampled every 15 s; counts over a window are the
    difference between the newest sample and the newest one at least a window older."""

    def __init__(self, window: float) -> None:
        self.window = window
        self.samples: list[tuple[float, dict[str, tuple[float, float]]]] = []
        # Session gauges as an app exports them: per pod, sessions with a call (active) and with
        # a bad answer (degraded) within the window, by the time each was last seen.
        self.seen: dict[str, dict[int, float]] = {}
        self.hurt: dict[str, dict[int, float]] = {}
        self.gauges: dict[str, tuple[float, float]] = {}

    def observe(self, pod: str, session: int, t: float, bad: bool) -> None:
        self.seen.setdefault(pod, {})[session] = t
        if bad:
            self.hurt.setdefault(pod, {})[session] = t

    def scrape(self, t: float, counters: dict[str, list[float]]) -> None:
        self.samples.append((t, {p: (c[0], c[1]) for p, c in counters.items()}))
        while len(self.samples) > 2 and self.samples[1][0] <= t - self.window:
            self.samples.pop(0)
        for by_session in (*self.seen.values(), *self.hurt.values()):
            for session in [k for k, seen in by_session.items() if seen <= t - self.window]:
                del by_session[session]
        self.gauges = {
            p: (float(len(self.seen.get(p, {}))), float(len(self.hurt.get(p, {}))))
            for p in counters
        }

    def counters(self) -> dict[str, tuple[float, float]]:
        """The raw counters at the newest scrape (what the presets' counter queries read)."""
        return dict(self.samples[-1][1]) if self.samples else {}

    def window_counts(self) -> dict[str, tuple[float, float]]:
        if not self.samples:
            return {}
        _, new = self.samples[-1]
        _, old = self.samples[0]
        return {
            p: (n - old.get(p, (0.0, 0.0))[0], b - old.get(p, (0.0, 0.0))[1])
            for p, (n, b) in new.items()
        }


def run(sc: Scenario, strategy: str, requests: list[Request]) -> Result:
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}")
    fleet = Fleet(sc)
    affected: set[int] = set()  # users with at least one answer spoiled by a fault
    any_bad: set[int] = set()  # ...or by background errors too
    users: set[int] = set()
    bad_total = fault_bad = 0
    detection: float | None = None
    onset = min((f.start for f in sc.faults), default=None)
    drained_pods: set[str] = set()
    healthy_drained: set[str] = set()
    log: list[str] = []
    timers: list[tuple[float, int, str]] = []  # (time, seq, kind)
    seq = 0

    def at(t: float, kind: str) -> None:
        nonlocal seq
        heapq.heappush(timers, (t, seq, kind))
        seq += 1

    def mitigated(pod: Pod, t: float, what: str) -> None:
        nonlocal detection
        drained_pods.add(pod.name)
        if fleet.faulty(pod, t):
            if detection is None and onset is not None:
                detection = max(0.0, t - onset)
        else:
            healthy_drained.add(pod.name)
        log.append(f"{t:.0f}s {what} {pod.name}")

    # --- stickyguard --------------------------------------------------------------------------
    policy = _stickyguard_policy(sc)
    counters: dict[str, list[float]] = {name: [0.0, 0.0] for name in fleet.pods}
    scraper = Scraper(duration_seconds(policy.prometheus.window))
    memory = Memory()
    history: list[ActionRecord] = []
    if strategy == "stickyguard":
        at(SCRAPE_SECONDS, "scrape")
        at(float(policy.detection.interval_seconds), "evaluate")

    def evaluate(t: float) -> None:
        """One operator cycle: the same core step the kopf timer calls, on simulated
        snapshots; every planned write succeeds."""
        nonlocal memory
        counts = scraper.window_counts()
        window = duration_seconds(policy.prometheus.window)
        raw = scraper.counters()
        gauges = scraper.gauges if sc.session_metrics else {}
        metrics = MetricsSnapshot(
            t,
            window,
            tuple(
                PodSample(
                    p,
                    *counts.get(p, (0.0, 0.0)),
                    total_counter=raw[p][0] if p in raw else None,
                    bad_counter=raw[p][1] if p in raw else None,
                    active_sessions=gauges[p][0] if p in gauges else None,
                    degraded_sessions=gauges[p][1] if p in gauges else None,
                )
                for p in fleet.pods
            ),
        )
        cluster = ClusterSnapshot(
            tuple(
                PodState(
                    p.name,
                    node=p.node,
                    ready=p.serving,
                    serving=p.serving,
                    has_gate=True,
                    drained_by=None if p.serving else policy.name,
                    drained_at=p.drained_at,
                )
                for p in fleet.pods.values()
            ),
            {p.name: PodMeta(p.name, node=p.node) for p in fleet.pods.values()},
        )
        decision = decide(policy, cluster, metrics, memory, history, t)
        memory = remember(decision, decision.plan.actions)  # every simulated write succeeds
        for a in decision.plan.actions:
            pod = fleet.pods.get(a.pod)
            if pod is None:
                continue
            if a.kind == DRAIN:
                pod.serving, pod.drained_at = False, t
                history.append(ActionRecord(t, DRAIN, a.pod))
                mitigated(pod, t, "drain")
                fleet.changed()
            elif a.kind == RESTORE:
                pod.serving, pod.drained_at = True, None
                fleet.changed()
            elif a.kind == EVICT:
                history.append(ActionRecord(t, EVICT, a.pod))
                del fleet.pods[a.pod]
                fleet.changed()
                fleet.replacements += 1
                name = f"pod-r{fleet.replacements:02d}"
                fleet.pods[name] = Pod(name, pod.node, None, serving=False)
                counters[name] = [0.0, 0.0]
                at(t + sc.replacement_seconds, f"start:{name}")

    # --- outlier detection ----------------------------------------------------------------------
    detector = (
        OutlierDetector(sorted(fleet.pods), sc.proxies) if strategy == "outlier_detection" else None
    )
    if detector:
        at(detector.interval, "od-interval")
    proxy_rings: dict[tuple[int, frozenset[str]], Ring] = {}

    def route(r: Request) -> tuple[str, int]:
        proxy = r.session % sc.proxies
        if detector:
            ejected = detector.ejected(proxy)
            if ejected:
                key = (proxy, ejected)
                ring = proxy_rings.get(key)
                if ring is None:
                    hosts = [p for p in sorted(fleet.pods) if p not in ejected]
                    ring = proxy_rings[key] = Ring(hosts or sorted(fleet.pods))
                return ring.lookup(r.session_key), proxy
        return fleet.ring().lookup(r.session_key), proxy

    def fire(until: float) -> None:
        while timers and timers[0][0] <= until:
            t, _, kind = heapq.heappop(timers)
            if kind == "scrape":
                scraper.scrape(t, counters)
                at(t + SCRAPE_SECONDS, "scrape")
            elif kind == "evaluate":
                evaluate(t)
                at(t + policy.detection.interval_seconds, "evaluate")
            elif kind == "od-interval" and detector:
                for pod_name in detector.end_interval(t):
                    mitigated(fleet.pods[pod_name], t, "eject")
                at(t + detector.interval, "od-interval")
            elif kind.startswith("start:"):
                pod = fleet.pods.get(kind[6:])
                if pod:
                    pod.serving = True
                    fleet.changed()

    for r in requests:
        fire(r.t)
        pod_name, proxy = route(r)
        pod = fleet.pods[pod_name]
        p_fault, p_bad, visible = fleet.bad_probability(pod, r.t)
        bad = r.retry or r.coin < p_bad
        users.add(r.user)
        if bad:
            bad_total += 1
            any_bad.add(r.user)
            if r.coin < p_fault:
                fault_bad += 1
                affected.add(r.user)
        c = counters.get(pod_name)
        if c is not None:
            c[0] += 1
            c[1] += bad
            if sc.session_metrics:
                scraper.observe(pod_name, r.session, r.t, bad)
        if detector:
            ejected_now = detector.observe(proxy, pod_name, bad and visible, r.t)
            if ejected_now:
                mitigated(pod, r.t, "eject")
    n = len(requests)
    return Result(
        strategy,
        100.0 * len(affected) / max(1, len(users)),
        100.0 * fault_bad / max(1, n),
        detection,
        len(healthy_drained),
        len(drained_pods),
        len(users),
        n,
        100.0 * len(any_bad) / max(1, len(users)),
        100.0 * bad_total / max(1, n),
        log,
    )


def simulate(
    sc: Scenario,
    seed: int = 1,
    strategies: tuple[str, ...] = STRATEGIES,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Result]:
    requests = traffic(sc, seed)
    out = {}
    for s in strategies:
        if progress:
            progress(s)
        out[s] = run(sc, s, requests)
    return out
