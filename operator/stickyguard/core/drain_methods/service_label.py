"""The ServiceLabel drain method: the Service selects on `stickyguard.dev/serving: "true"`,
which the pod template carries and the Deployment's selector does not; draining removes the
label, restoring puts it back. Nothing depends on the operator being up (fail open), but a
drained pod still counts as Ready."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from stickyguard.core.doctor_facts import (
    FAIL,
    PASS,
    WARN,
    Access,
    Check,
    Facts,
    name_list,
    serving_services,
)
from stickyguard.core.drain_methods.base import PodView, PodWrite, meta_write
from stickyguard.core.names import SERVING

NAME = "ServiceLabel"


class ServiceLabel:
    name = NAME
    marks_new_pods = False

    def serving(self, pod: PodView) -> bool | None:
        return pod.labels.get(SERVING) == "true"

    def drain(self, record: Mapping[str, str], message: str) -> Sequence[PodWrite]:
        # One write: the label the Service selects on goes, the record comes.
        return [meta_write({SERVING: None}, record)]

    def restore(self, cleared: Mapping[str, None], message: str) -> Sequence[PodWrite]:
        return [meta_write({SERVING: "true"}, cleared)]

    def mark_serving(self, message: str) -> Sequence[PodWrite]:
        return []

    def drained_correctly(self, pod: PodView) -> bool:
        return SERVING not in pod.labels

    def required_access(self, namespace: str) -> list[Access]:
        return []

    def doctor_check(self, facts: Facts) -> Check:
        services = serving_services(facts)
        labelled = [s.name for s in services if s.selector.get(SERVING) == "true"]
        if not labelled:
            return Check(
                "drain-mechanism",
                FAIL,
                f"drain method ServiceLabel, but no Service selects {SERVING}=true, so "
                "relabelling a pod does not take it out of service",
                f'add `{SERVING}: "true"` to the Service selector (stickyguard labels the pods)',
            )
        unlabelled = [x.name for x in facts.pods if x.labels.get(SERVING) != "true"]
        if unlabelled:
            return Check(
                "drain-mechanism",
                WARN,
                f"{len(unlabelled)} pods are not labelled {SERVING}=true yet: "
                f"{name_list(unlabelled)} (drained, or not yet reconciled)",
                "in Enforce mode stickyguard labels healthy pods; check `kubectl sticky status`",
            )
        return Check(
            "drain-mechanism", PASS, f"Service {', '.join(labelled)} selects {SERVING}=true"
        )
