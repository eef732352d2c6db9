"""Which policy acts on a pod that several policies select (pure).

Two policies over the same pods would each spend their own budgets on them (two drains where
one `maxDrainedPercent` allows one) and could undo each other. So exactly one acts: the oldest
policy by creationTimestamp, then by name (deterministic on every replica). The others leave
those pods alone and report a Conflict condition naming the owner. A policy being deleted, or
one that does not parse, claims nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from stickyguard.core.policy import LabelSelector


@dataclass(frozen=True)
class PolicyRef:
    namespace: str
    name: str
    created: float  # creationTimestamp (Unix time)
    selector: LabelSelector | None  # None: the policy does not parse
    deleting: bool = False

    @property
    def rank(self) -> tuple[float, str]:
        return (self.created, self.name)


def claims(
    me: PolicyRef, others: Iterable[PolicyRef], pods: Mapping[str, Mapping[str, str]]
) -> dict[str, str]:
    """pod -> the older policy that acts on it, for the pods (name -> labels) `me` selects."""
    older = sorted(
        (
            o
            for o in others
            if o.namespace == me.namespace
            and o.name != me.name
            and o.selector is not None
            and not o.deleting
            and o.rank < me.rank
        ),
        key=lambda o: o.rank,
    )
    out: dict[str, str] = {}
    if not older:
        return out
    for pod, labels in pods.items():
        owner = next((o.name for o in older if o.selector and o.selector.matches(labels)), None)
        if owner is not None:
            out[pod] = owner
    return out
