"""How stickyguard's server-side applies are built (adapters/ssa.py), on plain objects: each
apply carries everything stickyguard owns with the change merged in, and a field owned by
someone else that must go is taken over first. The real apiserver's side is in
tests/integration/test_field_ownership.py."""

from __future__ import annotations

from typing import Any

from stickyguard.adapters.ssa import (
    MANAGER,
    REMOVING,
    apply_changes,
    extract,
    foreign_removals,
    merged,
    others_own,
    owned_fields,
)


def pod(
    annotations: dict[str, str], labels: dict[str, str], ours: dict[str, Any]
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "web-1",
            "namespace": "shop",
            "labels": labels,
            "annotations": annotations,
            "managedFields": [
                {
                    "manager": "kube-controller-manager",
                    "operation": "Update",
                    "fieldsV1": {"f:metadata": {"f:labels": {"f:app": {}, "f:serving": {}}}},
                },
                {"manager": MANAGER, "operation": "Apply", "fieldsV1": ours},
                {
                    "manager": MANAGER,
                    "operation": "Apply",
                    "subresource": "status",
                    "fieldsV1": {"f:status": {}},
                },
            ],
        },
        "spec": {"containers": [{"name": "app"}]},
    }


OURS = {"f:metadata": {"f:annotations": {"f:a/drained-by": {}, "f:cost": {}}}}


def test_owned_fields_pick_our_apply_entry_of_the_main_resource() -> None:
    obj = pod({"a/drained-by": "p", "cost": "3", "other": "x"}, {"app": "web"}, OURS)
    assert owned_fields(obj) == OURS
    assert owned_fields(obj, subresource="status") == {"f:status": {}}
    assert owned_fields(obj, manager="flux") == {}


def test_extract_takes_our_fields_with_their_current_values() -> None:
    obj = pod({"a/drained-by": "p", "cost": "3", "other": "x"}, {"app": "web"}, OURS)
    assert extract(obj, owned_fields(obj)) == {
        "metadata": {"annotations": {"a/drained-by": "p", "cost": "3"}}
    }


def test_merged_is_a_merge_patch() -> None:
    base = {"metadata": {"annotations": {"a": "1", "b": "2"}}}
    out = merged(base, {"metadata": {"annotations": {"a": None, "c": "3"}}, "spec": {"x": 1}})
    assert out == {"metadata": {"annotations": {"b": "2", "c": "3"}}, "spec": {"x": 1}}
    assert base == {"metadata": {"annotations": {"a": "1", "b": "2"}}}  # not changed


def test_foreign_removals_are_fields_others_own_that_must_go() -> None:
    obj = pod({"a/drained-by": "p"}, {"app": "web", "serving": "true"}, OURS)
    ours = extract(obj, owned_fields(obj))
    changes = {"metadata": {"labels": {"serving": None, "absent": None}, "annotations": {"x": "1"}}}
    assert foreign_removals(obj, ours, changes) == {"metadata": {"labels": {"serving": REMOVING}}}
    # co-owned (ours and the ReplicaSet controller's): leaving it out would not remove it
    shared = pod({}, {"app": "web"}, {"f:metadata": {"f:labels": {"f:app": {}}}})
    gone = {"metadata": {"labels": {"app": None}}}
    assert foreign_removals(shared, extract(shared, owned_fields(shared)), gone) == {
        "metadata": {"labels": {"app": REMOVING}}
    }
    # solely ours: leaving it out removes it
    solo = pod({"a/drained-by": "p"}, {}, OURS)
    mine = {"metadata": {"annotations": {"a/drained-by": None}}}
    assert foreign_removals(solo, extract(solo, owned_fields(solo)), mine) == {}


def test_apply_keeps_what_we_own_and_takes_over_before_removing() -> None:
    obj = pod({"a/drained-by": "p", "cost": "3"}, {"app": "web", "serving": "true"}, OURS)
    sent: list[tuple[dict[str, Any], bool]] = []

    def patch(body: dict[str, Any], force: bool) -> dict[str, Any]:
        sent.append((body, force))
        return body

    apply_changes(
        obj,
        {"metadata": {"labels": {"serving": None}, "annotations": {"a/drained-by": None}}},
        patch,
        force=True,
    )
    (take, forced), (final, _) = sent
    # the take-over write changes the value (a same-value apply would only share the field),
    # together with the record
    assert forced and take["metadata"]["labels"] == {"serving": REMOVING}
    assert "a/drained-by" not in take["metadata"]["annotations"]
    # the cost stickyguard set earlier stays; the record and the label go
    assert final["metadata"] == {
        "name": "web-1",
        "namespace": "shop",
        "annotations": {"cost": "3"},
    }
    assert (final["apiVersion"], final["kind"]) == ("v1", "Pod")


def test_a_boolean_is_taken_over_with_its_opposite_and_nothing_to_remove_is_one_apply() -> None:
    node = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": "n1",
            "managedFields": [
                {"manager": "kubectl-cordon", "operation": "Update", "fieldsV1": {}},
                {
                    "manager": MANAGER,
                    "operation": "Apply",
                    "fieldsV1": {"f:spec": {"f:unschedulable": {}}},
                },
            ],
        },
        "spec": {"unschedulable": True},
    }
    node["metadata"]["managedFields"][0]["fieldsV1"] = {"f:spec": {"f:unschedulable": {}}}
    sent: list[dict[str, Any]] = []
    apply_changes(node, {"spec": {"unschedulable": None}}, lambda b, f: sent.append(b), force=True)
    assert [b.get("spec") for b in sent] == [{"unschedulable": False}, None]
    # nothing of another's to remove: one apply
    sent.clear()
    apply_changes(
        node, {"metadata": {"annotations": {"x": "1"}}}, lambda b, f: sent.append(b), force=True
    )
    assert len(sent) == 1 and sent[0]["spec"] == {"unschedulable": True}


def test_others_own_reads_every_other_managers_fields() -> None:
    entries = [
        ("kube-controller-manager", {"f:metadata": {"f:annotations": {"f:cost": {}}}}),
        (MANAGER, {"f:metadata": {"f:annotations": {"f:mine": {}}}}),
    ]
    assert others_own(entries, ("metadata", "annotations", "cost"))
    assert not others_own(entries, ("metadata", "annotations", "mine"))
    assert not others_own(entries, ("metadata", "labels", "cost"))
    assert not others_own([("x", None)], ("metadata",))
