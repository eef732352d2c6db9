"""A small node agent standing in for kubelet on fake nodes.

It registers Nodes, binds pending pods to them, runs the pods (marks them Running with a distinct
loopback podIP; in the demo a PodRuntime also starts a real process per pod), computes the
`Ready` condition from containers AND `spec.readinessGates` exactly as kubelet does, and finishes
deletions. It is driven by a watch, not by polling.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import json
import logging
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import urllib3
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

log = logging.getLogger("stickyguard.nodeagent")

# The API refuses loopback addresses in EndpointSlices, so pods get addresses from the RFC 2544
# benchmarking range. On the host nothing routes them (a host-side dial would leave through the
# default route: never do that); a pod's real process (demo) runs in the lab's pod network
# (stickyguard_lab.netns), where this range is local, and host tools reach it on the loopback
# twin of its podIP (198.18.a.b <-> 127.18.a.b), which the runtime forwards.
IP_POOL = ipaddress.ip_network("198.18.0.0/16")


def loopback_for(pod_ip: str) -> str:
    """The loopback address where the process of the pod with this podIP listens."""
    octets = pod_ip.split(".")
    return f"127.18.{octets[2]}.{octets[3]}"


AGENT_CONDITIONS = ("PodScheduled", "Initialized", "ContainersReady", "Ready")


def ready_condition(
    conditions: Iterable[Mapping[str, Any]],
    readiness_gates: Iterable[Mapping[str, Any]],
    containers_ready: bool,
) -> tuple[str, str, str]:
    """kubelet's rule: Ready iff all containers are ready and every readiness gate's condition
    exists with status True. Returns (status, reason, message)."""
    if not containers_ready:
        return "False", "ContainersNotReady", "containers with unready status"
    by_type = {c.get("type"): c.get("status") for c in conditions}
    missing = []
    not_true = []
    for gate in readiness_gates:
        ctype = gate.get("conditionType") or gate.get("condition_type")
        if ctype not in by_type:
            missing.append(ctype)
        elif by_type[ctype] != "True":
            not_true.append(ctype)
    if missing or not_true:
        parts = [
            f'corresponding condition of pod readiness gate "{c}" does not exist.' for c in missing
        ]
        parts += [
            f'the status of pod readiness gate "{c}" is not "True", but False.' for c in not_true
        ]
        return "False", "ReadinessGatesNotReady", " ".join(parts)
    return "True", "", ""


class PodRuntime(Protocol):
    """Runs the containers of a pod; the demo starts real processes, tests need none."""

    def start(self, pod: dict[str, Any], ip: str) -> None: ...
    def ready(self, pod: dict[str, Any]) -> bool: ...
    def stop(self, pod: dict[str, Any]) -> None: ...


class NoRuntime:
    """Containers that are ready at once and own no process."""

    def start(self, pod: dict[str, Any], ip: str) -> None:
        return None

    def ready(self, pod: dict[str, Any]) -> bool:
        return True

    def stop(self, pod: dict[str, Any]) -> None:
        return None


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _RawWatch(watch.Watch):  # type: ignore[misc]
    """Watch events as plain dicts: building client models for every event of 2,000 pods
    costs more CPU than everything else the agent does."""

    def get_return_type(self, func: Any) -> None:
        return None


class NodeAgent:
    def __init__(
        self,
        api: client.CoreV1Api,
        nodes: list[str],
        runtime: PodRuntime | None = None,
        zones: list[str] | None = None,
    ) -> None:
        self.api = api
        self.nodes = nodes
        self.zones = zones or [f"zone-{chr(ord('a') + i % 3)}" for i in range(len(nodes))]
        self.runtime = runtime or NoRuntime()
        self.ips: dict[str, str] = {}  # pod uid -> ip
        self.observed: dict[str, str] = {}  # pod uid -> ip the cluster shows
        self._cordon_cache: tuple[float, set[str]] = (0.0, set())
        self.load: dict[str, set[str]] = {n: set() for n in nodes}
        self.started: set[str] = set()
        self.stop_event = threading.Event()

    # -- nodes -----------------------------------------------------------------------------
    def register_nodes(self) -> None:
        for name, zone in zip(self.nodes, self.zones, strict=True):
            body = {
                "metadata": {
                    "name": name,
                    "labels": {
                        "kubernetes.io/hostname": name,
                        "topology.kubernetes.io/zone": zone,
                        "node.stickyguard.dev/fake": "true",
                    },
                },
            }
            try:
                self.api.create_node(body)
            except ApiException as e:
                if e.status != 409:
                    raise
            status = {
                "status": {
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "True",
                            "reason": "KubeletReady",
                            "message": "stickyguard node agent is posting ready status",
                            "lastHeartbeatTime": _now(),
                            "lastTransitionTime": _now(),
                        }
                    ],
                    "addresses": [
                        {"type": "InternalIP", "address": "127.0.0.1"},
                        {"type": "Hostname", "address": name},
                    ],
                    "capacity": {"cpu": "64", "memory": "256Gi", "pods": "1000"},
                    "allocatable": {"cpu": "64", "memory": "256Gi", "pods": "1000"},
                }
            }
            self.api.patch_node_status(name, status)

    # -- pods ------------------------------------------------------------------------------
    def _observe(self, pod: dict[str, Any]) -> None:
        """Records the IP the cluster shows for a pod on our nodes (list + watch keep this
        complete, as an informer cache would)."""
        ip = (pod.get("status") or {}).get("podIP")
        if ip and pod["spec"].get("nodeName") in self.nodes:
            self.observed[pod["metadata"]["uid"]] = ip

    def _ips_in_use(self, uid: str) -> set[str]:
        """IPs held by other live pods, from memory and from what the cluster shows: a lost or
        stale in-memory entry can never hand out an IP twice. (Listing every pod per
        allocation instead made 2,000 pods take hours.)"""
        used = {ip for u, ip in self.ips.items() if u != uid}
        return used | {ip for u, ip in self.observed.items() if u != uid}

    def _allocate_ip(self, uid: str, current: str | None) -> str:
        if uid in self.ips:
            return self.ips[uid]
        used = self._ips_in_use(uid)
        if current and current not in used:
            self.ips[uid] = current
            return current
        for host in IP_POOL.hosts():
            ip = str(host)
            if ip not in used and not ip.endswith(".0"):
                self.ips[uid] = ip
                log.info("pod %s gets %s", uid, ip)
                return ip
        raise RuntimeError("node agent: loopback IP pool exhausted")

    def _pick_node(self, pod: dict[str, Any]) -> str | None:
        wanted = (pod["spec"].get("nodeSelector") or {}).get("kubernetes.io/hostname")
        if wanted:
            return wanted if wanted in self.nodes else None
        # As the scheduler would: never onto a cordoned node.
        cordoned = self._cordoned()
        open_nodes = [n for n in self.nodes if n not in cordoned]
        return min(open_nodes, key=lambda n: (len(self.load[n]), n)) if open_nodes else None

    def _cordoned(self) -> set[str]:
        """Cordoned nodes, read at most once a second (binding 2,000 pods must not list the
        nodes 2,000 times)."""
        at, nodes = self._cordon_cache
        if time.monotonic() - at > 1.0:
            raw = self.api.list_node(_preload_content=False)
            nodes = {
                n["metadata"]["name"]
                for n in json.loads(raw.data)["items"]
                if (n.get("spec") or {}).get("unschedulable")
            }
            self._cordon_cache = (time.monotonic(), nodes)
        return nodes

    def _bind(self, pod: dict[str, Any]) -> None:
        node = self._pick_node(pod)
        if node is None:
            return
        meta = pod["metadata"]
        body = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": meta["name"], "uid": meta["uid"]},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        }
        try:
            # The generated client cannot deserialize a Binding reply; skip decoding it.
            self.api.create_namespaced_pod_binding(
                meta["name"], meta["namespace"], body, _preload_content=False
            )
            self.load[node].add(meta["uid"])
        except ApiException as e:
            if e.status not in (404, 409):
                raise

    def _finish_deletion(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        self.runtime.stop(pod)
        self._forget(meta["uid"])
        try:
            self.api.delete_namespaced_pod(
                meta["name"],
                meta["namespace"],
                body=client.V1DeleteOptions(
                    grace_period_seconds=0, preconditions=client.V1Preconditions(uid=meta["uid"])
                ),
            )
        except ApiException as e:
            if e.status not in (404, 409):
                raise

    def _forget(self, uid: str) -> None:
        self.ips.pop(uid, None)
        self.observed.pop(uid, None)
        self.started.discard(uid)
        for pods in self.load.values():
            pods.discard(uid)

    def desired_status(self, pod: dict[str, Any], ip: str) -> dict[str, Any]:
        status = pod.get("status") or {}
        containers_ready = self.runtime.ready(pod)
        ready, reason, message = ready_condition(
            status.get("conditions") or [],
            pod["spec"].get("readinessGates") or [],
            containers_ready,
        )
        old = {c["type"]: c for c in status.get("conditions") or []}

        def cond(ctype: str, value: str, reason: str = "", message: str = "") -> dict[str, Any]:
            prev = old.get(ctype, {})
            since = prev.get("lastTransitionTime") if prev.get("status") == value else _now()
            # None deletes a stale reason/message in the strategic merge patch.
            return {
                "type": ctype,
                "status": value,
                "lastTransitionTime": since or _now(),
                "reason": reason or None,
                "message": message or None,
            }

        started_at = status.get("startTime") or _now()
        cready = "True" if containers_ready else "False"
        return {
            "phase": "Running",
            "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "startTime": started_at,
            "conditions": [
                cond("PodScheduled", "True"),
                cond("Initialized", "True"),
                cond(
                    "ContainersReady",
                    cready,
                    *(
                        ("ContainersNotReady", "containers with unready status")
                        if cready == "False"
                        else ()
                    ),
                ),
                cond("Ready", ready, reason, message),
            ],
            "containerStatuses": [
                {
                    "name": c["name"],
                    "image": c.get("image", ""),
                    "imageID": "",
                    "containerID": f"lab://{pod['metadata']['uid']}/{c['name']}",
                    "ready": containers_ready,
                    "started": True,
                    "restartCount": 0,
                    "state": {"running": {"startedAt": started_at}},
                }
                for c in pod["spec"].get("containers", [])
            ],
        }

    @staticmethod
    def _differs(current: dict[str, Any], desired: dict[str, Any]) -> bool:
        if any(current.get(k) != desired[k] for k in ("phase", "podIP")):
            return True
        now = {
            c["type"]: (c.get("status"), c.get("reason", ""), c.get("message", ""))
            for c in current.get("conditions") or []
        }
        want = {
            c["type"]: (c["status"], c["reason"] or "", c["message"] or "")
            for c in desired["conditions"]
        }
        if any(now.get(t) != v for t, v in want.items()):
            return True
        ready_now = [s.get("ready") for s in current.get("containerStatuses") or []]
        return ready_now != [s["ready"] for s in desired["containerStatuses"]]

    def handle(self, pod: dict[str, Any]) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        node = spec.get("nodeName")
        if not node:
            if (
                not meta.get("deletionTimestamp")
                and spec.get("schedulerName", "default-scheduler") == "default-scheduler"
            ):
                self._bind(pod)
            return
        if node not in self.nodes:
            return
        self.load[node].add(meta["uid"])
        if meta.get("deletionTimestamp"):
            self._finish_deletion(pod)
            return
        status = pod.get("status") or {}
        if status.get("phase") in ("Succeeded", "Failed"):
            return
        ip = self._allocate_ip(meta["uid"], status.get("podIP"))
        if meta["uid"] not in self.started:
            self.runtime.start(pod, ip)
            self.started.add(meta["uid"])
        desired = self.desired_status(pod, ip)
        if self._differs(status, desired):
            try:
                self.api.patch_namespaced_pod_status(
                    meta["name"], meta["namespace"], {"status": desired}
                )
            except ApiException as e:
                if e.status != 404:
                    raise

    def refresh(self, namespace: str, name: str) -> None:
        """Re-evaluates one pod (the runtime calls this when a container's readiness changes)."""
        try:
            pod = self.api.read_namespaced_pod(name, namespace, _preload_content=False)
        except ApiException:
            return
        self.handle(json.loads(pod.data))

    # -- loop ------------------------------------------------------------------------------
    def run(self) -> None:
        self.register_nodes()
        while not self.stop_event.is_set():
            try:
                raw = self.api.list_pod_for_all_namespaces(_preload_content=False)
                listing = json.loads(raw.data)
                self.observed = {}
                for pod in listing["items"]:
                    self._observe(pod)  # every IP in use first, then allocate
                for pod in listing["items"]:
                    self._safe_handle(pod)
                self._watch(listing["metadata"]["resourceVersion"])
            except ApiException as e:
                if e.status == 410:
                    log.info("watch expired (410); relisting")
                else:
                    log.warning("apiserver: %s %s; relisting in 1s", e.status, e.reason)
                    self.stop_event.wait(1.0)
            except (OSError, urllib3.exceptions.HTTPError) as e:
                # Like kubelet, outlive an apiserver restart: relist once it answers again.
                log.warning("apiserver unavailable (%s); relisting in 1s", type(e).__name__)
                self.stop_event.wait(1.0)

    def _watch(self, rv: str) -> None:
        w = _RawWatch()
        while not self.stop_event.is_set():
            for event in w.stream(
                self.api.list_pod_for_all_namespaces,
                resource_version=rv,
                timeout_seconds=60,
                allow_watch_bookmarks=True,
                _request_timeout=90,
            ):
                obj = event["raw_object"]
                rv = obj["metadata"]["resourceVersion"]
                if event["type"] == "ERROR":
                    if obj.get("code") == 410:
                        raise ApiException(status=410)
                    continue
                if event["type"] == "BOOKMARK":
                    continue
                if event["type"] == "DELETED":
                    self.runtime.stop(obj)
                    self._forget(obj["metadata"]["uid"])
                    continue
                self._observe(obj)
                self._safe_handle(obj)
                if self.stop_event.is_set():
                    return

    def _safe_handle(self, pod: dict[str, Any]) -> None:
        try:
            self.handle(pod)
        except ApiException as e:
            log.warning(
                "pod %s/%s: API error %s: %s",
                pod["metadata"].get("namespace"),
                pod["metadata"].get("name"),
                e.status,
                e.reason,
            )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument(
        "--nodes",
        default="lab-node-0,lab-node-1,lab-node-2",
        help="comma-separated fake node names",
    )
    parser.add_argument(
        "--runtime",
        choices=["none", "demo"],
        default="none",
        help="demo: start one real demo-app process per pod",
    )
    parser.add_argument("--targets-dir", help="Prometheus file_sd directory (demo runtime)")
    parser.add_argument("--log-dir", default=".", help="pod logs (demo runtime)")
    parser.add_argument(
        "--netns", help="/proc/PID/ns/net of the pod network the pods run in (demo runtime)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    api = client.CoreV1Api(config.new_client_from_config(config_file=args.kubeconfig))
    runtime: PodRuntime | None = None
    if args.runtime == "demo":
        from pathlib import Path

        from stickyguard_lab.demoruntime import DemoRuntime
        from stickyguard_lab.netns import PodNetwork

        if not args.targets_dir or not args.netns:
            parser.error("--runtime demo needs --targets-dir and --netns")
        runtime = DemoRuntime(Path(args.targets_dir), Path(args.log_dir), PodNetwork(args.netns))
    NodeAgent(api, args.nodes.split(","), runtime).run()


if __name__ == "__main__":
    main()
