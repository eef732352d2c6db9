"""Server-side apply for every write stickyguard makes to objects it does not own (pods, their
readiness-gate condition, Deployments, nodes): field manager `stickyguard`, and only its own
fields, so a reconciler that applies the same objects (Argo CD, Flux, `kubectl apply
--server-side`) never conflicts with it and never undoes what it did.

An apply states the whole intent of its manager on the object: a field stickyguard applied
before and leaves out now is removed. Its writes are partial changes (one annotation here, a
label there), so each apply starts from what stickyguard owns now (`extract`, the fields of its
Apply entry in `metadata.managedFields` with their current values, like client-go's
`Extract...` functions) and applies that with the change merged in (merge-patch semantics: a
`None` value removes the field).

Removing a field another manager owns or co-owns (the `stickyguard.dev/serving` label of a pod
template under the ServiceLabel method, `pod-template-hash` when isolating, a person's
`stickyguard.dev/undrain` annotation on restore) takes two applies, because leaving a field
out of an apply only drops one's own claim, and a forced apply of the *same* value shares
ownership instead of taking it: the first apply (forced) sets the field to a placeholder
(`REMOVING` for a string, the opposite for a boolean), which takes it over, together with every
other change (so the selector effect and the record land in one write: a pod leaves its
Service or ReplicaSet and says why at once); the second leaves it out, which removes it. A
crash in between leaves the placeholder, which selects nothing, and the record. Undoing its own
action works the same way (an uncordon, a resume): the field goes, whoever else set it too, as
stickyguard always did.

`force` (taking fields over from other managers when values differ) is for fields that are
stickyguard's by name (`stickyguard.dev/...`) and for the actions a policy explicitly asks for
(drain, isolate, cordon, and on a Deployment pause/hold only when it is not GitOps-managed or
`allowSpecChanges` is set). A field that is someone else's by name is applied without force:
`controller.kubernetes.io/pod-deletion-cost` set by the pod template or another tool wins, and
stickyguard leaves it (a 409 Conflict, reported, not retried by force).

Only `metadata` maps and scalar fields are extracted (what stickyguard writes on the main
resources); lists are not merged (the readiness-gate condition is applied whole on the status
subresource, where stickyguard's intent is exactly its one condition).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

MANAGER = "stickyguard"
REMOVING = "stickyguard-removing"  # a valid label value that no selector of ours matches
APPLY = "application/apply-patch+yaml"  # JSON is YAML: the client sends the dict as JSON

Patch = Callable[[dict[str, Any], bool], Any]  # (apply body, force) -> the object


def owned_fields(
    obj: Mapping[str, Any], manager: str = MANAGER, subresource: str = ""
) -> dict[str, Any]:
    """The fieldsV1 set of `manager`'s Apply entry on `obj` (a dict in API form)."""
    for entry in (obj.get("metadata") or {}).get("managedFields") or []:
        if (
            entry.get("manager") == manager
            and entry.get("operation") == "Apply"
            and (entry.get("subresource") or "") == subresource
        ):
            return dict(entry.get("fieldsV1") or {})
    return {}


def others_own(
    entries: Iterable[tuple[str, Mapping[str, Any] | None]],
    path: Sequence[str],
    manager: str = MANAGER,
) -> bool:
    """Whether a manager other than `manager` owns the field at `path` (names, e.g.
    ("metadata", "annotations", KEY)), from (manager, fieldsV1) pairs of managedFields."""
    for name, fields in entries:
        if name == manager:
            continue
        node: Any = fields or {}
        for key in path:
            node = node.get(f"f:{key}") if isinstance(node, Mapping) else None
        if node is not None:
            return True
    return False


def extract(obj: Mapping[str, Any], fields: Mapping[str, Any]) -> dict[str, Any]:
    """The values of `obj` at the field paths of a fieldsV1 set (`f:` keys; a list or a leaf
    is taken whole)."""
    out: dict[str, Any] = {}
    for key, sub in fields.items():
        if not key.startswith("f:"):
            continue
        name = key[2:]
        if name not in obj:
            continue
        value = obj[name]
        deeper = isinstance(sub, Mapping) and any(k.startswith("f:") for k in sub)
        if isinstance(value, Mapping) and deeper:
            out[name] = extract(value, sub)
        else:
            out[name] = copy.deepcopy(value)
    return out


def merged(base: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `changes` merged in as a JSON merge patch (RFC 7386): None removes."""
    out = copy.deepcopy(dict(base))
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, Mapping):
            current = out.get(key)
            out[key] = merged(current if isinstance(current, Mapping) else {}, value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def pruned(obj: Mapping[str, Any]) -> dict[str, Any]:
    """`obj` without empty maps (an empty map in an apply would claim the map itself)."""
    out: dict[str, Any] = {}
    for key, value in obj.items():
        if isinstance(value, Mapping):
            value = pruned(value)
            if not value:
                continue
        out[key] = value
    return out


def _entries(obj: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any] | None]]:
    """(manager, fieldsV1) of every managedFields entry of the main resource except our
    Apply entry (our own Update entries, from a rollback, count as another's)."""
    return [
        (f"{e.get('manager')}/{e.get('operation')}", e.get("fieldsV1"))
        for e in (obj.get("metadata") or {}).get("managedFields") or []
        if not (e.get("subresource") or "")
        and not (e.get("manager") == MANAGER and e.get("operation") == "Apply")
    ]


def foreign_removals(
    obj: Mapping[str, Any],
    ours: Mapping[str, Any],
    changes: Mapping[str, Any],
    path: tuple[str, ...] = (),
    entries: list[tuple[str, Mapping[str, Any] | None]] | None = None,
) -> dict[str, Any]:
    """The fields `changes` removes that are on `obj` and that another manager owns or
    co-owns (or nobody does), each mapped to REMOVING: what to take over before leaving it
    out."""
    entries = _entries(obj) if entries is None else entries
    out: dict[str, Any] = {}
    for key, value in changes.items():
        if key not in obj:
            continue
        mine = ours.get(key)
        if value is None and (key not in ours or others_own(entries, (*path, key))):
            out[key] = (not obj[key]) if isinstance(obj[key], bool) else REMOVING
        elif isinstance(value, Mapping) and isinstance(obj[key], Mapping):
            inner = foreign_removals(
                obj[key], mine if isinstance(mine, Mapping) else {}, value, (*path, key), entries
            )
            if inner:
                out[key] = inner
    return out


def apply_body(api_version: str, kind: str, name: str, namespace: str | None, content: Any) -> Any:
    """An apply request body: the identity of the object and the fields applied."""
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    body = {"apiVersion": api_version, "kind": kind, **copy.deepcopy(dict(content))}
    body["metadata"] = {**meta, **(body.get("metadata") or {})}
    return body


def apply_changes(
    current: Mapping[str, Any],
    changes: Mapping[str, Any],
    patch: Patch,
    *,
    force: bool,
) -> Any:
    """Applies what stickyguard owns on `current` (an object in API form) with `changes`
    merged in, through `patch(body, force)`. Fields the changes remove that another manager
    owns or co-owns are taken over first (one more apply), so that they really go."""
    api_version, kind = current["apiVersion"], current["kind"]
    meta = current["metadata"]
    ours = extract(current, owned_fields(current))
    desired = pruned(merged(ours, changes))
    ident = (api_version, kind, meta["name"], meta.get("namespace"))
    foreign = foreign_removals(current, ours, changes)
    if foreign:
        patch(apply_body(*ident, merged(desired, foreign)), True)
    return patch(apply_body(*ident, desired), force)
