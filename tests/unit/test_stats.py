"""Exact binomial tail against brute-force sums."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stickyguard.core.stats import betainc, binomial_sf


def brute_sf(k: int, n: int, p: float) -> float:
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1))


@pytest.mark.parametrize(
    ("k", "n", "p"),
    [
        (0, 10, 0.1),
        (1, 10, 0.1),
        (5, 10, 0.5),
        (10, 10, 0.3),
        (3, 200, 0.001),
        (60, 1000, 0.05),
        (2, 3, 0.01),
        (150, 300, 0.5),
    ],
)
def test_matches_brute_force(k: int, n: int, p: float) -> None:
    assert binomial_sf(k, n, p) == pytest.approx(brute_sf(k, n, p), rel=1e-9, abs=1e-300)


@given(st.integers(0, 120), st.integers(1, 120), st.floats(0.0001, 0.9999))
def test_property_matches_brute_force(k: int, n: int, p: float) -> None:
    k = min(k, n)
    assert binomial_sf(k, n, p) == pytest.approx(brute_sf(k, n, p), rel=1e-7, abs=1e-12)


def test_edges() -> None:
    assert binomial_sf(0, 5, 0.2) == 1.0
    assert binomial_sf(6, 5, 0.2) == 0.0
    assert binomial_sf(1, 5, 0.0) == 0.0
    assert binomial_sf(1, 5, 1.0) == 1.0
    assert betainc(2, 3, 0) == 0 and betainc(2, 3, 1) == 1


def test_monotone_in_k_for_non_integer_counts() -> None:
    values = [binomial_sf(k / 4, 100.5, 0.02) for k in range(1, 40)]
    assert all(a >= b for a, b in itertools.pairwise(values))


def test_binomial_sf_is_a_probability_for_huge_counts() -> None:
    """Above ~1e9 events the continued fraction did not converge (p-values above 1)."""
    from stickyguard.core.stats import binomial_sf

    assert binomial_sf(0.002 * 1e10, 1e10, 0.001) < 1e-12
    assert binomial_sf(0.0009 * 1e10, 1e10, 0.001) > 1 - 1e-12
    assert abs(binomial_sf(1e9 * 0.001, 1e9, 0.001) - 0.5) < 0.01


def poisson_sf(k: int, mean: float) -> float:
    """P(X >= k), X ~ Poisson(mean), summed in log space: the binomial's limit for tiny p."""
    total, i = 0.0, k
    log_term = k * math.log(mean) - mean - math.lgamma(k + 1)
    while True:
        term = math.exp(log_term)
        total += term
        i += 1
        log_term += math.log(mean) - math.log(i)
        if term < total * 1e-17 and i > mean:
            return total


@pytest.mark.parametrize(
    ("n", "p", "sigmas"),
    [(2e7, 5e-5, 4), (2e7, 5e-5, 6), (1e9, 2e-6, 5), (1e12, 1e-6, 6)],
)
def test_huge_counts_keep_the_tail_exact(n: float, p: float, sigmas: float) -> None:
    """Beyond the continued fraction's reach the tail is summed, not approximated: the normal
    form it replaced was up to 2.6x too small at 6 standard deviations (too significant)."""
    k = math.ceil(n * p + sigmas * math.sqrt(n * p))
    assert binomial_sf(k, n, p) == pytest.approx(poisson_sf(k, n * p), rel=0.01)


@pytest.mark.parametrize(("p", "sigmas"), [(1e-4, 3), (1e-4, 6), (0.3, 4), (0.3, -2)])
def test_no_jump_where_the_continued_fraction_hands_over(p: float, sigmas: float) -> None:
    """Just below and above 1e7 events the two methods agree (the normal form jumped 2x)."""
    low, high = 0.999e7, 1.001e7
    ratio = [
        binomial_sf(math.ceil(n * p + sigmas * math.sqrt(n * p * (1 - p))), n, p)
        for n in (low, high)
    ]
    assert ratio[0] == pytest.approx(ratio[1], rel=0.05)
