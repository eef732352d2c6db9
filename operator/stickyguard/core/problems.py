"""Typed problems (pure): why metrics could not be used, why an action was held, why a write
failed. Each is a value with a `kind` (an enum) and a human-readable message; decisions, Event
reasons, metric labels and exit codes are taken from the kind, never from the message text,
which stays free to change and to contain any pod name."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class MetricProblemKind(StrEnum):
    UNREACHABLE = "unreachable"  # connection refused / reset / DNS
    TIMEOUT = "timeout"
    SERVER_ERROR = "server_error"  # Prometheus answered an error status
    MALFORMED = "malformed"  # an answer that is not the expected instant vector
    NO_SERIES = "no_series"  # no series for the selector
    NOT_AGGREGATED = "not_aggregated"  # series without the pod label, or several per pod

    @property
    def prometheus_failed(self) -> bool:
        """Prometheus itself could not be asked (as opposed to: it answered, without data)."""
        return self in (
            MetricProblemKind.UNREACHABLE,
            MetricProblemKind.TIMEOUT,
            MetricProblemKind.SERVER_ERROR,
        )


@dataclass(frozen=True)
class MetricProblem:
    """One signal that could not be read. `str()` is the line shown in status and logs."""

    signal: str
    kind: MetricProblemKind
    detail: str

    def __str__(self) -> str:
        return f"{self.signal}: {self.detail}"


class HoldCause(StrEnum):
    """Why a wanted action was not taken. The values are the label values of
    stickyguard_actions_blocked_total{reason} (a stable interface)."""

    MAX_DRAINED_PERCENT = "maxDrainedPercent"
    MIN_READY_PODS = "minReadyPods"
    MAX_ACTIONS_PER_HOUR = "maxActionsPerHour"
    COOLDOWN = "cooldownSeconds"
    CORDON_LIMIT = "cordonLimit"  # one node per policy per hour
    METRICS_UNAVAILABLE = "metricsUnavailable"
    ACTION_FAILED = "actionFailed"
    NO_ROLLBACK_TARGET = "noRollbackTarget"
    OTHER = "other"

    @property
    def is_budget(self) -> bool:
        """A safety budget (Event BudgetBlocked) rather than a hold (Event ActionHeld)."""
        return self in (
            HoldCause.MAX_DRAINED_PERCENT,
            HoldCause.MIN_READY_PODS,
            HoldCause.MAX_ACTIONS_PER_HOUR,
            HoldCause.COOLDOWN,
            HoldCause.CORDON_LIMIT,
        )


@dataclass(frozen=True)
class Held:
    """An action the plan wanted and did not take. `str()` is the status.blocked line."""

    cause: HoldCause
    message: str

    def __str__(self) -> str:
        return self.message


class ApiFailureKind(StrEnum):
    GONE = "gone"  # 404: the object was deleted meanwhile
    DISRUPTION_BUDGET = "disruption_budget"  # 429 on an eviction: a PDB refused it
    CONFLICT = "conflict"  # 409
    FORBIDDEN = "forbidden"  # 401/403
    INVALID = "invalid"  # 400/422
    UNAVAILABLE = "unavailable"  # 5xx, 429 otherwise, connection trouble
    OTHER = "other"


def api_failure_kind(status: int | None, *, eviction: bool = False) -> ApiFailureKind:
    """The kind of an API error from its HTTP status."""
    if status == 404:
        return ApiFailureKind.GONE
    if status == 429 and eviction:
        return ApiFailureKind.DISRUPTION_BUDGET
    if status == 409:
        return ApiFailureKind.CONFLICT
    if status in (401, 403):
        return ApiFailureKind.FORBIDDEN
    if status in (400, 422):
        return ApiFailureKind.INVALID
    if status is None or status == 429 or status >= 500:
        return ApiFailureKind.UNAVAILABLE
    return ApiFailureKind.OTHER
