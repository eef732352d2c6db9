"""Envoy-style outlier detection, modelled from Envoy's documented defaults.

Each proxy judges alone, on the traffic it carries:
- consecutive_5xx: 5 consecutive 5xx from a host eject it;
- success rate: every 10 s interval, hosts with at least 100 requests count; when at least 5
  hosts count, a host whose success rate is below mean - 1.9 x stdev is ejected;
- an ejection lasts 30 s x the number of times the host was ejected (at most 300 s);
- at most 10% of hosts are ejected at once, but always at least one may be.
Only what the proxy sees counts: an HTTP 200 with a bad answer (quality) or a slow answer is a
success to it.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

CONSECUTIVE_5XX = 5
INTERVAL = 10.0
BASE_EJECTION = 30.0
MAX_EJECTION = 300.0
MAX_EJECTION_PERCENT = 10
SR_MIN_HOSTS = 5
SR_REQUEST_VOLUME = 100
SR_STDEV_FACTOR = 1.9


@dataclass
class _Host:
    consecutive: int = 0
    requests: int = 0
    failures: int = 0
    ejected_until: float = 0.0
    ejections: int = 0


class OutlierDetector:
    def __init__(self, hosts: list[str], proxies: int) -> None:
        self.hosts = list(hosts)
        self.interval = INTERVAL
        self.state = [{h: _Host() for h in hosts} for _ in range(proxies)]
        self._ejected: list[frozenset[str]] = [frozenset() for _ in range(proxies)]

    def ejected(self, proxy: int) -> frozenset[str]:
        return self._ejected[proxy]

    def _max_ejected(self) -> int:
        return max(1, math.floor(len(self.hosts) * MAX_EJECTION_PERCENT / 100))

    def _eject(self, proxy: int, host: str, t: float) -> bool:
        if host in self._ejected[proxy] or len(self._ejected[proxy]) >= self._max_ejected():
            return False
        h = self.state[proxy][host]
        h.ejections += 1
        h.ejected_until = t + min(MAX_EJECTION, BASE_EJECTION * h.ejections)
        h.consecutive = 0
        self._ejected[proxy] = self._ejected[proxy] | {host}
        return True

    def observe(self, proxy: int, host: str, is_5xx: bool, t: float) -> bool:
        """Records one response; True when it ejected the host."""
        h = self.state[proxy].get(host)
        if h is None:
            return False
        h.requests += 1
        if is_5xx:
            h.failures += 1
            h.consecutive += 1
            if h.consecutive >= CONSECUTIVE_5XX:
                return self._eject(proxy, host, t)
        else:
            h.consecutive = 0
        return False

    def end_interval(self, t: float) -> list[str]:
        """Un-ejects expired hosts, applies the success-rate rule; returns new ejections."""
        newly: list[str] = []
        for proxy, hosts in enumerate(self.state):
            for name in list(self._ejected[proxy]):
                if hosts[name].ejected_until <= t:
                    self._ejected[proxy] = self._ejected[proxy] - {name}
            rates = {
                n: 1 - h.failures / h.requests
                for n, h in hosts.items()
                if h.requests >= SR_REQUEST_VOLUME
            }
            if len(rates) >= SR_MIN_HOSTS:
                mean = statistics.fmean(rates.values())
                threshold = mean - SR_STDEV_FACTOR * statistics.pstdev(rates.values())
                for name, rate in sorted(rates.items(), key=lambda kv: kv[1]):
                    if rate < threshold and self._eject(proxy, name, t):
                        newly.append(name)
            for h in hosts.values():
                h.requests = h.failures = 0
        return newly
