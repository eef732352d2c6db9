"""The ReadinessGate drain method: pods carry `readinessGates: [{conditionType:
stickyguard.dev/serving}]` and the operator sets that condition. A drained pod turns NotReady, so
PDBs and rollout accounting see it as unavailable; a gated pod is never Ready until the operator
marks it serving (fail closed)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from stickyguard.core.doctor_facts import FAIL, PASS, Access, Check, Facts, name_list
from stickyguard.core.drain_methods.base import PodView, PodWrite, meta_write
from stickyguard.core.names import SERVING, UNDRAIN

NAME = "ReadinessGate"


def _condition(value: bool, reason: str, message: str) -> PodWrite:
    # lastTransitionTime is added by the adapter at write time (the core has no clock).
    return PodWrite(
        "status",
        {
            "status": {
                "conditions": [
                    {
                        "type": SERVING,
                        "status": "True" if value else "False",
                        "reason": reason,
                        "message": message[:1000],
                    }
                ]
            }
        },
    )


class ReadinessGate:
    name = NAME
    marks_new_pods = True

    def serving(self, pod: PodView) -> bool | None:
        gate = pod.conditions.get(SERVING)
        return None if gate is None else gate == "True"

    def drain(self, record: Mapping[str, str], message: str) -> Sequence[PodWrite]:
        # Record first: a crash between the two writes leaves a pod marked drained, which the
        # next cycle sees as half-done and finishes, instead of a NotReady pod nobody tracks.
        return [meta_write(None, record), _condition(False, "Drained", message)]

    def restore(self, cleared: Mapping[str, None], message: str) -> Sequence[PodWrite]:
        # Intent first, serve next, forget last: an interrupted restore leaves the pod marked
        # drained *and* asked to undrain, which the next cycle (or the finalizer's retry)
        # finishes; never a NotReady pod without its record, nor one mistaken for a half-done
        # drain.
        return [
            meta_write(None, {UNDRAIN: "restoring"}),
            _condition(True, "Serving", message),
            meta_write(None, cleared),
        ]

    def mark_serving(self, message: str) -> Sequence[PodWrite]:
        return [_condition(True, "Serving", message)]

    def drained_correctly(self, pod: PodView) -> bool:
        return pod.conditions.get(SERVING) == "False"

    def required_access(self, namespace: str) -> list[Access]:
        return [Access("patch", "pods/status", namespace, "flip the readiness gate")]

    def doctor_check(self, facts: Facts) -> Check:
        missing = [x.name for x in facts.pods if not x.has_gate]
        if missing:
            return Check(
                "drain-mechanism",
                FAIL,
                f"{len(missing)} of {len(facts.pods)} pods lack the readiness gate {SERVING}: "
                f"{name_list(missing)}; stickyguard cannot drain them",
                "install the webhook (manifests/components/webhook) and restart the pods, or add "
                f"`readinessGates: [{{conditionType: {SERVING}}}]` to the pod template",
            )
        return Check("drain-mechanism", PASS, f"every pod has the readiness gate {SERVING}")
