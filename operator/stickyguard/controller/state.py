"""The operator process's state: its Kubernetes client, the default Prometheus URL, leadership,
each policy's memory between evaluations (only the leader's is ever used to act), and the
watch cache of every policy (kept on every replica: the gate answers from it, and overlapping
policies are resolved with it)."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client

from stickyguard.adapters.kube_client import build_api_client, build_in_cluster
from stickyguard.adapters.kube_reads import node_zones
from stickyguard.adapters.lease import LeaseElector
from stickyguard.controller import telemetry
from stickyguard.core.cycle import Memory
from stickyguard.core.ownership import PolicyRef

NODE_CACHE_SECONDS = 60.0
PolicyKey = tuple[str, str]  # (namespace, name)


@dataclass(frozen=True)
class WebhookConfig:
    port: int
    certfile: str
    keyfile: str
    host: str = "127.0.0.1"


@dataclass(frozen=True)
class Published:
    """A policy as the watch cache holds it: who it is, and what its status says."""

    ref: PolicyRef
    status: dict[str, Any]
    interval: float
    guarded: bool  # it has a workloadRef


@dataclass
class OperatorState:
    """Process-wide state: clients, the default Prometheus URL and per-policy memory."""

    api: client.ApiClient
    prometheus_url: str | None
    memory: dict[PolicyKey, Memory] = field(default_factory=dict)
    last_run: dict[PolicyKey, float] = field(default_factory=dict)
    zones: tuple[float, dict[str, str]] = (0.0, {})
    lock: threading.Lock = field(default_factory=threading.Lock)
    leader: LeaseElector | None = None
    webhook: WebhookConfig | None = None
    # Every policy, from kopf's watch on every replica (not only the leader's evaluations).
    policies: dict[PolicyKey, Published] = field(default_factory=dict)
    cache_lock: threading.Lock = field(default_factory=threading.Lock)

    def acting(self) -> bool:
        return self.leader is None or self.leader.is_leader()

    def fence(self) -> None:
        """Raises NotLeader unless this replica may write right now: called immediately before
        every write the operator makes, so a replica that lost its lease mid-cycle (paused,
        partitioned) stops at its next write instead of finishing the cycle."""
        if self.leader is not None:
            self.leader.fence()

    def node_zones(self) -> dict[str, str]:
        with self.lock:
            at, zones = self.zones
            if time.time() - at > NODE_CACHE_SECONDS:
                zones = node_zones(client.CoreV1Api(self.api))
                self.zones = (time.time(), zones)
            return zones

    def due(self, key: PolicyKey, interval: float, now: float) -> bool:
        """Whether the policy is evaluated at this tick. Not acting (a standby, or a leader
        whose lease ran out), it drops the policy's memory: a new term as leader starts from no
        evidence, never from a track built on what another replica did meanwhile. The schedule
        keeps to `interval` (each 1 s tick is a little late) and restarts when a run was
        missed altogether (leadership gained, a long stall)."""
        if not self.acting():
            self.memory.pop(key, None)
            return False
        due = self.last_run.get(key, 0.0) + interval
        if now < due:
            return False
        self.last_run[key] = due if now - due < interval else now
        return True

    def forget(self, key: PolicyKey) -> None:
        self.memory.pop(key, None)
        self.last_run.pop(key, None)

    def publish(self, key: PolicyKey, entry: Published | None) -> None:
        with self.cache_lock:
            if entry is None:
                self.policies.pop(key, None)
            else:
                self.policies[key] = entry

    def published(self) -> dict[PolicyKey, Published]:
        with self.cache_lock:
            return dict(self.policies)


STATE: OperatorState | None = None


def configure(kubeconfig: str | None, prometheus_url: str | None) -> OperatorState:
    global STATE
    if kubeconfig:
        os.environ["KUBECONFIG"] = kubeconfig
    api = build_api_client(kubeconfig) if kubeconfig else build_in_cluster()
    telemetry.count_kube_requests(api)
    STATE = OperatorState(api=api, prometheus_url=prometheus_url)
    return STATE


def state() -> OperatorState:
    if STATE is None:
        raise RuntimeError("stickyguard.controller.state.configure() was not called")
    return STATE
