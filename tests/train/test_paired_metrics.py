"""Wilson intervals and the exact McNemar test (both by scipy's binomial test) against the formulas by hand."""

import math
from statistics import NormalDist

import numpy as np
import pytest

from dlconcepts.train.metrics import mcnemar_exact, wilson_interval


def wilson_by_hand(k: int, n: int, level: float) -> tuple[float, float]:
    """Wilson (1927): (p + z²/2n ± z·√(p(1−p)/n + z²/4n²)) / (1 + z²/n)."""
    z = NormalDist().inv_cdf(0.5 + level / 2)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


@pytest.mark.parametrize("k,n", [(0, 10), (3, 10), (10, 10), (357, 360), (360, 360), (9_912, 10_000)])
@pytest.mark.parametrize("level", [0.9, 0.95])
def test_wilson_interval_is_the_formula(k, n, level):
    low, high = wilson_interval(k, n, level)
    expected = wilson_by_hand(k, n, level)
    assert low == pytest.approx(expected[0], abs=1e-12) and high == pytest.approx(expected[1], abs=1e-12)
    assert low <= k / n <= high


def test_wilson_all_right_by_hand():
    # k = n: centre ± half collapses to the lower end n / (n + z²).
    z = 1.959963984540054
    assert wilson_interval(360, 360)[0] == pytest.approx(360 / (360 + z * z))
    with pytest.raises(ValueError):
        wilson_interval(5, 4)


@pytest.mark.parametrize("b,c", [(0, 0), (1, 0), (5, 5), (2, 9), (9, 2), (0, 12), (40, 61), (700, 640)])
def test_mcnemar_counts_discordant_pairs_and_sums_binomial_tails(b, c):
    rng = np.random.default_rng(b * 100 + c)
    both_right, both_wrong = 300, 7
    a = np.array([True] * b + [False] * c + [True] * both_right + [False] * both_wrong)
    bb = np.array([False] * b + [True] * c + [True] * both_right + [False] * both_wrong)
    order = rng.permutation(len(a))
    got_b, got_c, p = mcnemar_exact(a[order], bb[order])
    assert (got_b, got_c) == (b, c)
    n = b + c  # under the null each discordant case is a fair coin: p = min(1, 2·P(X ≤ min(b, c)))
    expected = 1.0 if n == 0 else min(1.0, 2 * sum(math.comb(n, i) for i in range(min(b, c) + 1)) / 2**n)
    assert p == pytest.approx(expected, rel=1e-9, abs=1e-300)
    assert mcnemar_exact(bb[order], a[order])[2] == pytest.approx(p)  # symmetric in the two models


def test_mcnemar_refuses_unpaired_inputs():
    with pytest.raises(ValueError, match="equal 1-d"):
        mcnemar_exact(np.ones(3, bool), np.ones(4, bool))
