"""Scenario files (YAML): the fleet, the users, the faults and the stickyguard policy to test."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

BUILTIN_DIR = Path(__file__).with_name("scenarios")
FAULT_KINDS = ("error", "quality", "latency")


@dataclass(frozen=True)
class Fault:
    pods: tuple[int, ...]  # pod indexes (of the initial fleet)
    kind: str  # error: HTTP 5xx; quality: HTTP 200 with a bad answer; latency: SLO miss
    rate: float  # share of the pod's requests that are bad while the fault lasts
    start: float = 0.0
    end: float | None = None


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    pods: int
    nodes: int
    users: int
    duration: float  # seconds of simulated time
    sessions_per_user: float
    requests_per_session: float
    request_interval: float  # mean seconds between a session's requests
    background_error_rate: float
    faults: tuple[Fault, ...]
    proxies: int = 4  # Envoy-style proxies, each judging alone on its share of traffic
    replacement_seconds: float = 20.0  # an evicted pod's replacement starts serving after this
    policy: dict[str, Any] = field(default_factory=dict)  # StickyPolicy spec overrides
    retry_storms: RetryStorms | None = None
    failing_users: FailingUsers | None = None
    # The app exports per-pod session gauges (activeSessions, degradedSessions): evidence can
    # then be counted in users, not only in requests.
    session_metrics: bool = False


@dataclass(frozen=True)
class RetryStorms:
    """A few users whose calls fail for reasons of their own (bad input, a broken account) and
    whose clients retry at once: bursts of bad answers on whatever pod their session is
    pinned to, healthy or not. Not a fault of any pod."""

    users: int  # the first `users` users do this
    size: int  # requests per burst, all bad
    every: float  # mean seconds between a storm user's bursts
    spacing: float = 1.0  # seconds between retries


@dataclass(frozen=True)
class FailingUsers:
    """Users whose every call fails for a reason of their own (a broken account) and who keep
    one session all run: it stays pinned to one pod until that pod leaves the ring, then to the
    next. Not a fault of any pod."""

    users: int  # the first `users` users (after any storm users) do this
    interval: float = 5.0  # mean seconds between their calls


class ScenarioError(ValueError):
    pass


def _req(d: dict[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in d:
        raise ScenarioError(f"{where}.{key}: is required")
    value = d[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ScenarioError(f"{where}.{key}: must be {kind.__name__}, got {value!r}")
    return value


def parse(data: dict[str, Any], name: str = "scenario") -> Scenario:
    if not isinstance(data, dict):
        raise ScenarioError(f"{name}: a scenario is a mapping")
    pods = _req(data, "pods", int, name)
    faults = []
    for i, raw in enumerate(data.get("faults") or []):
        where = f"{name}.faults[{i}]"
        kind = _req(raw, "kind", str, where)
        if kind not in FAULT_KINDS:
            raise ScenarioError(f"{where}.kind: one of {', '.join(FAULT_KINDS)}; got {kind!r}")
        idx = tuple(int(x) for x in _req(raw, "pods", list, where))
        if any(not 0 <= x < pods for x in idx):
            raise ScenarioError(f"{where}.pods: indexes must be in 0..{pods - 1}")
        rate = _req(raw, "rate", float, where)
        if not 0 < rate <= 1:
            raise ScenarioError(f"{where}.rate: must be in (0, 1]")
        end = raw.get("end")
        faults.append(
            Fault(
                idx, kind, rate, float(raw.get("start", 0.0)), None if end is None else float(end)
            )
        )
    return Scenario(
        name=str(data.get("name", name)),
        description=str(data.get("description", "")),
        pods=pods,
        nodes=int(data.get("nodes", 3)),
        users=_req(data, "users", int, name),
        duration=_req(data, "duration", float, name),
        sessions_per_user=float(data.get("sessionsPerUser", 3)),
        requests_per_session=float(data.get("requestsPerSession", 25)),
        request_interval=float(data.get("requestInterval", 10)),
        background_error_rate=float(data.get("backgroundErrorRate", 0.001)),
        faults=tuple(faults),
        proxies=int(data.get("proxies", 4)),
        replacement_seconds=float(data.get("replacementSeconds", 20)),
        policy=dict(data.get("policy") or {}),
        retry_storms=_storms(data.get("retryStorms"), name),
        failing_users=_failing(data.get("failingUsers"), name),
        session_metrics=bool(data.get("sessionMetrics", False)),
    )


def _storms(raw: Any, name: str) -> RetryStorms | None:
    if raw is None:
        return None
    where = f"{name}.retryStorms"
    return RetryStorms(
        users=_req(raw, "users", int, where),
        size=_req(raw, "size", int, where),
        every=_req(raw, "every", float, where),
        spacing=float(raw.get("spacing", 1.0)),
    )


def _failing(raw: Any, name: str) -> FailingUsers | None:
    if raw is None:
        return None
    where = f"{name}.failingUsers"
    interval = float(raw.get("interval", 5.0))
    if interval <= 0:
        raise ScenarioError(f"{where}.interval: must be > 0")
    return FailingUsers(users=_req(raw, "users", int, where), interval=interval)


def builtin_names() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))


def load(name_or_file: str) -> Scenario:
    """A built-in scenario by name, or a YAML file."""
    path = Path(name_or_file)
    if not path.is_file():
        path = BUILTIN_DIR / f"{name_or_file}.yaml"
        if not path.is_file():
            raise ScenarioError(
                f"no scenario {name_or_file!r}: built-in ones are "
                f"{', '.join(builtin_names())}, or give a YAML file"
            )
    return parse(yaml.safe_load(path.read_text()), path.stem)
