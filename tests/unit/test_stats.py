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

    for n in (1e8, 1e9, 5e10, 1e12):
        for frac in (0.0009, 0.001, 0.0011, 0.002):
            v = binomial_sf(frac * n, n, 0.001)
            assert 0.0 <= v <= 1.0
    assert binomial_sf(0.002 * 1e10, 1e10, 0.001) < 1e-12
    assert binomial_sf(0.0009 * 1e10, 1e10, 0.001) > 1 - 1e-12
    assert abs(binomial_sf(1e9 * 0.001, 1e9, 0.001) - 0.5) < 0.01
