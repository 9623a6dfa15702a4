"""dlconcepts.losses (torch): Gaussian KL and JSD against the NumPy scratch versions, torch.distributions,
Monte Carlo, scipy, and their defining properties."""

import ast
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

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


# --- the VAE's KL against Monte Carlo, and the reconstruction losses against torch's own ------------


def test_vae_kl_term_against_a_monte_carlo_estimate_from_reparameterized_draws():
    # KL(q‖N(0, I)) = E_{z~q}[log q(z) − log p(z)], z = μ + σ·ε: 400,000 seeded draws per row; the closed
    # form must lie within 4 standard errors of each row's estimate.
    mu = torch.tensor([[0.0, 0.0, 0.0], [1.5, -0.7, 0.2], [-2.0, 0.3, 1.1]], dtype=torch.float64)
    logvar = torch.tensor([[0.0, 0.0, 0.0], [-1.2, 0.8, 0.0], [0.5, -2.5, 1.7]], dtype=torch.float64)
    closed = losses.gaussian_kl_to_standard_normal(mu, logvar, "none")
    eps = torch.randn(400_000, *mu.shape, generator=torch.Generator().manual_seed(21), dtype=torch.float64)
    z = mu + (0.5 * logvar).exp() * eps
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    prior = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    log_ratio = (q.log_prob(z) - prior.log_prob(z)).sum(-1)  # [draws, rows]
    estimate, standard_error = log_ratio.mean(0), log_ratio.std(0) / math.sqrt(len(log_ratio))
    assert closed[0].item() == 0.0 and standard_error[0].item() == 0.0  # q = p: every draw's log ratio is 0
    assert ((closed[1:] - estimate[1:]).abs() <= 4 * standard_error[1:]).all(), (closed, estimate, standard_error)


def test_vae_kl_term_is_zero_only_at_the_prior():
    values = torch.linspace(-2, 2, 9, dtype=torch.float64)
    mu, logvar = torch.meshgrid(values, values, indexing="ij")
    kl = losses.gaussian_kl_to_standard_normal(mu.reshape(-1, 1), logvar.reshape(-1, 1), "none")
    at_prior = (mu.reshape(-1) == 0) & (logvar.reshape(-1) == 0)
    assert kl[at_prior].item() == 0.0
    assert (kl[~at_prior] > 0).all()
    # Per dimension it is ½μ² + ½(σ² − 1 − log σ²): a parabola in μ plus a convex function of log σ² with its minimum at 0.
    torch.testing.assert_close(kl, 0.5 * mu.reshape(-1) ** 2 + 0.5 * (logvar.exp() - 1 - logvar).reshape(-1))


def images_and_logits(seed=6, shape=(5, 1, 4, 3)):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g, dtype=torch.float64)
    x[0] = (x[0] > 0.5).double()  # one black-and-white image beside the grey ones
    logits = 3 * torch.randn(shape, generator=g, dtype=torch.float64)
    return x, logits


def test_reconstruction_mse_is_a_per_pixel_mean_per_image():
    x, logits = images_and_logits()
    recon = logits.sigmoid()
    per_image = losses.reconstruction_mse(recon, x, "none")
    assert per_image.shape == (5,)
    torch.testing.assert_close(per_image, ((recon - x) ** 2).mean(dim=(1, 2, 3)))
    torch.testing.assert_close(losses.reconstruction_mse(recon, x), F.mse_loss(recon, x), rtol=1e-14, atol=0)
    torch.testing.assert_close(losses.reconstruction_mse(recon, x, "sum"), F.mse_loss(recon, x, reduction="sum") / 12)
    with pytest.raises(ValueError, match="one shape"):
        losses.reconstruction_mse(recon, x[:, 0])


def test_bernoulli_nll_is_bce_summed_over_pixels_and_averaged_over_images():
    x, logits = images_and_logits()
    per_image = losses.bernoulli_nll(logits, x, "none")
    p = logits.sigmoid()
    by_hand = -(x * p.log() + (1 - x) * (1 - p).log()).sum(dim=(1, 2, 3))
    torch.testing.assert_close(per_image, by_hand, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(losses.bernoulli_nll(logits, x), F.binary_cross_entropy(p, x, reduction="sum") / 5, rtol=1e-10, atol=0)
    torch.testing.assert_close(losses.bernoulli_nll(logits, x, "sum"), F.binary_cross_entropy_with_logits(logits, x, reduction="sum"))
    # For black-and-white pixels it is −log of the Bernoulli likelihood, as torch.distributions has it.
    bernoulli = torch.distributions.Bernoulli(logits=logits[0])
    torch.testing.assert_close(per_image[0], -bernoulli.log_prob(x[0]).sum())
    huge = torch.tensor([[800.0, -800.0]], dtype=torch.float64)
    assert losses.bernoulli_nll(huge, torch.tensor([[0.0, 1.0]], dtype=torch.float64)).item() == pytest.approx(1600.0)


def test_bernoulli_entropy_is_the_floor_of_the_cross_entropy_on_grey_levels():
    x, logits = images_and_logits()
    floor = losses.bernoulli_entropy(x, "none")
    at_targets = torch.logit(x.clamp(1e-12, 1 - 1e-12)).requires_grad_()
    value = losses.bernoulli_nll(at_targets, x, "none")
    torch.testing.assert_close(value.detach(), floor, rtol=1e-8, atol=1e-9)  # reached at p = x ...
    value.sum().backward()
    assert at_targets.grad.abs().max().item() < 1e-9  # ... where the gradient vanishes: the minimum
    assert (losses.bernoulli_nll(logits, x, "none") > floor).all()
    assert floor[0].item() == 0.0  # black and white: the floor is 0
    assert floor[1:].min().item() > 0


def test_gaussian_nll_matches_torch_and_the_normal_density():
    x, logits = images_and_logits()
    mean, sigma = logits.sigmoid(), 0.3
    per_image = losses.gaussian_nll(mean, x, sigma, "none")
    reference = -torch.distributions.Normal(mean, sigma).log_prob(x).sum(dim=(1, 2, 3))
    torch.testing.assert_close(per_image, reference, rtol=1e-12, atol=1e-12)
    torch_own = F.gaussian_nll_loss(mean, x, torch.full_like(mean, sigma**2), full=True, reduction="sum") / len(x)
    torch.testing.assert_close(losses.gaussian_nll(mean, x, sigma), torch_own, rtol=1e-12, atol=0)
    with pytest.raises(ValueError, match="sigma"):
        losses.gaussian_nll(mean, x, 0.0)


def test_gaussian_log_density_matches_torch_distributions():
    mu, logvar, z, _ = gaussians(7, (4, 3))
    expected = torch.distributions.Normal(mu, (0.5 * logvar).exp()).log_prob(z).sum(-1)
    torch.testing.assert_close(losses.gaussian_log_density(z, mu, logvar), expected, rtol=1e-12, atol=1e-12)


def test_reparameterized_log_likelihood_gradient_matches_finite_differences():
    # ELBO's reconstruction term through z = μ + exp(½ log σ²)·ε with ε fixed: gradcheck compares autograd
    # with central finite differences in float64, for μ, log σ² and the decoder's weights.
    from dlconcepts.nets.autoencoder import reparameterize

    g = torch.Generator().manual_seed(8)
    mu = torch.randn(3, 2, generator=g, dtype=torch.float64, requires_grad=True)
    logvar = torch.randn(3, 2, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(5, 2, generator=g, dtype=torch.float64, requires_grad=True)
    eps = torch.randn(3, 2, generator=g, dtype=torch.float64)
    x = torch.rand(3, 5, generator=g, dtype=torch.float64)

    def negative_log_likelihood(m, v, w):
        return losses.bernoulli_nll(reparameterize(m, v, eps) @ w.T, x, "sum")

    assert torch.autograd.gradcheck(negative_log_likelihood, (mu, logvar, weight))
    # And against the chain rule by hand: ∂z/∂μ = 1, ∂z/∂log σ² = ½σε, ∂(−log p)/∂logit = sigmoid(logit) − x.
    negative_log_likelihood(mu, logvar, weight).backward()
    z = reparameterize(mu, logvar, eps).detach()
    d_logits = (z @ weight.detach().T).sigmoid() - x
    d_z = d_logits @ weight.detach()
    torch.testing.assert_close(mu.grad, d_z)
    torch.testing.assert_close(logvar.grad, d_z * 0.5 * (0.5 * logvar.detach()).exp() * eps)


# --- The GAN losses and the course's link to the JSD ------------------------------------------------


def _gaussian_pdf(x, mean, std):
    return np.exp(-0.5 * ((x - mean) / std) ** 2) / (std * math.sqrt(2 * math.pi))


# Pairs (p_data, p_g) of 1-D densities with closed forms: a two-bump mixture against a single Gaussian,
# two Gaussians of different means and widths.
DENSITY_PAIRS = {
    "mixture vs gaussian": (lambda x: 0.5 * _gaussian_pdf(x, -2, 0.5) + 0.5 * _gaussian_pdf(x, 2, 0.5),
                            lambda x: _gaussian_pdf(x, 0.0, 1.5)),
    "two gaussians": (lambda x: _gaussian_pdf(x, 0.0, 1.0), lambda x: _gaussian_pdf(x, 1.0, 1.5)),
}
# Their CDFs (scipy.stats), for the probabilities of bins.
DENSITY_CDFS = {
    "mixture vs gaussian": (lambda e, st: 0.5 * st.norm.cdf(e, -2, 0.5) + 0.5 * st.norm.cdf(e, 2, 0.5),
                            lambda e, st: st.norm.cdf(e, 0.0, 1.5)),
    "two gaussians": (lambda e, st: st.norm.cdf(e, 0.0, 1.0), lambda e, st: st.norm.cdf(e, 1.0, 1.5)),
}


def _integrate(f):
    quad = pytest.importorskip("scipy.integrate").quad
    value, _ = quad(f, -15, 15, points=[-2, 0, 1, 2], limit=400, epsabs=1e-12, epsrel=1e-10)
    return value


def _minimax_value(p_data, p_g, discriminator):
    """V(D, G) = ∫ p_data log D + p_g log(1 − D) dx, by quadrature (Goodfellow et al. 2014, eq. 1)."""
    def integrand(x):
        d = discriminator(x)
        return p_data(x) * math.log(d) + p_g(x) * math.log1p(-d)
    return _integrate(integrand)


def _jsd_by_definition(p_data, p_g):
    """½ KL(p_data ‖ m) + ½ KL(p_g ‖ m), m = ½(p_data + p_g), each KL by its own quadrature."""
    def kl_to_mixture(p):
        def integrand(x):
            px, m = p(x), 0.5 * (p_data(x) + p_g(x))
            return px * math.log(px / m) if px > 0 else 0.0
        return _integrate(integrand)
    return 0.5 * kl_to_mixture(p_data) + 0.5 * kl_to_mixture(p_g)


@pytest.mark.parametrize("pair", DENSITY_PAIRS)
def test_minimax_value_with_the_optimal_discriminator_is_twice_the_jsd_minus_log_4(pair):
    p_data, p_g = DENSITY_PAIRS[pair]
    optimal = lambda x: p_data(x) / (p_data(x) + p_g(x))  # noqa: E731 — Goodfellow et al. 2014, Prop. 1
    value = _minimax_value(p_data, p_g, optimal)
    jsd = _jsd_by_definition(p_data, p_g)
    assert 0.01 < jsd < math.log(2)
    assert value == pytest.approx(2 * jsd - math.log(4), abs=1e-8)  # Theorem 1
    # A third route to the JSD: losses.js_divergence on the probabilities of 6,000 narrow bins.
    stats = pytest.importorskip("scipy.stats")
    edges = np.linspace(-15, 15, 6001)
    cdf_data, cdf_g = (cdf(edges, stats) for cdf in DENSITY_CDFS[pair])
    binned = losses.js_divergence(torch.from_numpy(np.diff(cdf_data)), torch.from_numpy(np.diff(cdf_g)), "none").item()
    assert binned == pytest.approx(jsd, rel=1e-4)



def test_gan_value_of_the_optimal_logits_is_a_monte_carlo_estimate_of_the_identity():
    # losses.gan_value on samples, with D*'s logit log p_data − log p_g, estimates V(D*, G) = 2·JSD − log 4.
    p_data, p_g = DENSITY_PAIRS["mixture vs gaussian"]
    rng = np.random.default_rng(0)
    n = 400_000
    x_data = np.where(rng.random(n) < 0.5, rng.normal(-2, 0.5, n), rng.normal(2, 0.5, n))
    x_g = rng.normal(0.0, 1.5, n)
    logit = lambda x: torch.from_numpy(np.log(p_data(x)) - np.log(p_g(x)))  # noqa: E731
    estimate = losses.gan_value(logit(x_data), logit(x_g)).item()
    per_sample_sd = math.sqrt(float(torch.nn.functional.logsigmoid(logit(x_data)).var() + torch.nn.functional.logsigmoid(-logit(x_g)).var()) / n)
    expected = 2 * _jsd_by_definition(p_data, p_g) - math.log(4)
    assert abs(estimate - expected) <= 4 * per_sample_sd


@pytest.mark.parametrize("pair", DENSITY_PAIRS)
def test_any_other_discriminator_scores_a_lower_value(pair):
    p_data, p_g = DENSITY_PAIRS[pair]
    optimal_logit = lambda x: math.log(p_data(x)) - math.log(p_g(x))  # noqa: E731
    sigmoid = lambda a: 1 / (1 + math.exp(-a))  # noqa: E731
    best = _minimax_value(p_data, p_g, lambda x: sigmoid(optimal_logit(x)))
    others = {
        "D = ½": lambda x: 0.5,
        "logit + 0.3": lambda x: sigmoid(optimal_logit(x) + 0.3),
        "logit − 0.3·sin x": lambda x: sigmoid(optimal_logit(x) - 0.3 * math.sin(x)),
        "logit × 1.2": lambda x: sigmoid(1.2 * optimal_logit(x)),
    }
    for name, d in others.items():
        assert _minimax_value(p_data, p_g, d) < best - 1e-6, name
    assert _minimax_value(p_data, p_g, lambda x: 0.5) == pytest.approx(-math.log(4), abs=1e-9)


def test_jsd_is_zero_and_the_value_is_minus_log_4_when_the_generator_matches_the_data():
    p = DENSITY_PAIRS["mixture vs gaussian"][0]
    assert _jsd_by_definition(p, p) == pytest.approx(0.0, abs=1e-12)
    assert _minimax_value(p, p, lambda x: p(x) / (p(x) + p(x))) == pytest.approx(-math.log(4), abs=1e-9)
    e = losses.gan_equilibrium()
    assert (e["d_output"], e["value"], e["d_loss"], e["g_loss"]) == pytest.approx((0.5, -math.log(4), math.log(4), math.log(2)))


def test_gan_losses_on_small_tensors_against_hand_computed_values():
    # logits 0 and log 3 are D = ½ and ¾; logit −log 3 is D = ¼.
    real = torch.tensor([0.0, math.log(3)], dtype=torch.float64)
    fake = torch.tensor([0.0, -math.log(3)], dtype=torch.float64)
    log = math.log
    assert losses.gan_value(real, fake).item() == pytest.approx((log(0.5) + log(0.75)) / 2 + (log(0.5) + log(0.75)) / 2)
    assert losses.gan_discriminator_loss(real, fake).item() == pytest.approx(-losses.gan_value(real, fake).item())
    assert losses.gan_minimax_generator_loss(fake).item() == pytest.approx((log(0.5) + log(0.75)) / 2)
    assert losses.gan_nonsaturating_generator_loss(fake).item() == pytest.approx((log(2) + log(4)) / 2)
    assert losses.gan_generator_loss(fake, "minimax").item() == losses.gan_minimax_generator_loss(fake).item()
    # One-sided label smoothing, t = 0.9, on real logits only: −[0.9 log D + 0.1 log(1 − D)].
    smoothed = losses.gan_discriminator_loss(real, fake, real_target=0.9).item()
    real_part = -np.mean([0.9 * log(0.5) + 0.1 * log(0.5), 0.9 * log(0.75) + 0.1 * log(0.25)])
    assert smoothed == pytest.approx(real_part - (log(0.5) + log(0.75)) / 2)
    # Logits far beyond float range of σ: still finite (logsigmoid), −log σ(−40) ≈ 40.
    assert losses.gan_nonsaturating_generator_loss(torch.tensor([-40.0])).item() == pytest.approx(40.0, rel=1e-6)
    with pytest.raises(ValueError, match="real_target"):
        losses.gan_discriminator_loss(real, fake, real_target=0.3)
    with pytest.raises(ValueError, match="generator loss 'wasserstein'"):
        losses.gan_generator_loss(fake, "wasserstein")


@pytest.mark.parametrize("d", [0.01, 0.3, 0.9])
def test_generator_loss_gradients_match_the_hand_derivatives(d):
    # d/dD log(1 − D) = −1/(1 − D) (minimax) and d/dD (−log D) = −1/D (non-saturating); through the logit
    # a = log(D / (1 − D)): −D and −(1 − D). Where D(G(z)) ≈ 0 the minimax gradient on a vanishes.
    for loss, by_d, by_logit in ((losses.gan_minimax_generator_loss, -1 / (1 - d), -d),
                                 (losses.gan_nonsaturating_generator_loss, -1 / d, -(1 - d))):
        prob = torch.tensor([d], dtype=torch.float64, requires_grad=True)
        loss(torch.logit(prob)).backward()
        assert prob.grad.item() == pytest.approx(by_d, rel=1e-9)
        logit = torch.logit(torch.tensor([d], dtype=torch.float64)).requires_grad_()
        loss(logit).backward()
        assert logit.grad.item() == pytest.approx(by_logit, rel=1e-9)
    if d == 0.01:  # a generator D rejects: 99× stronger push from the non-saturating loss
        assert (1 - d) / d == pytest.approx(99.0)


def _generator_gradient(loss, theta, theta_fixed, n=20_000):
    """d/dθ E_z[loss(D*(θ + z))] with p_data = N(0, 1), G_θ(z) = θ + z, and D* optimal for θ_fixed, held fixed."""
    z = torch.randn(n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    theta = torch.tensor(theta, dtype=torch.float64, requires_grad=True)
    x = theta + z
    optimal_logit = -0.5 * x**2 + 0.5 * (x - theta_fixed) ** 2  # log N(x; 0, 1) − log N(x; θ_fixed, 1)
    loss(optimal_logit).backward()
    return theta.grad.item()


def test_both_generator_losses_share_the_fixed_point_and_the_non_saturating_one_pushes_harder_far_from_it():
    for loss in (losses.gan_minimax_generator_loss, losses.gan_nonsaturating_generator_loss):
        assert _generator_gradient(loss, 0.0, 0.0) == 0.0  # p_g = p_data: D* = ½ everywhere, no gradient at all
        assert _generator_gradient(loss, 1.0, 1.0) > 0  # both move θ down, towards the data at 0
        assert _generator_gradient(loss, -1.0, -1.0) < 0
    far_minimax = _generator_gradient(losses.gan_minimax_generator_loss, 4.0, 4.0)
    far_nonsaturating = _generator_gradient(losses.gan_nonsaturating_generator_loss, 4.0, 4.0)
    assert far_nonsaturating > 10 * far_minimax > 0


def test_equilibrium_values_with_label_smoothing_are_where_the_losses_settle():
    t = 0.9
    e = losses.gan_equilibrium(t)
    assert e["d_output"] == pytest.approx(0.45)
    at = torch.logit(torch.tensor([e["d_output"]], dtype=torch.float64))
    assert losses.gan_discriminator_loss(at, at, real_target=t).item() == pytest.approx(e["d_loss"], rel=1e-12)
    assert losses.gan_value(at, at).item() == pytest.approx(e["value"], rel=1e-12)
    assert losses.gan_nonsaturating_generator_loss(at).item() == pytest.approx(e["g_loss"], rel=1e-12)
    assert losses.gan_equilibrium(t, "minimax")["g_loss"] == pytest.approx(losses.gan_minimax_generator_loss(at).item())
    # t/2 is the best constant D when real and generated data are the same: scan D over (0, 1).
    grid = torch.linspace(0.01, 0.99, 9801, dtype=torch.float64)
    scores = [losses.gan_discriminator_loss(a.reshape(1), a.reshape(1), t).item() for a in torch.logit(grid)]
    assert grid[int(np.argmin(scores))].item() == pytest.approx(t / 2, abs=1e-4)


def test_r1_penalty_is_the_mean_squared_input_gradient():
    g = torch.Generator().manual_seed(9)
    x = torch.randn(6, 1, 2, 2, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, generator=g, dtype=torch.float64, requires_grad=True)
    logits = x.flatten(1) @ w  # linear D: ∇ₓ a = w for every x
    penalty = losses.r1_penalty(logits, x)
    assert penalty.item() == pytest.approx(w.detach().pow(2).sum().item(), rel=1e-12)
    penalty.backward()  # the graph was kept: the penalty trains D's weights, ∂‖w‖²/∂w = 2w
    torch.testing.assert_close(w.grad, 2 * w.detach())
    y = torch.randn(5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    quadratic = losses.r1_penalty(y.pow(2).sum(dim=1), y)  # ∇ = 2y
    assert quadratic.item() == pytest.approx((4 * y.detach().pow(2).sum(dim=1)).mean().item(), rel=1e-12)
