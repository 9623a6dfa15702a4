import numpy as np
import pytest

from dlconcepts.data import GaussianBlobs, noisy_cubic, noisy_line, quadratic, two_gaussian_blobs


def test_quadratic_is_the_course_formula():
    d = quadratic()
    assert d.X.shape == (100, 1) and d.y.shape == (100, 1)
    assert d.X[0, 0] == -5000 and d.X[-1, 0] == 4900
    x = d.X[:, 0]
    np.testing.assert_array_equal(d.y[:, 0], 3 * x**2 + 25 * x + 580)
    assert d.y[d.X[:, 0] == 0][0, 0] == 580


def test_noisy_line_and_cubic_noise_is_bounded_and_seeded():
    line = noisy_line(np.random.default_rng(0))
    assert line.X.shape == (40, 1)
    noise = line.y[:, 0] - 3 * line.X[:, 0]
    assert noise.min() >= 0 and noise.max() <= 100
    cubic = noisy_cubic(np.random.default_rng(0))
    x = cubic.X[:, 0]
    assert len(x) == 40 and x[0] == -5000 and x[1] - x[0] == 250
    noise = cubic.y[:, 0] - (3 * x**3 + 2 * x**2 + 5 * x)
    assert noise.min() >= 0 and noise.max() <= 500
    again = noisy_cubic(np.random.default_rng(0))
    np.testing.assert_array_equal(cubic.y, again.y)
    assert not np.array_equal(cubic.y, noisy_cubic(np.random.default_rng(1)).y)


def test_blobs_have_the_course_parameters():
    d = two_gaussian_blobs(np.random.default_rng(0), n_per_class=200_000)
    for c, means, stds in ((0, (0, 5), (1, 2)), (1, (0.8, 3), (1, 1.5))):
        part = d.X[d.y == c]
        np.testing.assert_allclose(part.mean(axis=0), means, atol=0.02)
        np.testing.assert_allclose(part.std(axis=0), stds, atol=0.02)
    assert two_gaussian_blobs(np.random.default_rng(0)).X.shape == (200, 2)


def test_log_density_matches_the_gaussian_formula():
    blobs = GaussianBlobs()
    x = np.array([[0.3, 4.0]])
    by_hand = (
        np.exp(-0.5 * ((0.3 - 0.8) / 1.0) ** 2) / np.sqrt(2 * np.pi)
        * np.exp(-0.5 * ((4.0 - 3.0) / 1.5) ** 2) / (1.5 * np.sqrt(2 * np.pi))
    )
    assert np.exp(blobs.log_density(x, 1))[0] == pytest.approx(by_hand, rel=1e-12)


def test_bayes_accuracy_agrees_with_numerical_integration():
    # Independent of the Monte Carlo: accuracy of the Bayes rule = ∫ max(p0, p1) / 2 dx on a fine grid.
    blobs = GaussianBlobs()
    g1, g2 = np.meshgrid(np.linspace(-9, 10, 1400), np.linspace(-10, 17, 1400))
    grid = np.column_stack([g1.ravel(), g2.ravel()])
    cell = (19 / 1399) * (27 / 1399)
    p0, p1 = np.exp(blobs.log_density(grid, 0)), np.exp(blobs.log_density(grid, 1))
    assert (p0.sum() * cell) == pytest.approx(1, abs=1e-4)
    integral = np.maximum(p0, p1).sum() * cell / 2
    mc, se = blobs.bayes_optimal_accuracy(np.random.default_rng(0), 1_000_000)
    assert abs(mc - integral) < 4 * se
    assert 0.7 < integral < 0.8
