"""stickyguard in front of the real Traefik v3: users' sticky sessions re-pin when a pod drains.

Everything is real: the control plane, the node agent running one demo-app process per pod in
the lab's pod network (pods answer at their EndpointSlice addresses), Prometheus scraping them,
Traefik v3.6 (built from the Go module proxy) with its Kubernetes Ingress provider, and the
operator as its shipped ServiceAccount. The Service, Ingress and Deployments are the files under
examples/traefik/, applied as they are.

Users with cookie jars request through Traefik's entrypoint all along. One pod turns bad (HTTP
200, wrong answers); stickyguard drains it; from the users' side the test shows that every
session pinned to it got a new cookie for a healthy pod at Traefik's first reload after the
drain, that no session on a healthy pod moved and that no request failed. Then, with
ReadinessGate, the pod is evicted and its replacement joins Traefik; with ServiceLabel, the pod
recovers and is restored. Re-pin figures are printed (and written to
$STICKYGUARD_TRAEFIK_RESULTS/<method>.json when set).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from operator_support import GVR
from stickyguard.core.names import SERVING, UNDRAIN
from stickyguard_lab import testenv
from stickyguard_lab.binaries import REPO_ROOT, find_peer
from stickyguard_lab.kubectl import apply
from stickyguard_lab.nodeagent import loopback_for
from stickyguard_lab.operatorproc import (
    OperatorProcess,
    install_crd,
    install_rbac,
    service_account_kubeconfig,
)
from stickyguard_lab.procs import Supervisor
from stickyguard_lab.stickyusers import Answer, Users, pinned_to, repin_report
from stickyguard_lab.traefik import Traefik, start_traefik
from support import wait_for

pytestmark = pytest.mark.integration

EXAMPLES = REPO_ROOT / "examples" / "traefik"
COOKIE = "shop_route"  # examples/traefik/service-*.yaml
SESSIONS = 24
ANSWERS = 'app_answers_total{namespace="{namespace}",{selector}'  # a template for the operator


@dataclass
class TraefikLab:
    env: testenv.LabEnv
    traefik: Traefik
    operator: OperatorProcess
    core: client.CoreV1Api
    custom: client.CustomObjectsApi
    discovery: client.DiscoveryV1Api


@pytest.fixture(scope="module")
def tlab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TraefikLab]:
    find_peer("traefik")  # builds it through hack/build-peers.sh unless cached
    work = tmp_path_factory.mktemp("traefik")
    env = testenv.up(work / "env", runtime="demo")
    sup = Supervisor(work)
    try:
        install_crd(env)
        install_rbac(env)
        sa = service_account_kubeconfig(env, work / "sa.kubeconfig")
        op = OperatorProcess(sup, sa, env.prometheus.url)
        op.start()
        traefik = start_traefik(env, sup, access_log=True)
        api = config.new_client_from_config(config_file=str(env.kubeconfig))
        yield TraefikLab(
            env,
            traefik,
            op,
            client.CoreV1Api(api),
            client.CustomObjectsApi(api),
            client.DiscoveryV1Api(api),
        )
    finally:
        sup.stop_all()
        env.down()


def lab_policy_patch(method: str) -> dict[str, Any]:
    """What the lab changes in examples/traefik/stickypolicy.yaml: the demo app's metrics, and
    detection timings short enough for a test."""
    total = f"sum by ({{pod_label}}) (rate({ANSWERS}}}[{{window}}]))"
    bad = f'sum by ({{pod_label}}) (rate({ANSWERS},quality="degraded"}}[{{window}}]))'
    return {
        "spec": {
            "prometheus": {
                "preset": "custom",
                "window": "20s",
                "queries": {
                    "total": total,
                    "bad": bad,
                    "totalCounter": f"sum by ({{pod_label}}) ({ANSWERS}}})",
                    "badCounter": f'sum by ({{pod_label}}) ({ANSWERS},quality="degraded"}})',
                },
            },
            "detection": {"intervalSeconds": 5, "minRequests": 30},
            "actions": {
                "drain": {
                    "method": method,
                    "drainTimeoutSeconds": 10,
                    "evict": method == "ReadinessGate",
                }
            },
            "safety": {"cooldownSeconds": 0},
        }
    }


@dataclass
class Sample:
    t: float
    reloads: int
    servers: frozenset[str]  # Traefik's load balancer for the Service
    serving: frozenset[str]  # pods the EndpointSlice marks serving


@dataclass
class Timeline:
    """Polls Traefik (reload count, servers) and the EndpointSlice every ~50 ms."""

    lab: TraefikLab
    namespace: str
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def serving(self) -> frozenset[str]:
        return frozenset(
            ep.target_ref.name
            for s in self.lab.discovery.list_namespaced_endpoint_slice(
                self.namespace, label_selector="kubernetes.io/service-name=shop"
            ).items
            for ep in s.endpoints or []
            if ep.target_ref and (ep.conditions is None or ep.conditions.serving is not False)
        )

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                # This order makes each sample consistent with causality (EndpointSlice change,
                # then Traefik's reload, then its server list): a server list read first and
                # missing a pod implies the reload count read next includes the reload that
                # dropped it, and the slice read last is at least as new as that reload's input.
                servers = frozenset(self.lab.traefik.servers(self.namespace, "shop"))
                reloads = self.lab.traefik.reloads()
                serving = self.serving()
                self.samples.append(Sample(time.time(), reloads, servers, serving))
            except OSError:
                pass
            self._stop.wait(0.05)

    def start(self) -> Timeline:
        threading.Thread(target=self._run, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def drained(self, pod: str) -> Sample | None:
        seen = False
        for s in list(self.samples):
            seen = seen or pod in s.serving
            if seen and pod not in s.serving:
                return s
        return None

    def before(self, sample: Sample) -> Sample:
        """The sample just before `sample` (the last state before a change)."""
        samples = list(self.samples)
        i = next(i for i, s in enumerate(samples) if s is sample)
        return samples[max(0, i - 1)]

    def left_traefik(self, url: str, after: Sample) -> Sample | None:
        """The first sample, from `after` on, where Traefik no longer lists `url`."""
        return next(
            (s for s in list(self.samples) if s.t >= after.t and url not in s.servers), None
        )


def ready_pods(core: client.CoreV1Api, ns: str) -> dict[str, str]:
    """Ready, not deleted pods -> podIP."""
    return {
        p.metadata.name: p.status.pod_ip
        for p in core.list_namespaced_pod(ns, label_selector="app=shop").items
        if not p.metadata.deletion_timestamp
        and p.status.pod_ip
        and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
    }


def fault(pod_ip: str, rate: float) -> None:
    # The pod's host-side twin (a forward into the pod network), never the pod IP from the host.
    url = f"http://{loopback_for(pod_ip)}:8080/fault?rate={rate}"
    with urllib.request.urlopen(url, timeout=5) as r:
        r.read()


def fresh_session_reaches(traefik: Traefik, pod: str, tries: int = 24) -> bool:
    """Whether a new session (empty cookie jar) can be pinned to `pod`: Traefik balances new
    sessions round robin, so a few tries reach every server."""
    for i in range(tries):
        users = Users("127.0.0.1", traefik.port, COOKIE, sessions=1, interval=10.0)
        users.start(first=10_000 + i)
        wait_for(lambda u=users: u.snapshot(), timeout=10, what="a fresh session's answer")
        answers = users.stop()
        if answers[0].pod == pod:
            return True
    return False


def check_no_session_moved(answers: list[Answer], since: float, until: float) -> list[int]:
    """Sessions whose pod changed between `since` and `until` (none should)."""
    before = pinned_to(answers, since)
    moved = []
    for s, pod in before.items():
        later = {a.pod for a in answers if a.session == s and since <= a.started <= until and a.pod}
        if later - {pod}:
            moved.append(s)
    return moved


def remove_namespace(lab: TraefikLab, ns: str) -> None:
    """Deletes a test's namespace and waits until Traefik routes nothing there any more: the
    examples' Ingress matches every path, so a terminating namespace's Ingress would take the
    next test's users to pods that are shutting down (seen: 502s at the next test's start)."""
    lab.core.delete_namespace(ns)
    wait_for(
        lambda: not any(svc["name"].startswith(f"{ns}-") for svc in lab.traefik.services()),
        timeout=60,
        what=f"Traefik forgetting namespace {ns}",
    )


def failures(lab: TraefikLab, answers: list[Answer], drained_at: float) -> str:
    """What failed, for the assertion message: the users' view and Traefik's access log."""
    lines = [
        f"session {a.session} at drain{a.started - drained_at:+.3f}s: status {a.status} "
        f"pod {a.pod or '-'} {a.body[:80]!r}"
        for a in answers
        if a.failed
    ]
    lines += [
        json.dumps(
            {
                k: e.get(k)
                for k in (
                    "time",
                    "DownstreamStatus",
                    "OriginStatus",
                    "ServiceURL",
                    "Duration",
                    "OriginDuration",
                    "RequestCount",
                )
            }
        )
        for e in lab.traefik.access_entries()
        if int(e.get("DownstreamStatus") or 0) >= 500
    ]
    return "\n".join(lines)


@pytest.mark.parametrize("method", ["ReadinessGate", "ServiceLabel"])
def test_traefik_repins_sessions_of_a_drained_pod(tlab: TraefikLab, method: str) -> None:
    core, custom, kc = tlab.core, tlab.custom, tlab.env.kubeconfig
    kubectl_bin = tlab.env.binaries.kubectl
    ns = f"traefik-{method.lower()}"
    core.create_namespace({"metadata": {"name": ns}})
    suffix = method.lower()
    for f in (f"deployment-{suffix}.yaml", f"service-{suffix}.yaml", "ingress.yaml"):
        apply(kubectl_bin, kc, EXAMPLES / f, namespace=ns)
    apply(kubectl_bin, kc, EXAMPLES / "stickypolicy.yaml", namespace=ns)
    custom.patch_namespaced_custom_object(
        GVR[0], GVR[1], ns, GVR[2], "shop", lab_policy_patch(method)
    )
    pods = wait_for(
        lambda: len(r := ready_pods(core, ns)) == 4 and r,
        timeout=90,
        what=f"4 ready pods\n{tlab.operator.log()}",
    )
    wait_for(
        lambda: len(tlab.traefik.servers(ns, "shop")) == 4,
        timeout=30,
        what="4 servers in Traefik",
        detail=lambda: tlab.traefik.services(),
    )
    timeline = Timeline(tlab, ns).start()
    users = Users("127.0.0.1", tlab.traefik.port, COOKIE, sessions=SESSIONS).start()
    results: dict[str, Any] = {"method": method}
    try:
        # Every session pinned; stickiness holds on healthy traffic.
        wait_for(
            lambda: len(pinned_to(users.snapshot(), time.time())) == SESSIONS,
            timeout=30,
            what="every session answered",
        )
        time.sleep(15)  # a few evaluations of healthy traffic first
        settled = time.time()
        pinned = pinned_to(users.snapshot(), settled)
        assert set(pinned.values()) <= set(pods), "sessions are pinned to the Service's pods"
        assert not check_no_session_moved(users.snapshot(), settled - 10, settled), (
            "Traefik's cookie keeps each session on its pod"
        )
        per_pod = {p: sum(1 for v in pinned.values() if v == p) for p in pods}
        bad = max(sorted(per_pod), key=lambda p: per_pod[p])
        assert per_pod[bad] > 0
        fault(pods[bad], 0.3)
        fault_at = time.time()

        drained = wait_for(
            lambda: timeline.drained(bad),
            timeout=120,
            what=f"{bad} drained out of the EndpointSlice\n{tlab.operator.log()}",
        )
        bad_url = f"http://{pods[bad]}:8080"
        reload = wait_for(
            lambda: timeline.left_traefik(bad_url, drained), timeout=30, what="Traefik dropped it"
        )
        # The drain happened between the last sample that still saw the pod serving and
        # `drained` (a sample's reads take time on a busy machine, and Traefik may reload and
        # re-pin a session inside that gap), so the last serving sample is the reference.
        still_served = timeline.before(drained)
        # One reload: Traefik applied exactly one configuration between the last state where
        # the EndpointSlice still served the pod and the first where Traefik no longer lists it.
        assert reload.reloads - still_served.reloads == 1
        assert len(reload.servers) == 3
        # Every session on the bad pod re-pins at its first request after that reload.
        time.sleep(3 * users.interval + 1)
        report = repin_report(users.snapshot(), bad, still_served.t, reload.t)
        results["drain"] = {
            **report.as_dict(),
            "fault_to_drain_s": round(drained.t - fault_at, 1),
            "drain_to_reload_s": round(reload.t - still_served.t, 3),
        }
        print(f"\n[traefik {method}] {json.dumps(results['drain'])}")
        assert report.sessions_on_bad == per_pod[bad]
        assert report.stuck == [], "every session on the bad pod got a healthy pod"
        assert report.repinned == per_pod[bad]
        assert report.bad_after_reload == 0, "nothing reached the bad pod after the reload"
        # Within one reload: the re-pin lands on the first request after Traefik's reload.
        assert report.delay_max is not None
        assert report.delay_max <= (reload.t - still_served.t) + users.interval + 1.0
        assert report.moved_unnecessarily == []
        assert report.failed_requests == 0, failures(tlab, users.snapshot(), still_served.t)

        if method == "ReadinessGate":
            # Evicted after drainTimeoutSeconds; the Deployment's replacement joins Traefik.
            wait_for(
                lambda: bad not in {p.metadata.name for p in core.list_namespaced_pod(ns).items},
                timeout=90,
                what=f"{bad} evicted\n{tlab.operator.log()}",
            )
            after = wait_for(
                lambda: len(r := ready_pods(core, ns)) == 4 and r,
                timeout=90,
                what="the replacement ready",
            )
            (new,) = set(after) - set(pods)
            wait_for(
                lambda: f"http://{after[new]}:8080" in tlab.traefik.servers(ns, "shop"),
                timeout=30,
                what="the replacement in Traefik",
            )
            assert fresh_session_reaches(tlab.traefik, new), "new sessions reach the replacement"
        else:
            # The fault is fixed and a person asks for the pod back: it rejoins Traefik.
            fault(pods[bad], 0.0)
            core.patch_namespaced_pod(bad, ns, {"metadata": {"annotations": {UNDRAIN: "true"}}})
            wait_for(
                lambda: bad_url in tlab.traefik.servers(ns, "shop"),
                timeout=60,
                what=f"{bad} restored into Traefik\n{tlab.operator.log()}",
            )
            pod = core.read_namespaced_pod(bad, ns)
            assert pod.metadata.labels.get(SERVING) == "true"
            assert fresh_session_reaches(tlab.traefik, bad), "new sessions reach the restored pod"
        time.sleep(2)
        end = time.time()
        answers = users.stop()
        # Through eviction/restore too: nobody moved after re-pinning, nothing failed.
        assert check_no_session_moved(answers, still_served.t + report.delay_max + 0.5, end) == []
        failed = [a for a in answers if a.failed]
        assert failed == [], failures(tlab, answers, drained.t)
        results["total_requests"] = len(answers)
        results["failed_requests"] = len(failed)
    finally:
        users.stop()
        timeline.stop()
        out = os.environ.get("STICKYGUARD_TRAEFIK_RESULTS")
        if out:
            Path(out).mkdir(parents=True, exist_ok=True)
            (Path(out) / f"{suffix}.json").write_text(json.dumps(results, indent=2) + "\n")
        remove_namespace(tlab, ns)


def doctor_affinity(lab: TraefikLab, ns: str) -> dict[str, str]:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "stickyguard",
            "doctor",
            f"--kubeconfig={lab.env.kubeconfig}",
            f"--prometheus-url={lab.env.prometheus.url}",
            "-n",
            ns,
            "shop",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode in (0, 1), out.stderr
    check: dict[str, str] = next(c for c in json.loads(out.stdout) if c["name"] == "affinity")
    return check


def test_traefik_reads_stickiness_from_the_service_and_doctor_knows(tlab: TraefikLab) -> None:
    """On the real controller: the sticky annotation on the Ingress pins nobody; on the Service
    it does. `stickyguard doctor` says the same."""
    core, kc, kubectl_bin = tlab.core, tlab.env.kubeconfig, tlab.env.binaries.kubectl
    ns = "traefik-doctor"
    core.create_namespace({"metadata": {"name": ns}})
    try:
        for f in ("deployment-servicelabel.yaml", "service-servicelabel.yaml", "ingress.yaml"):
            apply(kubectl_bin, kc, EXAMPLES / f, namespace=ns)
        apply(kubectl_bin, kc, EXAMPLES / "stickypolicy.yaml", namespace=ns)
        wait_for(lambda: len(tlab.traefik.servers(ns, "shop")) == 4, timeout=60, what="4 servers")
        sticky = {
            k: v
            for k, v in (
                core.read_namespaced_service("shop", ns).metadata.annotations or {}
            ).items()
            if k.startswith("traefik.ingress.kubernetes.io/service.sticky")
        }
        assert sticky

        def pods_seen(requests: int = 8) -> tuple[set[str], bool]:
            users = Users("127.0.0.1", tlab.traefik.port, COOKIE, sessions=1, interval=0.05)
            users.start()
            wait_for(lambda: len(users.snapshot()) >= requests, timeout=20, what="answers")
            answers = users.stop()[:requests]
            return {a.pod for a in answers}, any(a.new_cookie for a in answers)

        # As shipped (on the Service): one pod per session, a cookie, doctor passes.
        pods, cookie = pods_seen()
        assert len(pods) == 1 and cookie
        assert doctor_affinity(tlab, ns)["result"] == "pass"

        # Moved to the Ingress: Traefik ignores it (round robin, no cookie); doctor warns.
        net = client.NetworkingV1Api(config.new_client_from_config(config_file=str(kc)))
        net.patch_namespaced_ingress("shop", ns, {"metadata": {"annotations": sticky}})
        core.patch_namespaced_service(
            "shop", ns, {"metadata": {"annotations": dict.fromkeys(sticky)}}
        )

        def unpinned() -> bool:
            pods, cookie = pods_seen()
            return len(pods) > 1 and not cookie

        wait_for(unpinned, timeout=15, what="Traefik without stickiness")
        check = doctor_affinity(tlab, ns)
        assert check["result"] == "warn"
        assert "Service" in check["fix"]
    finally:
        remove_namespace(tlab, ns)
