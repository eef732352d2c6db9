"""Guarding an Argo Rollouts Rollout on plain data: the Rollout and its ReplicaSets read into
the guard's Workload, cohorts by rollouts-pod-template-hash, and a guard that judges but never
acts (Argo pauses or aborts on the gate's verdict)."""

from __future__ import annotations

from typing import Any

import pytest

from planner_fixtures import NOW, policy
from policies import minimal
from stickyguard.adapters.argo_rollout import workload_from_rollout
from stickyguard.core.analysis import PodMeta, PodSample
from stickyguard.core.doctor_checks import required_access
from stickyguard.core.names import POD_TEMPLATE_HASH, ROLLOUTS_POD_TEMPLATE_HASH
from stickyguard.core.policy import PolicyError, parse_policy
from stickyguard.core.rollout import (
    FAIL,
    INCONCLUSIVE,
    PASS,
    GuardMemory,
    decide,
    judge,
    latched,
    remember,
)


def rs(pod_hash: str, revision: int, replicas: int, available: int) -> dict[str, Any]:
    return {
        "metadata": {
            "labels": {ROLLOUTS_POD_TEMPLATE_HASH: pod_hash},
            "annotations": {"rollout.argoproj.io/revision": str(revision)},
        },
        "spec": {"replicas": replicas},
        "status": {
            "replicas": replicas,
            "readyReplicas": available,
            "availableReplicas": available,
        },
    }


def rollout(current: str, stable: str, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "shop"},
        "spec": {"replicas": 4},
        "status": {"currentPodHash": current, "stableRS": stable, **status},
    }


CANARY = [rs("aaa", 1, 2, 2), rs("bbb", 2, 2, 2)]


def test_a_canary_in_progress_is_a_rolling_workload_with_the_rollouts_hash() -> None:
    w = workload_from_rollout(rollout("bbb", "aaa"), CANARY)
    assert w is not None
    assert (w.kind, w.hash_label, w.new_hash, w.revision) == (
        "Rollout",
        ROLLOUTS_POD_TEMPLATE_HASH,
        "bbb",
        "2",
    )
    assert w.rolling and not w.complete and not w.paused and w.new_ready == 2
    assert [r.hash for r in w.revisions] == ["aaa", "bbb"]


def test_a_paused_or_finished_rollout() -> None:
    paused = workload_from_rollout(
        rollout("bbb", "aaa", pauseConditions=[{"reason": "InconclusiveAnalysisRun"}]), CANARY
    )
    assert paused is not None and paused.paused
    done = workload_from_rollout(rollout("bbb", "bbb"), [rs("aaa", 1, 0, 0), rs("bbb", 2, 4, 4)])
    assert done is not None and done.complete and not done.rolling


def test_new_hash_falls_back_to_the_newest_replicaset() -> None:
    w = workload_from_rollout({"metadata": {"name": "shop"}, "spec": {}}, CANARY)
    assert w is not None and w.new_hash == "bbb"
    assert workload_from_rollout(rollout("x", "x"), []) is None


def fleet(new_ratio: float) -> tuple[list[PodSample], dict[str, PodMeta]]:
    samples, meta = [], {}
    for i in range(6):
        new = i < 2
        name = f"pod-{i}"
        samples.append(PodSample(name, 1000, 1000 * (new_ratio if new else 0.001)))
        # A Rollout's pods carry only Argo's hash label.
        meta[name] = PodMeta(name, labels={ROLLOUTS_POD_TEMPLATE_HASH: "bbb" if new else "aaa"})
    return samples, meta


def test_cohorts_follow_the_workloads_hash_label() -> None:
    v = judge(policy(), *fleet(0.1), "bbb", ROLLOUTS_POD_TEMPLATE_HASH)
    assert v.verdict == FAIL and (v.new.pods, v.old.pods) == (2, 4)
    # By the Deployment label nobody is new: nothing to compare, never a fail.
    assert judge(policy(), *fleet(0.1), "bbb", POD_TEMPLATE_HASH).verdict == INCONCLUSIVE
    assert judge(policy(), *fleet(0.001), "bbb", ROLLOUTS_POD_TEMPLATE_HASH).verdict == PASS


def test_the_guard_judges_a_rollout_but_never_acts_on_it() -> None:
    p = policy(
        workloadRef={"kind": "Rollout", "name": "shop"},
        actions={"rollout": {"onCanaryDegraded": "None"}},
    )
    w = workload_from_rollout(rollout("bbb", "aaa"), CANARY)
    assert w is not None
    v = judge(p, *fleet(0.1), w.new_hash, w.hash_label)
    memory = remember(GuardMemory(), w, v)
    verdict = latched(w, v, memory)
    assert verdict is not None and verdict.verdict == FAIL
    action, why = decide(p, w, verdict, NOW, memory)
    assert action is None and why == verdict.reason


def test_a_rollout_policy_must_leave_the_acting_to_argo() -> None:
    ref = {"workloadRef": {"kind": "Rollout", "name": "shop"}}
    for acting in ("Pause", "Rollback", "Contain"):
        with pytest.raises(PolicyError) as info:
            parse_policy(minimal(**ref, actions={"rollout": {"onCanaryDegraded": acting}}))
        assert [p for p, _ in info.value.errors] == ["spec.actions.rollout.onCanaryDegraded"]
    # None, or the default Auto (which for a Rollout means: judge only).
    for judging in ({"rollout": {"onCanaryDegraded": "None"}}, {}):
        ok = parse_policy(minimal(**ref, actions=judging))
        assert ok.workload_ref is not None and ok.workload_ref.kind == "Rollout"


def test_auto_on_a_rollout_judges_only() -> None:
    p = policy(workloadRef={"kind": "Rollout", "name": "shop"})
    w = workload_from_rollout(rollout("bbb", "aaa"), CANARY)
    assert w is not None
    v = judge(p, *fleet(0.1), w.new_hash, w.hash_label)
    memory = remember(GuardMemory(), w, v)
    verdict = latched(w, v, memory)
    assert verdict is not None and verdict.verdict == FAIL
    assert decide(p, w, verdict, NOW, memory)[0] is None


def test_doctor_asks_to_read_rollouts_not_to_patch_deployments() -> None:
    p = parse_policy(
        minimal(
            workloadRef={"kind": "Rollout", "name": "shop"},
            actions={"mode": "Enforce", "rollout": {"onCanaryDegraded": "None"}},
        )
    )
    wanted = {(a.verb, a.resource) for a in required_access(p)}
    assert ("get", "rollouts.argoproj.io") in wanted
    assert ("patch", "deployments.apps") not in wanted
