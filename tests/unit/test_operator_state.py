"""The evaluation schedule and the memory reset on leadership changes (OperatorState.due)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from stickyguard.controller.state import OperatorState
from stickyguard.core.cycle import Memory

KEY = ("shop", "web")


@dataclass
class Lease:
    leading: bool = True

    def is_leader(self) -> bool:
        return self.leading


def state(lease: Lease) -> OperatorState:
    st = OperatorState(api=cast(Any, None), prometheus_url=None)
    st.leader = cast(Any, lease)
    return st


def test_runs_every_interval_and_keeps_to_the_schedule() -> None:
    st = state(Lease())
    assert st.due(KEY, 15, 1000.0)  # the first tick runs
    assert not st.due(KEY, 15, 1010.0)
    assert st.due(KEY, 15, 1015.4)  # a late tick runs and keeps the schedule...
    assert not st.due(KEY, 15, 1029.9)
    assert st.due(KEY, 15, 1030.2)  # ...so the next one is due at 1030, not 1030.4
    assert st.due(KEY, 15, 1100.0)  # missed runs: restart from now, no burst of catch-ups
    assert not st.due(KEY, 15, 1114.0)


def test_a_new_term_as_leader_starts_from_no_evidence() -> None:
    lease = Lease()
    st = state(lease)
    assert st.due(KEY, 15, 1000.0)
    st.memory[KEY] = Memory()
    other = ("shop", "api")
    st.memory[other] = Memory()
    lease.leading = False  # lost the lease: nothing runs, the policy's evidence is dropped
    assert not st.due(KEY, 15, 1015.0)
    assert KEY not in st.memory
    lease.leading = True  # leader again: it runs at once, from no evidence
    assert st.due(KEY, 15, 1031.0)
    assert KEY not in st.memory
    assert other in st.memory  # only the policy ticked is touched


def test_without_leader_election_the_replica_always_acts() -> None:
    st = OperatorState(api=cast(Any, None), prometheus_url=None)
    assert st.due(KEY, 5, 5.0)
    st.memory[KEY] = Memory()
    assert not st.due(KEY, 5, 6.0)
    assert KEY in st.memory
