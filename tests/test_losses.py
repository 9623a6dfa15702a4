"""dlconcepts.losses (torch): Gaussian KL and JSD against the NumPy scratch versions, torch.distributions,
Monte Carlo, scipy, and their defining properties."""

import ast
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from dlconcepts import losses
from dlconcepts.scratch import losses as scratch


def gaussians(seed, shape=(6, 4)):
    g = torch.Generator().manual_seed(seed)
    mu_p, mu_q = torch.randn(shape, generator=g, dtype=torch.float64), torch.randn(shape, generator=g, dtype=torch.float64)
    lv_p, lv_q = torch.randn(shape, generator=g, dtype=torch.float64), torch.randn(shape, generator=g, dtype=torch.float64)
    return mu_p, lv_p, mu_q, lv_q


def test_vae_kl_term_equals_the_closed_form_and_torch_distributions():
    mu, logvar, _, _ = gaussians(0)
    per_sample = losses.gaussian_kl_to_standard_normal(mu, logvar, reduction="none")
    assert per_sample.shape == (6,)
    std = (0.5 * logvar).exp()
    expected = scratch.gaussian_kl(mu.numpy(), std.numpy(), np.zeros(4), np.ones(4))
    np.testing.assert_allclose(per_sample.numpy(), expected, rtol=1e-12)
    reference = torch.distributions.kl_divergence(
        torch.distributions.Normal(mu, std), torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(std)))
    torch.testing.assert_close(per_sample, reference.sum(-1), rtol=1e-12, atol=0)
    assert losses.gaussian_kl_to_standard_normal(mu, logvar).item() == pytest.approx(per_sample.mean().item(), rel=1e-14)
    assert losses.gaussian_kl_to_standard_normal(mu, logvar, "sum").item() == pytest.approx(per_sample.sum().item(), rel=1e-14)
    zero = losses.gaussian_kl_to_standard_normal(torch.zeros(3, 2), torch.zeros(3, 2), "sum")
    assert zero.item() == 0.0  # N(0, I) against itself


def test_gaussian_kl_between_two_diagonal_gaussians():
    mu_p, lv_p, mu_q, lv_q = gaussians(1)
    value = losses.gaussian_kl(mu_p, lv_p, mu_q, lv_q, reduction="none")
    expected = scratch.gaussian_kl(mu_p.numpy(), np.exp(0.5 * lv_p.numpy()), mu_q.numpy(), np.exp(0.5 * lv_q.numpy()))
    np.testing.assert_allclose(value.numpy(), expected, rtol=1e-12)
    as_standard = losses.gaussian_kl(mu_p, lv_p, torch.zeros_like(mu_q), torch.zeros_like(lv_q), "none")
    torch.testing.assert_close(as_standard, losses.gaussian_kl_to_standard_normal(mu_p, lv_p, "none"), rtol=1e-13, atol=1e-15)
    assert (value > 0).all()
    torch.testing.assert_close(losses.gaussian_kl(mu_p, lv_p, mu_p, lv_p, "none"), torch.zeros(6, dtype=torch.float64))


def test_gaussian_kl_against_a_monte_carlo_estimate():
    # KL(p‖q) = E_{x~p}[log p(x) − log q(x)]: estimate it from n seeded draws and accept the closed form
    # when it lies within 4 standard errors of the estimate (a false alarm about once in 16,000 runs).
    mu_p, lv_p, mu_q, lv_q = (t[0] for t in gaussians(2))
    p = torch.distributions.Normal(mu_p, (0.5 * lv_p).exp())
    q = torch.distributions.Normal(mu_q, (0.5 * lv_q).exp())
    noise = torch.randn(200_000, len(mu_p), generator=torch.Generator().manual_seed(12), dtype=torch.float64)
    x = mu_p + (0.5 * lv_p).exp() * noise  # seeded draws from p
    log_ratio = (p.log_prob(x) - q.log_prob(x)).sum(-1)
    estimate, standard_error = log_ratio.mean().item(), (log_ratio.std() / math.sqrt(len(log_ratio))).item()
    closed = losses.gaussian_kl(mu_p, lv_p, mu_q, lv_q, "sum").item()
    assert abs(closed - estimate) <= 4 * standard_error


def test_js_divergence_equals_scratch_and_its_properties():
    g = torch.Generator().manual_seed(3)
    logits_p, logits_q = torch.randn(20, 7, generator=g, dtype=torch.float64) * 2, torch.randn(20, 7, generator=g, dtype=torch.float64) * 2
    p, q = logits_p.softmax(-1), logits_q.softmax(-1)
    value = losses.js_divergence(p, q, reduction="none")
    np.testing.assert_allclose(value.numpy(), scratch.js_divergence(p.numpy(), q.numpy()), rtol=1e-12)
    torch.testing.assert_close(losses.js_divergence_from_logits(logits_p, logits_q, "none"), value, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(losses.js_divergence(q, p, "none"), value, rtol=1e-14, atol=0)  # symmetric
    assert (value > 0).all() and (value <= math.log(2)).all()
    assert losses.js_divergence(p, p, "sum").abs().item() <= 1e-14  # zero when equal
    disjoint = losses.js_divergence(torch.tensor([0.5, 0.5, 0.0]), torch.tensor([0.0, 0.0, 1.0]), "none")
    assert disjoint.item() == pytest.approx(math.log(2), rel=1e-6)  # float32 here: log 2 to float32 precision


def test_js_divergence_matches_scipy():
    distance = pytest.importorskip("scipy.spatial.distance")
    p = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    q = torch.tensor([0.4, 0.4, 0.1, 0.1], dtype=torch.float64)
    assert losses.js_divergence(p, q, "none").item() == pytest.approx(distance.jensenshannon(p, q) ** 2, rel=1e-10)


def test_js_from_logits_has_finite_gradients_even_where_softmax_underflows():
    logits_p = torch.tensor([[800.0, 0.0, -800.0]], dtype=torch.float64, requires_grad=True)
    logits_q = torch.tensor([[-800.0, 0.0, 800.0]], dtype=torch.float64, requires_grad=True)
    value = losses.js_divergence_from_logits(logits_p, logits_q)
    value.backward()
    assert value.item() == pytest.approx(math.log(2), rel=1e-12)
    assert torch.isfinite(logits_p.grad).all() and torch.isfinite(logits_q.grad).all()
    g = torch.Generator().manual_seed(4)
    inputs = (torch.randn(3, 5, generator=g, dtype=torch.float64, requires_grad=True),
              torch.randn(3, 5, generator=g, dtype=torch.float64, requires_grad=True))
    assert torch.autograd.gradcheck(lambda a, b: losses.js_divergence_from_logits(a, b, "sum"), inputs)
    mu, lv, _, _ = (t.clone().requires_grad_() for t in gaussians(5, (2, 3)))
    assert torch.autograd.gradcheck(lambda m, v: losses.gaussian_kl_to_standard_normal(m, v, "sum"), (mu, lv))


def test_unknown_reduction_is_refused():
    with pytest.raises(ValueError, match="reduction 'avg'"):
        losses.js_divergence(torch.tensor([1.0]), torch.tensor([1.0]), reduction="avg")


def test_losses_module_imports_only_torch():
    tree = ast.parse(Path(losses.__file__).read_text())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            roots.add(node.module.split(".")[0])
    assert roots <= {"torch", "math", "__future__"}, roots
