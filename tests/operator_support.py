"""Running the real operator in tests: as the shipped ServiceAccount, as a child process."""

from __future__ import annotations

from typing import Any

from kubernetes import client

from stickyguard.core.names import API_VERSION, GROUP, PLURAL, VERSION
from stickyguard_lab import testenv
from stickyguard_lab.exporter import SyntheticExporter
from support import gated_deployment, service, wait_for

GVR = (GROUP, VERSION, PLURAL)


def policy_body(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "selector": {"matchLabels": {"app": "web"}},
        "prometheus": {"window": "10s"},
        "detection": {"intervalSeconds": 5, "minRequests": 50, "consecutive": 2},
        "actions": {
            "mode": "Enforce",
            "drain": {"method": "ReadinessGate", "drainTimeoutSeconds": 10, "evict": True},
        },
        "safety": {"maxDrainedPercent": 25, "minReadyPods": 2, "cooldownSeconds": 0},
    }
    for key, value in spec.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return {
        "apiVersion": API_VERSION,
        "kind": "StickyPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": base,
    }


def get_policy(custom: client.CustomObjectsApi, ns: str, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = custom.get_namespaced_custom_object(GVR[0], GVR[1], ns, GVR[2], name)
    return obj


def condition(obj: dict[str, Any], ctype: str) -> dict[str, Any] | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c["type"] == ctype:
            return dict(c)
    return None


def events(
    core: client.CoreV1Api, ns: str, reason: str | None = None, kind: str = "StickyPolicy"
) -> list[Any]:
    """Events about objects of `kind` (the policy by default; actions are also posted on pods)."""
    items = core.list_namespaced_event(ns).items
    return [
        e
        for e in items
        if (reason is None or e.reason == reason) and e.involved_object.kind == kind
    ]


class Fleet:
    """A gated Deployment + Service, with a synthetic exporter scraped by the lab Prometheus."""

    def __init__(
        self,
        lab: testenv.LabEnv,
        core: client.CoreV1Api,
        apps: client.AppsV1Api,
        ns: str,
        replicas: int = 6,
        default_ratio: float = 0.001,
        scraped: str = "app=web",
    ) -> None:
        self.core, self.apps, self.ns = core, apps, ns
        apps.create_namespaced_deployment(ns, gated_deployment("web", replicas))
        core.create_namespaced_service(ns, service("web", {"app": "web"}))
        self.exporter = SyntheticExporter(ns, "web", default_ratio=default_ratio)
        self.exporter.register(lab.prometheus.targets_dir, ns)
        self.exporter.follow(core, scraped)  # pods it exports series for
        self.replicas = replicas

    def pods(self) -> list[Any]:
        return [
            p
            for p in self.core.list_namespaced_pod(self.ns, label_selector="app=web").items
            if not p.metadata.deletion_timestamp
        ]

    def ready(self) -> list[str]:
        return sorted(
            p.metadata.name
            for p in self.pods()
            if any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
        )

    def wait_all_ready(self, timeout: float = 60) -> list[str]:
        return wait_for(
            lambda: len(r := self.ready()) == self.replicas and r,
            timeout=timeout,
            what=f"{self.replicas} pods Ready",
        )

    def close(self) -> None:
        self.exporter.stop()


def cordon_policy(namespace: str) -> dict[str, Any]:
    """A policy that cordons the node holding the damage (drains without evicting, so the two
    bad pods stay on it), with room in its budgets for both drains."""
    return policy_body(
        "web",
        namespace,
        actions={"cordonNode": True, "drain": {"method": "ReadinessGate", "evict": False}},
        safety={"maxDrainedPercent": 50, "minReadyPods": 2, "cooldownSeconds": 0},
    )


def two_pods_on_one_node(fleet: Fleet) -> tuple[str, list[str]]:
    """A node and exactly two of our pods on it: the binding may put more of ours there, and
    marking them all bad could reach fleetWideFraction and rightly make it fleet-wide."""
    by_node: dict[str, list[str]] = {}
    for p in fleet.pods():
        by_node.setdefault(p.spec.node_name, []).append(p.metadata.name)
    node, on_node = next((n, ps) for n, ps in sorted(by_node.items()) if len(ps) >= 2)
    return node, sorted(on_node)[:2]


def create_policy(custom: client.CustomObjectsApi, body: dict[str, Any]) -> None:
    custom.create_namespaced_custom_object(
        GVR[0], GVR[1], body["metadata"]["namespace"], GVR[2], body
    )


class Story:
    """Given / when / then steps of operator tests, so a test reads as its scenario:

    story.given_policy(actions={"mode": "DryRun"})
    pods = story.given_pods_serving()
    story.when_pod_turns_bad(pods[0])
    story.then_drained(pods[0])
    story.then_event("WouldDrain")
    """

    def __init__(
        self,
        operator: Any,
        fleet: Fleet,
        custom: client.CustomObjectsApi,
        core: client.CoreV1Api,
        namespace: str,
    ) -> None:
        self.operator, self.fleet, self.custom, self.core = operator, fleet, custom, core
        self.namespace = namespace

    # given
    def given_policy(self, name: str = "web", **spec: Any) -> dict[str, Any]:
        body = policy_body(name, self.namespace, **spec)
        create_policy(self.custom, body)
        return body

    def given_pods_serving(self, timeout: float = 60) -> list[str]:
        """Every replica Ready (with the ReadinessGate method, the operator marks them)."""
        return self.fleet.wait_all_ready(timeout)

    # when
    def when_pod_turns_bad(self, pod: str, ratio: float = 0.2) -> None:
        self.fleet.exporter.set_ratio(pod, ratio)

    # then
    def then_drained(self, pod: str, timeout: float = 60) -> None:
        wait_for(
            lambda: pod not in self.fleet.ready(),
            timeout=timeout,
            what=f"{pod} drained",
            detail=self.operator.log,
        )

    def then_serving(self, pod: str, timeout: float = 30) -> None:
        wait_for(
            lambda: pod in self.fleet.ready(),
            timeout=timeout,
            what=f"{pod} serving",
            detail=self.operator.log,
        )

    def then_gone(self, pod: str, timeout: float = 60) -> None:
        wait_for(
            lambda: pod not in {p.metadata.name for p in self.fleet.pods()},
            timeout=timeout,
            what=f"{pod} evicted",
            detail=self.operator.log,
        )

    def then_event(self, reason: str, timeout: float = 15, kind: str = "StickyPolicy") -> list[Any]:
        """Waits for an Event (kopf posts them asynchronously) and returns them all."""
        found: list[Any] = wait_for(
            lambda: events(self.core, self.namespace, reason, kind),
            timeout=timeout,
            what=f"{reason} event",
        )
        return found

    def policy(self, name: str = "web") -> dict[str, Any]:
        return get_policy(self.custom, self.namespace, name)
