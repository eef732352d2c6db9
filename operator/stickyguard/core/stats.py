"""Exact tail probabilities for counts (pure, no dependencies).

The binomial upper tail P(X >= k), X ~ Bin(n, p), equals the regularized incomplete beta
I_p(k, n - k + 1). Evaluating it by a continued fraction (modified Lentz) costs a few dozen
iterations whatever n is, and extends smoothly to the non-integer counts that come from
Prometheus rates multiplied by a window.
"""

from __future__ import annotations

import math

_EPS = 1e-15
_TINY = 1e-300
_MAX_ITER = 300


def _beta_cf(a: float, b: float, x: float) -> float:
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, _MAX_ITER + 1):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPS:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b) for a, b > 0 and 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_cf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_cf(b, a, 1.0 - x) / b


_ASYMPTOTIC_N = 1e7  # beyond this the continued fraction needs too many terms to converge
_MAX_TERMS = 2_000_000  # a sum of pmf terms longer than this falls back to the normal form


def _log_pmf(i: int, n: float, p: float) -> float:
    return (
        math.lgamma(n + 1.0)
        - math.lgamma(i + 1.0)
        - math.lgamma(n - i + 1.0)
        + i * math.log(p)
        + (n - i) * math.log1p(-p)
    )


def _summed_sf(k: int, n: float, p: float) -> float | None:
    """P(X >= k) by summing the pmf from k away from the mean, each term from the last by the
    ratio of neighbours (exact up to rounding; the terms fall geometrically past a few standard
    deviations). Above the mean the upper tail itself is summed; below it, 1 minus the lower
    tail. None when the sum would need more than _MAX_TERMS terms (k within a hair of the
    mean of a gigantic n, where the normal form is exact enough)."""
    odds = p / (1.0 - p)
    upward = k > n * p
    i = k if upward else k - 1
    term = math.exp(_log_pmf(i, n, p))
    total = 0.0
    for _ in range(_MAX_TERMS):
        total += term
        if upward:
            term *= (n - i) / (i + 1.0) * odds
            i += 1
        else:
            term *= i / ((n - i + 1.0) * odds)
            i -= 1
        if term <= total * 1e-17 or i < 0 or i > n:
            return total if upward else 1.0 - total
    return None


def _normal_sf(k: float, n: float, p: float) -> float:
    """P(X >= k) by the normal approximation with continuity correction, for the one case the
    sum declines (see _summed_sf)."""
    sd = math.sqrt(n * p * (1.0 - p))
    if sd <= 0:
        return 1.0 if k <= n * p else 0.0
    z = (k - 0.5 - n * p) / sd
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def binomial_sf(k: float, n: float, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p); k and n may be non-integer (rates × window). Always a
    probability in [0, 1]. Above 1e7 events, with enough of them bad and good, the continued
    fraction no longer converges: the pmf is summed instead, from k rounded up (one event in
    millions), and only a k at the mean of a gigantic n gets the normal approximation."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    if p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    if n > _ASYMPTOTIC_N and min(n * p, n * (1.0 - p)) > 1000:
        summed = _summed_sf(math.ceil(k), n, p)
        value = _normal_sf(k, n, p) if summed is None else summed
    else:
        value = betainc(k, n - k + 1.0, p)
    return min(1.0, max(0.0, value)) if math.isfinite(value) else 1.0
