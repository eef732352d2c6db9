"""Users with cookie jars: each opens one session through the load balancer, makes requests at
intervals, and remembers whether any answer was degraded or failed."""

from __future__ import annotations

import http.client
import random
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field


@dataclass
class LoadResult:
    users: int = 0
    requests: int = 0
    bad: int = 0
    affected: set[int] = field(default_factory=set)
    # Seconds after the load started at which each hurt user was first hurt: the demo report's
    # "users hurt over time" chart.
    first_hurt: list[float] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def users_affected_pct(self) -> float:
        return 100.0 * len(self.affected) / max(1, self.users)

    @property
    def requests_bad_pct(self) -> float:
        return 100.0 * self.bad / max(1, self.requests)


def _session(
    host: str,
    port: int,
    vhost: str | None,
    user: int,
    requests: int,
    interval: float,
    deadline: float,
    result: LoadResult,
    rng: random.Random,
) -> None:
    cookies: dict[str, str] = {}
    conn = http.client.HTTPConnection(host, port, timeout=10)
    for _ in range(requests):
        if time.monotonic() > deadline:
            break
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())} if cookies else {}
        if vhost:
            headers["Host"] = vhost
        try:
            conn.request("GET", "/", headers=headers)
            resp = conn.getresponse()
            body = resp.read().decode(errors="replace")
            for k, v in resp.getheaders():
                if k.lower() == "set-cookie":
                    name, _, rest = v.partition("=")
                    cookies[name.strip()] = rest.split(";", 1)[0]
            bad = resp.status >= 500 or "degraded" in body
        except (OSError, http.client.HTTPException):
            conn.close()
            conn = http.client.HTTPConnection(host, port, timeout=10)
            bad = True
        with result.lock:
            result.requests += 1
            if bad:
                result.bad += 1
                if user not in result.affected:
                    result.affected.add(user)
                    result.first_hurt.append(time.monotonic() - result.started)
        time.sleep(rng.expovariate(1.0 / interval))
    conn.close()


def run_load(
    host: str,
    port: int,
    *,
    users: int,
    duration: float,
    sessions: int = 3,
    requests: int = 12,
    interval: float = 1.0,
    seed: int = 1,
    workers: int = 160,
    progress: bool = True,
    vhost: str | None = None,
    label: str = "",
) -> LoadResult:
    """Each of `users` users opens `sessions` sessions (each with a fresh cookie jar) at random
    times over `duration` seconds; returning users are what makes sticky damage repeat.
    `vhost` is the Host header (a load balancer routing by host name); `label` starts the
    progress lines (several loads at once)."""
    rng = random.Random(seed)
    plan = sorted(
        (rng.uniform(0, duration), user) for user in range(users) for _ in range(sessions)
    )
    result = LoadResult(users=users)
    start = result.started
    deadline = start + duration + requests * interval * 2
    next_report = start + duration / 10
    prefix = f"{label:<12}" if label else ""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for offset, user in plan:
            time.sleep(max(0.0, start + offset - time.monotonic()))
            pool.submit(
                _session,
                host,
                port,
                vhost,
                user,
                requests,
                interval,
                deadline,
                result,
                random.Random(rng.getrandbits(32)),
            )
            if progress and time.monotonic() >= next_report:
                next_report += duration / 10
                # One write per line: loads running side by side must not mix their lines.
                sys.stdout.write(
                    f"  {prefix}{time.monotonic() - start:5.0f}s  requests {result.requests:6d}  "
                    f"bad {result.requests_bad_pct:5.2f}%  users hurt so far "
                    f"{len(result.affected)}\n"
                )
                sys.stdout.flush()
    return result


def main(argv: list[str] | None = None) -> None:
    """`python -m stickyguard_lab.loadgen`: the demo's users against any HTTP endpoint (the kind
    demo runs it as a Job against the in-cluster Traefik)."""
    import argparse
    import json

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, default=80)
    p.add_argument("--users", type=int, default=300)
    p.add_argument("--duration", type=float, default=300.0)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    r = run_load(args.host, args.port, users=args.users, duration=args.duration, seed=args.seed)
    print(
        json.dumps(
            {
                "requests": r.requests,
                "requests_bad_pct": round(r.requests_bad_pct, 3),
                "users_affected_pct": round(r.users_affected_pct, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
