"""Users with cookie jars who record every answer, and what those records say about a re-pin.

`Users` runs N sessions against an ingress; each keeps its cookies (the ingress's affinity cookie
and the app's `sid`) and logs every request: when it started and ended, the HTTP status, the pod
that answered (the demo app's X-Pod header) and whether the ingress set a new affinity cookie.
`repin_report` reads those logs around a drain: which sessions had to move, how long after the
drain each got a healthy pod and a new cookie, which sessions moved without needing to, and
which requests failed. It is pure, so tests can check it on made-up logs too.
"""

from __future__ import annotations

import http.client
import statistics
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Answer:
    session: int
    started: float  # time.time()
    ended: float
    status: int  # 0: no HTTP answer (connection error)
    pod: str  # "" when there was no answer
    new_cookie: bool  # the ingress set its affinity cookie on this answer
    body: str = ""

    @property
    def failed(self) -> bool:
        return self.status == 0 or self.status >= 500


@dataclass
class Users:
    """`sessions` users requesting every `interval` seconds through host:port until stopped."""

    host: str
    port: int
    cookie: str  # the ingress's affinity cookie name
    sessions: int
    interval: float = 0.25
    answers: list[Answer] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self, first: int = 0) -> Users:
        for i in range(first, first + self.sessions):
            t = threading.Thread(target=self._run, args=(i,), daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> list[Answer]:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=10)
        return self.snapshot()

    def snapshot(self) -> list[Answer]:
        with self._lock:
            return list(self.answers)

    def _run(self, session: int) -> None:
        jar: dict[str, str] = {}
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        while not self._stop.is_set():
            started = time.time()
            status, pod, new, body = 0, "", False, ""
            try:
                headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in jar.items())} if jar else {}
                conn.request("GET", "/", headers=headers)
                resp = conn.getresponse()
                body = resp.read().decode(errors="replace").strip()
                status, pod = resp.status, resp.getheader("X-Pod") or ""
                for k, v in resp.getheaders():
                    if k.lower() == "set-cookie":
                        name, _, rest = v.partition("=")
                        jar[name.strip()] = rest.split(";", 1)[0]
                        new = new or name.strip() == self.cookie
            except (OSError, http.client.HTTPException) as e:
                body = f"{type(e).__name__}: {e}"  # kept for the failure report
                conn.close()
                conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
            with self._lock:
                self.answers.append(Answer(session, started, time.time(), status, pod, new, body))
            self._stop.wait(self.interval)
        conn.close()


def pinned_to(answers: Iterable[Answer], before: float) -> dict[int, str]:
    """Each session's pod as of its last answer that ended before `before`."""
    out: dict[int, str] = {}
    for a in sorted(answers, key=lambda a: a.ended):
        if a.ended < before and a.pod:
            out[a.session] = a.pod
    return out


@dataclass(frozen=True)
class RepinReport:
    sessions_on_bad: int
    repinned: int  # moved to a healthy pod with a new affinity cookie
    delays: list[float]  # per re-pinned session: drain -> first healthy answer with a new cookie
    stuck: list[int]  # sessions on the bad pod that never moved
    moved_unnecessarily: list[int]  # sessions on healthy pods whose pod changed
    failed_requests: int
    requests: int
    bad_after_reload: int  # answers from the bad pod to requests started after the reload

    @property
    def delay_median(self) -> float | None:
        return round(statistics.median(self.delays), 3) if self.delays else None

    @property
    def delay_max(self) -> float | None:
        return round(max(self.delays), 3) if self.delays else None

    def as_dict(self) -> dict[str, object]:
        return {
            "sessions_on_bad_pod": self.sessions_on_bad,
            "repinned": self.repinned,
            "repin_delay_median_s": self.delay_median,
            "repin_delay_max_s": self.delay_max,
            "stuck": len(self.stuck),
            "sessions_moved_unnecessarily": len(self.moved_unnecessarily),
            "failed_requests": self.failed_requests,
            "requests": self.requests,
            "bad_pod_answers_after_reload": self.bad_after_reload,
        }


def repin_report(
    answers: Sequence[Answer],
    bad_pod: str,
    drained_at: float,
    reloaded_at: float,
    until: float | None = None,
) -> RepinReport:
    """What the users saw around a drain. `drained_at`: the EndpointSlice no longer serves the
    bad pod; `reloaded_at`: Traefik's first configuration after that. Failures and unnecessary
    moves are counted over every answer up to `until` (default: all)."""
    window = [a for a in answers if until is None or a.started <= until]
    before = pinned_to(window, drained_at)
    by_session: dict[int, list[Answer]] = {}
    for a in sorted(window, key=lambda a: a.started):
        by_session.setdefault(a.session, []).append(a)
    on_bad = [s for s, p in before.items() if p == bad_pod]
    delays, stuck = [], []
    for s in on_bad:
        moved = next(
            (
                a
                for a in by_session[s]
                if a.started >= drained_at and a.pod and a.pod != bad_pod and a.new_cookie
            ),
            None,
        )
        if moved is None:
            stuck.append(s)
        else:
            delays.append(moved.ended - drained_at)
    unnecessary = []
    for s, pod in before.items():
        if pod == bad_pod:
            continue
        pods_after = {a.pod for a in by_session[s] if a.started >= drained_at and a.pod}
        if pods_after - {pod}:
            unnecessary.append(s)
    return RepinReport(
        sessions_on_bad=len(on_bad),
        repinned=len(delays),
        delays=delays,
        stuck=stuck,
        moved_unnecessarily=unnecessary,
        failed_requests=sum(1 for a in window if a.failed),
        requests=len(window),
        bad_after_reload=sum(1 for a in window if a.started > reloaded_at and a.pod == bad_pod),
    )
