"""The re-pin report read from users' answer logs (stickyguard_lab.stickyusers), on made-up logs:
the Traefik end-to-end test's verdicts are only as good as this arithmetic."""

from __future__ import annotations

from stickyguard_lab.stickyusers import Answer, repin_report


def log(session: int, *steps: tuple[float, str, bool]) -> list[Answer]:
    return [Answer(session, t, t + 0.01, 200, pod, new) for t, pod, new in steps]


def test_sessions_on_the_bad_pod_repin_and_others_stay() -> None:
    answers = [
        *log(0, (0.0, "bad", True), (1.0, "bad", False), (2.2, "a", True), (3.0, "a", False)),
        *log(1, (0.1, "a", True), (1.1, "a", False), (2.1, "a", False)),
        *log(2, (0.2, "bad", True), (1.2, "bad", False), (2.6, "b", True)),
    ]
    r = repin_report(answers, "bad", drained_at=2.0, reloaded_at=2.1)
    assert (r.sessions_on_bad, r.repinned, r.stuck) == (2, 2, [])
    assert [round(d, 2) for d in sorted(r.delays)] == [0.21, 0.61]
    assert r.moved_unnecessarily == [] and r.failed_requests == 0 and r.bad_after_reload == 0


def test_a_stuck_session_a_needless_move_and_failures_are_counted() -> None:
    answers = [
        *log(0, (0.0, "bad", True), (2.5, "bad", False)),  # still on the bad pod after the reload
        *log(1, (0.1, "a", True), (2.4, "b", True)),  # a healthy session moved
        Answer(2, 2.3, 2.4, 502, "", False),
        *log(3, (0.0, "bad", True), (2.2, "a", False)),  # moved, but no new cookie: not a re-pin
    ]
    r = repin_report(answers, "bad", drained_at=2.0, reloaded_at=2.1)
    assert r.stuck == [0, 3]
    assert r.moved_unnecessarily == [1]
    assert r.failed_requests == 1
    assert r.bad_after_reload == 1
    assert r.delay_median is None
