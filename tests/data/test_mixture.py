"""The 1-D Gaussian mixture: its density, CDF and samples against scipy and the closed-form moments."""

import numpy as np
import pytest

from dlconcepts.data.mixture import GaussianMixture1D


def test_density_and_cdf_match_scipy():
    stats = pytest.importorskip("scipy.stats")
    integrate = pytest.importorskip("scipy.integrate")
    mix = GaussianMixture1D.of([0.2, 0.5, 0.3], [-3, 0, 2.5], [0.4, 1.0, 0.7])
    x = np.linspace(-6, 6, 101)
    expected_pdf = 0.2 * stats.norm.pdf(x, -3, 0.4) + 0.5 * stats.norm.pdf(x, 0, 1) + 0.3 * stats.norm.pdf(x, 2.5, 0.7)
    expected_cdf = 0.2 * stats.norm.cdf(x, -3, 0.4) + 0.5 * stats.norm.cdf(x, 0, 1) + 0.3 * stats.norm.cdf(x, 2.5, 0.7)
    np.testing.assert_allclose(mix.pdf(x), expected_pdf, rtol=1e-12)
    np.testing.assert_allclose(mix.cdf(x), expected_cdf, rtol=1e-12, atol=1e-15)
    assert integrate.quad(lambda t: float(mix.pdf(t)), -np.inf, np.inf)[0] == pytest.approx(1.0, abs=1e-9)
    edges = np.array(mix.support(6.0))
    assert mix.bin_probabilities(edges).sum() == pytest.approx(1.0, abs=1e-8)


def test_samples_have_the_mixtures_mean_and_variance():
    mix = GaussianMixture1D()  # ½·N(−2, 0.5²) + ½·N(2, 0.5²): mean 0, variance Σ w (σ² + μ²) − 0² = 4.25
    x = mix.sample(np.random.default_rng(0), 200_000)
    assert abs(x.mean()) < 4 * np.sqrt(4.25 / len(x))
    assert x.var() == pytest.approx(4.25, rel=0.01)
    np.testing.assert_array_equal(x[:10], mix.sample(np.random.default_rng(0), 200_000)[:10])  # seeded


def test_bad_mixtures_are_refused():
    with pytest.raises(ValueError, match="sum to 1"):
        GaussianMixture1D.of([0.5, 0.6], [0, 1], [1, 1])
    with pytest.raises(ValueError, match="one value per component"):
        GaussianMixture1D.of([1.0], [0, 1], [1])
    with pytest.raises(ValueError, match="standard deviations"):
        GaussianMixture1D.of([1.0], [0], [0])
