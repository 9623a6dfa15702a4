import numpy as np
import torch

from dlconcepts.train import accuracy, confusion_matrix, rmse


def test_accuracy_from_logits():
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]])
    assert accuracy(logits, torch.tensor([0, 1, 1])) == 2 / 3


def test_rmse_by_hand():
    assert rmse(np.array([[1.0], [3.0]]), np.array([[0.0], [0.0]])) == np.sqrt(5)


def test_confusion_matrix_counts():
    cm = confusion_matrix(np.array([0, 0, 1, 1, 1]), np.array([0, 1, 1, 1, 0]), 2)
    np.testing.assert_array_equal(cm, [[1, 1], [1, 2]])


# -- Fréchet distance and the binned JSD of generative models --

import math  # noqa: E402

import pytest  # noqa: E402

from dlconcepts.data.mixture import GaussianMixture1D  # noqa: E402
from dlconcepts.train.metrics import binned_js_divergence, binned_jsd_noise_floor, frechet_distance  # noqa: E402


def sample_with_moments(rng, mean, cov, n=400):
    """n rows whose sample mean and sample covariance (n − 1) are exactly `mean` and `cov`."""
    x = rng.standard_normal((n, len(mean)))
    x -= x.mean(axis=0)
    x = x @ np.linalg.inv(np.linalg.cholesky(np.cov(x, rowvar=False))).T  # whitened: sample covariance = I
    return x @ np.linalg.cholesky(cov).T + mean


def test_frechet_distance_equals_the_closed_form_for_diagonal_covariances():
    rng = np.random.default_rng(0)
    a_var, b_var = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    mean_a, mean_b = np.array([0.0, 1.0, -1.0]), np.array([2.0, 1.0, 0.5])
    a = sample_with_moments(rng, mean_a, np.diag(a_var))
    b = sample_with_moments(rng, mean_b, np.diag(b_var), n=250)
    # ‖μa − μb‖² + Σ (√a_i − √b_i)²: 4 + 0 + 2.25, plus (1 − 3)² + (2 − 1)² + 0.
    assert frechet_distance(a, b) == pytest.approx(6.25 + 5.0, rel=1e-9)


def test_frechet_distance_matches_scipy_sqrtm_for_full_covariances():
    linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(1)
    m_a, m_b = rng.standard_normal((6, 6)), rng.standard_normal((6, 6))
    cov_a, cov_b = m_a @ m_a.T + 0.1 * np.eye(6), m_b @ m_b.T + 0.1 * np.eye(6)
    mu_a, mu_b = rng.standard_normal(6), rng.standard_normal(6)
    a, b = sample_with_moments(rng, mu_a, cov_a), sample_with_moments(rng, mu_b, cov_b, n=300)
    reference = np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a + cov_b - 2 * linalg.sqrtm(cov_a @ cov_b).real)
    assert frechet_distance(a, b) == pytest.approx(reference, rel=1e-8)


def test_frechet_distance_is_zero_on_one_sample_symmetric_and_invariant_to_moving_both():
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((300, 5)), rng.standard_normal((200, 5)) * 1.5 + 0.3
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-9)
    rotation, _ = np.linalg.qr(rng.standard_normal((5, 5)))
    shift = rng.standard_normal(5)
    assert frechet_distance(a @ rotation + shift, b @ rotation + shift) == pytest.approx(frechet_distance(a, b), rel=1e-8)
    # Two finite samples of one distribution differ: the distance is positive and shrinks as they grow.
    small = np.mean([frechet_distance(rng.standard_normal((50, 5)), rng.standard_normal((50, 5))) for _ in range(20)])
    large = np.mean([frechet_distance(rng.standard_normal((800, 5)), rng.standard_normal((800, 5))) for _ in range(20)])
    assert small > 5 * large > 0
    with pytest.raises(ValueError, match="equal d"):
        frechet_distance(a, b[:, :3])


def _continuous_jsd(p, q, lo=-12.0, hi=12.0):
    quad = pytest.importorskip("scipy.integrate").quad

    def half_kl(f):
        def integrand(x):
            fx, m = f(x), 0.5 * (p(x) + q(x))
            return 0.5 * fx * math.log(fx / m) if fx > 0 else 0.0
        return quad(integrand, lo, hi, points=[-2, 0, 2], limit=400)[0]

    return half_kl(p) + half_kl(q)


def test_binned_jsd_estimates_the_continuous_jsd_of_known_densities():
    mixture = GaussianMixture1D()
    edges = np.arange(-6.0, 6.0 + 1e-9, 0.05)
    reference = mixture.bin_probabilities(edges)
    rng = np.random.default_rng(3)
    samples = rng.normal(0.0, 1.5, 400_000)
    normal = lambda x: math.exp(-0.5 * (x / 1.5) ** 2) / (1.5 * math.sqrt(2 * math.pi))  # noqa: E731
    exact = _continuous_jsd(lambda x: float(mixture.pdf(x)), normal)
    estimate = binned_js_divergence(samples, edges, reference)
    noise = (len(reference) - 1) / (8 * len(samples))
    assert 0.1 < exact < math.log(2)
    assert abs(estimate - exact) < 0.005 + noise


def test_binned_jsd_noise_floor_is_what_a_perfect_sampler_reads():
    mixture = GaussianMixture1D()
    edges = np.arange(-6.0, 6.0 + 1e-9, 0.1)
    reference = mixture.bin_probabilities(edges)
    m = 5000
    # Real draws from the data distribution itself, binned: their mean JSD is the estimator's bias at p_g = p_data.
    estimates = [binned_js_divergence(mixture.sample(np.random.default_rng(s), m), edges, reference) for s in range(40)]
    floor = binned_jsd_noise_floor(reference, m, np.random.default_rng(99), repeats=200)
    assert np.mean(estimates) == pytest.approx(floor, rel=0.1)
    # Where every bin holds many draws, the second-order formula (K − 1) / (8m) holds.
    uniform = np.full(50, 1 / 50)
    big_m = 200_000
    assert binned_jsd_noise_floor(uniform, big_m, np.random.default_rng(0), repeats=200) == pytest.approx(49 / (8 * big_m), rel=0.05)


def test_binned_jsd_counts_samples_outside_the_edges_and_checks_its_input():
    edges = np.linspace(-1, 1, 5)
    reference = np.full(4, 0.25)
    assert binned_js_divergence(np.full(100, 7.0), edges, reference) == pytest.approx(math.log(2))
    assert binned_js_divergence(np.array([-0.9, -0.4, 0.1, 0.6]), edges, reference) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="K\\+1 bin edges"):
        binned_js_divergence(np.zeros(3), edges, np.full(3, 1 / 3))
