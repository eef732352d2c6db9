"""Leader election with a coordination.k8s.io Lease: with several replicas, only the holder acts.

The holder renews every `renew_seconds`; another replica takes over when the lease has not been
renewed for `duration_seconds`. Updates carry the resourceVersion, so two replicas racing for
an expired lease cannot both win.
"""

from __future__ import annotations

import datetime as dt
import logging
import socket
import threading
import time
import uuid
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from stickyguard.telemetry import LEADER

log = logging.getLogger("stickyguard.leader")


def _micro(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaseElector:
    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        name: str = "stickyguard-leader",
        duration_seconds: int = 15,
        renew_seconds: float = 5.0,
        identity: str | None = None,
    ) -> None:
        self.api = client.CoordinationV1Api(api)
        self.namespace, self.name = namespace, name
        self.duration, self.renew = duration_seconds, renew_seconds
        self.identity = identity or f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}"
        self._valid_until = 0.0
        self._stop = threading.Event()

    def is_leader(self) -> bool:
        return time.monotonic() < self._valid_until

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

    def try_acquire(self) -> bool:
        """One attempt to take or renew the lease; True when we hold it afterwards."""
        start, now = time.monotonic(), time.time()
        try:
            lease = self.api.read_namespaced_lease(self.name, self.namespace)
        except ApiException as e:
            if e.status != 404:
                raise
            self.api.create_namespaced_lease(self.namespace, self._body(now, 0, None))
            self._valid_until = start + self.duration
            return True
        spec = lease.spec
        holder = spec.holder_identity
        renewed = spec.renew_time.timestamp() if spec.renew_time else 0.0
        expired = now > renewed + (spec.lease_duration_seconds or self.duration)
        if holder != self.identity and not expired:
            self._valid_until = 0.0
            return False
        transitions = (spec.lease_transitions or 0) + (0 if holder == self.identity else 1)
        body = self._body(now, transitions, lease.metadata.resource_version)
        if holder == self.identity and spec.acquire_time:
            body["spec"]["acquireTime"] = _micro(spec.acquire_time.timestamp())
        self.api.replace_namespaced_lease(self.name, self.namespace, body)
        self._valid_until = start + self.duration
        return True

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
            LEADER.set(1.0 if now_leader else 0.0)
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
