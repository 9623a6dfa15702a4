"""The course's four losses in NumPy, against torch.nn.functional, closed forms and scipy."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dlconcepts.scratch import losses


def random_distributions(rng, shape):
    p = rng.random(shape) ** 3  # skewed, some entries near 0
    return p / p.sum(axis=-1, keepdims=True)


def test_mse_matches_torch_and_refuses_broadcasting():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(7, 3)), rng.normal(size=(7, 3))
    assert losses.mse(a, b) == pytest.approx(F.mse_loss(torch.as_tensor(a), torch.as_tensor(b)).item(), rel=1e-14)
    with pytest.raises(ValueError, match="differ in shape"):
        losses.mse(np.zeros((4, 1)), np.zeros(4))


def test_cross_entropy_from_logits_matches_torch_for_indices_and_probabilities():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(8, 5)) * 3
    labels = rng.integers(0, 5, size=8)
    soft = random_distributions(rng, (8, 5))
    expected = F.cross_entropy(torch.as_tensor(logits), torch.as_tensor(labels)).item()
    assert losses.cross_entropy_from_logits(logits, labels) == pytest.approx(expected, rel=1e-13)
    expected = F.cross_entropy(torch.as_tensor(logits), torch.as_tensor(soft)).item()
    assert losses.cross_entropy_from_logits(logits, soft) == pytest.approx(expected, rel=1e-13)
    np.testing.assert_allclose(losses.log_softmax(logits), F.log_softmax(torch.as_tensor(logits), dim=-1).numpy(), rtol=1e-13)


def test_log_softmax_is_stable_for_huge_logits():
    logits = np.array([[1000.0, 0.0, -1000.0], [-1e4, -1e4 + 1, -1e4 + 2]])
    out = losses.log_softmax(logits)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, F.log_softmax(torch.as_tensor(logits), dim=-1).numpy(), rtol=1e-13)
    np.testing.assert_allclose(losses.softmax(logits).sum(axis=-1), 1.0, rtol=1e-15)
    assert losses.cross_entropy_from_logits(logits, np.array([0, 2])) == pytest.approx(
        F.cross_entropy(torch.as_tensor(logits), torch.tensor([0, 2])).item(), rel=1e-13)


def test_cross_entropy_on_probabilities():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(6, 4))
    labels = rng.integers(0, 4, size=6)
    assert losses.cross_entropy(losses.softmax(logits), labels) == pytest.approx(
        losses.cross_entropy_from_logits(logits, labels), rel=1e-12)
    p = np.array([[0.5, 0.5, 0.0]])
    assert losses.cross_entropy(p, np.array([[1.0, 0.0, 0.0]])) == pytest.approx(math.log(2))  # 0·log 0 = 0
    assert losses.cross_entropy(p, np.array([2])) == math.inf  # the true class was given probability 0
    with pytest.raises(ValueError, match="class indices"):
        losses.cross_entropy(p, np.array([3]))


def test_kl_matches_torch_kl_div_with_its_reversed_log_convention():
    rng = np.random.default_rng(3)
    p, q = random_distributions(rng, (5, 6)), random_distributions(rng, (5, 6))
    # F.kl_div(input, target) = Σ target·(log target − input): input is log q, target is p -> KL(p‖q).
    expected = F.kl_div(torch.as_tensor(np.log(q)), torch.as_tensor(p), reduction="none").sum(-1).numpy()
    np.testing.assert_allclose(losses.kl_divergence(p, q), expected, rtol=1e-12)
    assert (losses.kl_divergence(p, q) > 0).all()  # Gibbs' inequality, p ≠ q
    np.testing.assert_allclose(losses.kl_divergence(p, p), 0.0, atol=1e-15)


def test_kl_matches_scipy_entropy():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(4)
    p, q = random_distributions(rng, 7), random_distributions(rng, 7)
    assert losses.kl_divergence(p, q) == pytest.approx(stats.entropy(p, q), rel=1e-12)


def test_kl_zero_and_infinite_conventions():
    p = np.array([0.5, 0.5, 0.0])
    q = np.array([0.25, 0.25, 0.5])
    assert losses.kl_divergence(p, q) == pytest.approx(math.log(2))  # 0·log(0/q) contributes 0
    assert losses.kl_divergence(q, p) == math.inf  # q puts mass where p has none
    with pytest.raises(ValueError, match="non-negative"):
        losses.kl_divergence(np.array([1.5, -0.5]), np.array([0.5, 0.5]))
    with pytest.raises(ValueError, match="does not sum to 1"):
        losses.kl_divergence(np.array([2.0, 3.0]), np.array([0.5, 0.5]))


def test_gaussian_kl_closed_form_known_values_and_numerical_integration():
    # KL(N(0,1)‖N(1,1)) = (μ_p − μ_q)²/2 = 1/2; KL(N(0,1)‖N(0,2²)) = log 2 + 1/8 − 1/2.
    assert losses.gaussian_kl(0.0, 1.0, 1.0, 1.0) == pytest.approx(0.5, rel=1e-15)
    assert losses.gaussian_kl(0.0, 1.0, 0.0, 2.0) == pytest.approx(math.log(2) + 1 / 8 - 1 / 2, rel=1e-15)
    assert losses.gaussian_kl(0.3, 0.7, 0.3, 0.7) == 0.0
    integrate = pytest.importorskip("scipy.integrate")
    mu_p, s_p, mu_q, s_q = 0.4, 0.8, -0.5, 1.6

    def log_normal(x, mu, s):
        return -0.5 * ((x - mu) / s) ** 2 - math.log(s * math.sqrt(2 * math.pi))

    value, error = integrate.quad(
        lambda x: math.exp(log_normal(x, mu_p, s_p)) * (log_normal(x, mu_p, s_p) - log_normal(x, mu_q, s_q)),
        -np.inf, np.inf)
    assert losses.gaussian_kl(mu_p, s_p, mu_q, s_q) == pytest.approx(value, abs=max(10 * error, 1e-10))


def test_gaussian_kl_of_diagonal_gaussians_sums_the_dimensions():
    rng = np.random.default_rng(5)
    mu_p, mu_q = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    s_p, s_q = rng.uniform(0.5, 2, size=(4, 3)), rng.uniform(0.5, 2, size=(4, 3))
    batch = losses.gaussian_kl(mu_p, s_p, mu_q, s_q)
    assert batch.shape == (4,)
    by_hand = [[losses.gaussian_kl(mu_p[i, j], s_p[i, j], mu_q[i, j], s_q[i, j]) for j in range(3)] for i in range(4)]
    np.testing.assert_allclose(batch, np.sum(by_hand, axis=1), rtol=1e-14)
    p = torch.distributions.Normal(torch.as_tensor(mu_p), torch.as_tensor(s_p))
    q = torch.distributions.Normal(torch.as_tensor(mu_q), torch.as_tensor(s_q))
    np.testing.assert_allclose(batch, torch.distributions.kl_divergence(p, q).sum(-1).numpy(), rtol=1e-12)
    with pytest.raises(ValueError, match="standard deviations"):
        losses.gaussian_kl(0.0, -1.0, 0.0, 1.0)


def test_js_divergence_properties():
    rng = np.random.default_rng(6)
    p, q = random_distributions(rng, (50, 8)), random_distributions(rng, (50, 8))
    jsd = losses.js_divergence(p, q)
    np.testing.assert_allclose(jsd, losses.js_divergence(q, p), rtol=1e-14)  # symmetric
    assert (jsd > 0).all() and (jsd <= math.log(2)).all()  # positive for p ≠ q, bounded by log 2
    np.testing.assert_allclose(losses.js_divergence(p, p), 0.0, atol=1e-15)  # zero when equal
    disjoint = losses.js_divergence(np.array([0.5, 0.5, 0.0, 0.0]), np.array([0.0, 0.0, 0.3, 0.7]))
    assert disjoint == pytest.approx(math.log(2), rel=1e-15)  # the bound is reached on disjoint supports
    near = losses.js_divergence(np.array([0.5, 0.5]), np.array([0.5 + 1e-4, 0.5 - 1e-4]))
    # Approached continuously: to second order JSD ≈ (1/8)·Σ δ_i²/p_i = (1/8)·(2·1e-8/0.5) = 5e-9,
    # with a relative error of order δ/p = 2e-4.
    assert near == pytest.approx(5e-9, rel=1e-3)


def test_js_divergence_matches_scipy_jensenshannon_squared():
    distance = pytest.importorskip("scipy.spatial.distance")
    rng = np.random.default_rng(7)
    for _ in range(5):
        p, q = random_distributions(rng, 6), random_distributions(rng, 6)
        # scipy returns the Jensen–Shannon *distance*, the square root of the divergence, natural log by default.
        assert losses.js_divergence(p, q) == pytest.approx(distance.jensenshannon(p, q) ** 2, rel=1e-10)
