"""Wilson intervals and the exact McNemar test, against scipy's binomial test."""

import numpy as np
import pytest
from scipy.stats import binomtest

from dlconcepts.train.metrics import mcnemar_exact, wilson_interval


@pytest.mark.parametrize("k,n", [(0, 10), (3, 10), (10, 10), (357, 360), (360, 360), (9_912, 10_000)])
@pytest.mark.parametrize("level", [0.9, 0.95])
def test_wilson_interval_matches_scipy(k, n, level):
    expected = binomtest(k, n).proportion_ci(confidence_level=level, method="wilson")
    low, high = wilson_interval(k, n, level)
    assert low == pytest.approx(expected.low, abs=1e-12) and high == pytest.approx(expected.high, abs=1e-12)
    assert low <= k / n <= high


def test_wilson_all_right_by_hand():
    # k = n: centre ± half collapses to the lower end n / (n + z²).
    z = 1.959963984540054
    assert wilson_interval(360, 360)[0] == pytest.approx(360 / (360 + z * z))
    with pytest.raises(ValueError):
        wilson_interval(5, 4)


@pytest.mark.parametrize("b,c", [(0, 0), (1, 0), (5, 5), (2, 9), (9, 2), (0, 12), (40, 61), (700, 640)])
def test_mcnemar_matches_scipy_binomial_test_on_discordant_pairs(b, c):
    rng = np.random.default_rng(b * 100 + c)
    both_right, both_wrong = 300, 7
    a = np.array([True] * b + [False] * c + [True] * both_right + [False] * both_wrong)
    bb = np.array([False] * b + [True] * c + [True] * both_right + [False] * both_wrong)
    order = rng.permutation(len(a))
    got_b, got_c, p = mcnemar_exact(a[order], bb[order])
    assert (got_b, got_c) == (b, c)
    expected = 1.0 if b + c == 0 else binomtest(b, b + c, 0.5).pvalue
    assert p == pytest.approx(expected, rel=1e-9, abs=1e-300)
    assert mcnemar_exact(bb[order], a[order])[2] == pytest.approx(p)  # symmetric in the two models


def test_mcnemar_refuses_unpaired_inputs():
    with pytest.raises(ValueError, match="equal 1-d"):
        mcnemar_exact(np.ones(3, bool), np.ones(4, bool))
