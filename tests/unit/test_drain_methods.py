"""Drain methods as data: each reads "serving" its own way, its drain and restore writes carry
the record, and any prefix of a drain or restore leaves a pod the planner can finish."""

from __future__ import annotations

from typing import Any

import pytest

from stickyguard.core.drain_methods import METHODS, PodView, PodWrite, recorded_method
from stickyguard.core.names import DRAIN_METHOD, DRAINED_BY, SERVING, UNDRAIN
from stickyguard.core.policy import DRAIN_METHODS


def apply(
    view: PodView, annotations: dict[str, str], w: PodWrite
) -> tuple[PodView, dict[str, str]]:
    """What the apiserver would do with one merge patch (enough for these writes)."""
    labels, conditions = dict(view.labels), dict(view.conditions)
    body: Any = w.body
    if w.target == "status":
        for c in body["status"]["conditions"]:
            conditions[c["type"]] = c["status"]
    else:
        for k, v in body["metadata"].get("labels", {}).items():
            if v is None:
                labels.pop(k, None)
            else:
                labels[k] = v
        for k, v in body["metadata"]["annotations"].items():
            if v is None:
                annotations.pop(k, None)
            else:
                annotations[k] = v
    return PodView(labels, conditions, view.readiness_gates), annotations


SERVING_POD = {
    "ReadinessGate": PodView({}, {SERVING: "True"}, (SERVING,)),
    "ServiceLabel": PodView({SERVING: "true"}, {}, ()),
}


def test_the_registry_is_what_the_policy_accepts() -> None:
    assert tuple(METHODS) == DRAIN_METHODS


@pytest.mark.parametrize("name", sorted(METHODS))
def test_drain_then_restore_round_trip(name: str) -> None:
    m = METHODS[name]
    view, notes = SERVING_POD[name], {}
    assert m.serving(view) is True
    for w in m.drain({DRAINED_BY: "p", DRAIN_METHOD: name}, "bad"):
        view, notes = apply(view, notes, w)
    assert m.serving(view) is False and m.drained_correctly(view)
    assert notes[DRAIN_METHOD] == name
    for w in m.restore(dict.fromkeys([DRAINED_BY, DRAIN_METHOD, UNDRAIN]), "ok"):
        view, notes = apply(view, notes, w)
    assert m.serving(view) is True and notes == {}


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_prefix_of_a_drain_is_recorded_or_untouched(name: str) -> None:
    """Interrupted after any write, the pod is either untouched or carries the record (so the
    planner completes the drain); never out of service without a record."""
    m = METHODS[name]
    writes = list(m.drain({DRAINED_BY: "p", DRAIN_METHOD: name}, "bad"))
    for k in range(len(writes) + 1):
        view, notes = SERVING_POD[name], {}
        for w in writes[:k]:
            view, notes = apply(view, notes, w)
        assert DRAINED_BY in notes or m.serving(view) is True


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_prefix_of_a_restore_is_finishable(name: str) -> None:
    """Interrupted after any write, the pod either still carries its record with an undrain
    request (restored again next cycle), or is fully restored."""
    m = METHODS[name]
    view, notes = SERVING_POD[name], {}
    for w in m.drain({DRAINED_BY: "p", DRAIN_METHOD: name}, "bad"):
        view, notes = apply(view, notes, w)
    drained = (view, dict(notes))
    writes = list(m.restore(dict.fromkeys([DRAINED_BY, DRAIN_METHOD, UNDRAIN]), "ok"))
    for k in range(len(writes) + 1):
        view, notes = drained[0], dict(drained[1])
        for w in writes[:k]:
            view, notes = apply(view, notes, w)
        done = notes == {} and m.serving(view) is True
        pending = DRAINED_BY in notes and (k == 0 or UNDRAIN in notes)
        assert done or pending, (k, notes, view)


def test_restore_follows_the_recorded_method() -> None:
    gated = PodView({}, {SERVING: "False"}, (SERVING,))
    assert recorded_method("ServiceLabel", gated).name == "ServiceLabel"
    # pods drained before the method was recorded: the gate tells
    assert recorded_method(None, gated).name == "ReadinessGate"
    assert recorded_method(None, PodView()).name == "ServiceLabel"
    assert recorded_method("Nonsense", PodView()).name == "ServiceLabel"
