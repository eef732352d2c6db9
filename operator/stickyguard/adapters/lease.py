"""Leader election with a coordination.k8s.io Lease: with several replicas, only the holder acts.

Fencing, in three parts:
- the holder counts its term from *before* the renewal it sent, on its own monotonic clock,
  and stops acting `margin_seconds` before the lease can expire as anyone else sees it;
- a candidate never compares `renewTime` with its own wall clock (clocks skew): it times
  expiry from the moment *it* saw the lease's resourceVersion change, on its monotonic clock,
  so it waits at least a full `leaseDurationSeconds` after the holder's last renewal landed;
- callers check `is_leader()` (or call `fence()`) immediately before every write, not once
  per cycle, so a replica paused mid-cycle (GC, SIGSTOP, a stalled node) writes nothing once
  it resumes after its term.

Updates carry the resourceVersion, so two replicas racing for an expired lease cannot both win.
On shutdown the holder releases the lease (holder emptied) so a standby takes over at once.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

log = logging.getLogger("stickyguard.adapters.lease")
CONFLICT_RETRIES = 3


class NotLeader(RuntimeError):
    """Raised by `fence()`: this replica must not write (it is, or may soon be, not the leader)."""


class LeaseSetupError(RuntimeError):
    """The Lease cannot be used at all (its namespace is missing, or access is denied)."""


def _micro(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Observation:
    """A candidate's view of someone else's lease: which version it saw, and when (its own
    monotonic clock). Pure bookkeeping, unit-tested with a fake clock."""

    version: str = ""
    seen_at: float = 0.0

    def update(self, version: str, now: float) -> None:
        if version != self.version:
            self.version, self.seen_at = version, now

    def expired(self, duration: float, now: float) -> bool:
        return self.version != "" and now - self.seen_at > duration


class LeaseElector:
    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        name: str = "stickyguard-leader",
        duration_seconds: int = 15,
        renew_seconds: float = 5.0,
        identity: str | None = None,
        on_change: Callable[[bool], None] | None = None,
        margin_seconds: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.on_change = on_change  # told after every attempt whether we lead
        self.api = client.CoordinationV1Api(api)
        self.namespace, self.name = namespace, name
        self.duration, self.renew = duration_seconds, renew_seconds
        # Stop acting this long before others may take over: covers a write that passed the
        # fence and is still on its way to the apiserver. A third of the term by default.
        self.margin = duration_seconds / 3 if margin_seconds is None else margin_seconds
        self.identity = identity or f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}"
        self.clock = clock
        self._valid_until = 0.0
        self._observed = Observation()
        self._stop = threading.Event()
        self._lock = threading.Lock()

    def is_leader(self) -> bool:
        return self.clock() < self._valid_until

    def fence(self) -> None:
        """Raises NotLeader unless this replica may write now. Call it right before a write."""
        if not self.is_leader():
            raise NotLeader(f"{self.identity} does not hold lease {self.namespace}/{self.name}")

    def _body(self, now: float, transitions: int, rv: str | None) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if rv:
            meta["resourceVersion"] = rv
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": meta,
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": self.duration,
                "acquireTime": _micro(now),
                "renewTime": _micro(now),
                "leaseTransitions": transitions,
            },
        }

    def _won(self, start: float) -> bool:
        self._valid_until = start + self.duration - self.margin
        return True

    def try_acquire(self) -> bool:
        """One attempt to take or renew the lease; True when we hold it afterwards. A write
        that lost a race (409: someone else changed the Lease since we read it) is retried at
        once with a fresh read; the term still counts from before the first read."""
        start = self.clock()
        with self._lock:
            for _ in range(CONFLICT_RETRIES):
                try:
                    return self._try_acquire(start)
                except ApiException as e:
                    if e.status != 409:
                        raise
            return self.is_leader()

    def _try_acquire(self, start: float) -> bool:
        now = time.time()
        try:
            lease = self.api.read_namespaced_lease(self.name, self.namespace)
        except ApiException as e:
            if e.status != 404:
                raise
            self.api.create_namespaced_lease(self.namespace, self._body(now, 0, None))
            return self._won(start)
        spec = lease.spec
        holder = spec.holder_identity or ""
        if holder != self.identity:
            self._valid_until = 0.0
            if holder:
                # Expiry by our own observation: how long since *we* saw the lease change.
                self._observed.update(str(lease.metadata.resource_version), self.clock())
                duration = float(spec.lease_duration_seconds or self.duration)
                if not self._observed.expired(duration, self.clock()):
                    return False
        transitions = (spec.lease_transitions or 0) + (0 if holder == self.identity else 1)
        body = self._body(now, transitions, lease.metadata.resource_version)
        if holder == self.identity and spec.acquire_time:
            body["spec"]["acquireTime"] = _micro(spec.acquire_time.timestamp())
        self.api.replace_namespaced_lease(self.name, self.namespace, body)
        return self._won(start)

    def check_setup(self) -> None:
        """One synchronous attempt at start-up; raises LeaseSetupError when the Lease cannot
        work at all (missing namespace, no access), so `run` can exit with a clear message
        instead of idling forever."""
        try:
            self.try_acquire()
        except ApiException as e:
            if e.status == 404 and _details_kind(e) == "namespaces":
                raise LeaseSetupError(
                    f"the Lease namespace {self.namespace!r} does not exist"
                ) from e
            if e.status == 403:
                raise LeaseSetupError(
                    f"not allowed to use Leases in namespace {self.namespace!r}: {e.reason}"
                ) from e
            log.warning("lease %s/%s: %s %s", self.namespace, self.name, e.status, e.reason)
        except Exception as e:  # unreachable apiserver: not a setup error, the loop retries
            log.warning("lease %s/%s: %s", self.namespace, self.name, str(e)[:200])

    def release(self) -> None:
        """Gives the lease up (holder emptied) if we hold it, so a standby need not wait for it
        to expire. We stop acting first."""
        with self._lock:
            held = self.is_leader()
            self._valid_until = 0.0
            if not held:
                return
            try:
                lease = self.api.read_namespaced_lease(self.name, self.namespace)
                if (lease.spec.holder_identity or "") != self.identity:
                    return
                body = self._body(time.time(), lease.spec.lease_transitions or 0, None)
                body["metadata"]["resourceVersion"] = lease.metadata.resource_version
                body["spec"]["holderIdentity"] = None
                body["spec"]["leaseDurationSeconds"] = 1
                self.api.replace_namespaced_lease(self.name, self.namespace, body)
                log.info("released lease %s/%s", self.namespace, self.name)
            except Exception as e:  # best effort: otherwise it simply expires
                log.warning("releasing lease %s/%s: %s", self.namespace, self.name, str(e)[:200])

    def run(self) -> None:
        was = False
        while not self._stop.is_set():
            try:
                now_leader = self.try_acquire()
            except ApiException as e:
                log.warning("lease %s/%s: %s %s", self.namespace, self.name, e.status, e.reason)
                now_leader = self.is_leader()
            except Exception as e:  # apiserver unreachable: keep trying, never let the thread die
                log.warning("lease %s/%s: %s", self.namespace, self.name, str(e)[:200])
                now_leader = self.is_leader()
            if self.on_change is not None:
                self.on_change(now_leader)
            if now_leader != was:
                log.info(
                    "%s leadership of %s/%s",
                    "acquired" if now_leader else "lost",
                    self.namespace,
                    self.name,
                )
                was = now_leader
            self._stop.wait(self.renew)

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="lease", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()


def _details_kind(e: ApiException) -> str:
    """The `details.kind` of a Status body (typed, unlike its message)."""
    try:
        body = json.loads(e.body or "{}")
    except (TypeError, ValueError):
        return ""
    details = body.get("details") if isinstance(body, dict) else None
    return str(details.get("kind", "")) if isinstance(details, dict) else ""
