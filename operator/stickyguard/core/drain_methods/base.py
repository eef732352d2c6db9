"""What a drain method is: how it tells whether a pod serves, which writes take a pod out of
service and put it back, whether new pods must be marked serving, what access it needs and how
`doctor` checks that it can work. Pure: methods return data (writes), adapters perform them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from stickyguard.core.doctor_facts import Access, Check, Facts


@dataclass(frozen=True)
class PodView:
    """The parts of a pod a drain method reads."""

    labels: Mapping[str, str] = field(default_factory=dict)
    conditions: Mapping[str, str] = field(default_factory=dict)  # type -> "True" | "False"
    readiness_gates: tuple[str, ...] = ()


@dataclass(frozen=True)
class PodWrite:
    """One merge patch of a pod: `meta` patches metadata (labels, annotations), `status`
    patches status conditions (the readiness gate). Writes are applied in order; each is
    idempotent, so a step interrupted after any write is finished by repeating all of them."""

    target: Literal["meta", "status"]
    body: Mapping[str, Any]


class DrainMethod(Protocol):
    name: str
    # New pods start out of service until the operator marks them serving (fail closed).
    marks_new_pods: bool

    def serving(self, pod: PodView) -> bool | None:
        """True/False, or None when the pod carries no serving signal of this method yet."""

    def drain(self, record: Mapping[str, str], message: str) -> Sequence[PodWrite]:
        """Writes that take the pod out of service, with `record` (annotations) saying who,
        when, why and how."""

    def restore(self, cleared: Mapping[str, None], message: str) -> Sequence[PodWrite]:
        """Writes that put the pod back in service and remove the record."""

    def mark_serving(self, message: str) -> Sequence[PodWrite]:
        """Writes that let a new, healthy pod serve (empty when nothing is needed)."""

    def drained_correctly(self, pod: PodView) -> bool:
        """The pod is out of service by this method (a half-done drain is not)."""

    def required_access(self, namespace: str) -> list[Access]:
        """Beyond `patch pods`, what the operator needs to drain with this method."""

    def doctor_check(self, facts: Facts) -> Check:
        """Whether draining with this method can take the selected pods out of service."""


def meta_write(labels: Mapping[str, Any] | None, annotations: Mapping[str, Any]) -> PodWrite:
    body: dict[str, Any] = {"annotations": dict(annotations)}
    if labels is not None:
        body["labels"] = dict(labels)
    return PodWrite("meta", {"metadata": body})
