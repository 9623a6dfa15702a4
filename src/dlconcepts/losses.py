"""Step 2 of the course — the losses torch.nn lacks: Gaussian KL divergence, Jensen–Shannon divergence,
the GAN losses, and the reconstruction losses of autoencoders with their per-image conventions.

MSE and cross-entropy are torch's own (`nn.MSELoss`, `nn.CrossEntropyLoss` on logits); KL between
two discrete distributions is `torch.nn.functional.kl_div(log q, p, reduction='batchmean')` — note
the reversed order and the log on the *second* distribution's side. What is missing is here, in
closed form and differentiable. This module imports only torch.

Reductions, for a batch of B distributions: 'none' gives B values, 'mean' their mean (one
number per example, like kl_div's 'batchmean' — not a mean over every coordinate), 'sum' their sum.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

REDUCTIONS = ("none", "mean", "sum")


def _reduce(values: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "none":
        return values
    if reduction == "mean":
        return values.mean()
    if reduction == "sum":
        return values.sum()
    raise ValueError(f"reduction {reduction!r} is not one of {', '.join(REDUCTIONS)}")


# --- Gaussian KL, the VAE's regularizer -----------------------------------------------------------


def gaussian_kl_to_standard_normal(mu: torch.Tensor, logvar: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """KL(N(μ, diag σ²) ‖ N(0, I)) = −½ Σ_j (1 + log σ_j² − μ_j² − σ_j²), summed over the last axis.

    Kingma & Welling, "Auto-Encoding Variational Bayes" (2014), appendix B. The encoder outputs
    log σ² rather than σ so that σ² = exp(log σ²) is positive without a constraint.
    """
    per_dimension = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp())
    return _reduce(per_dimension.sum(dim=-1), reduction)


def gaussian_kl(
    mu_p: torch.Tensor,
    logvar_p: torch.Tensor,
    mu_q: torch.Tensor,
    logvar_q: torch.Tensor,
    reduction: str = "mean",
) -> torch.Tensor:
    """KL(N(μ_p, diag σ_p²) ‖ N(μ_q, diag σ_q²)), summed over the last axis.

    Per dimension: ½ (log σ_q² − log σ_p² + (σ_p² + (μ_p − μ_q)²) / σ_q² − 1) — the closed form for
    two Gaussians (e.g. Bishop, PRML, ex. 1.30); with μ_q = 0, log σ_q² = 0 it is the function above.
    """
    per_dimension = 0.5 * (logvar_q - logvar_p + (logvar_p.exp() + (mu_p - mu_q).pow(2)) / logvar_q.exp() - 1)
    return _reduce(per_dimension.sum(dim=-1), reduction)


# --- Reconstruction losses: what an autoencoder's decoder is scored by ----------------------------
# Conventions (shapes [B, ...], one image per row; the reduction then acts over the B images):
# * reconstruction_mse is a per-PIXEL mean within each image: comparable across image sizes and equal
#   to PCA's mean squared reconstruction error; with 'mean' it is exactly F.mse_loss(x̂, x).
# * bernoulli_nll and gaussian_nll are negative log-likelihoods SUMMED over the pixels of each image
#   (nats per image), because log p(x|z) = Σ_i log p(x_i|z) for independent pixels; that sum is the
#   reconstruction term of the ELBO and adds to the KL term, itself summed over latent dimensions.


def _per_image(values: torch.Tensor) -> torch.Tensor:
    return values.reshape(values.shape[0], -1)


def reconstruction_mse(reconstruction: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Mean over the pixels of each image of (x̂ − x)², the autoencoder's loss; 'mean' = F.mse_loss(x̂, x)."""
    if reconstruction.shape != target.shape:
        raise ValueError(f"reconstruction {list(reconstruction.shape)} and target {list(target.shape)} must have one shape")
    return _reduce(_per_image((reconstruction - target).pow(2)).mean(dim=1), reduction)


def bernoulli_nll(logits: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """−log p(x|z) for a Bernoulli decoder: binary cross-entropy summed over the pixels of each image.

    −Σ_i [x_i log p_i + (1 − x_i) log(1 − p_i)], p_i = sigmoid(logit_i), computed from the logits
    (F.binary_cross_entropy_with_logits), which stays finite where p_i rounds to 0 or 1. Grey levels
    x_i in [0, 1] that are not 0 or 1 are allowed — the usual choice for MNIST-like images, though then
    the value is the cross-entropy between Bernoulli(x_i) and Bernoulli(p_i), whose minimum (at p = x)
    is the entropy Σ_i H(x_i) (`bernoulli_entropy`), not 0, and it is not a density of grey levels.
    """
    if logits.shape != target.shape:
        raise ValueError(f"logits {list(logits.shape)} and target {list(target.shape)} must have one shape")
    per_pixel = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return _reduce(_per_image(per_pixel).sum(dim=1), reduction)


def bernoulli_entropy(target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Σ_i H(x_i) = −Σ_i [x_i log x_i + (1 − x_i) log(1 − x_i)] per image: the smallest value
    `bernoulli_nll` can reach on these targets (0 only for pure black-and-white images)."""
    per_pixel = -(torch.xlogy(target, target) + torch.xlogy(1 - target, 1 - target))
    return _reduce(_per_image(per_pixel).sum(dim=1), reduction)


def gaussian_nll(mean: torch.Tensor, target: torch.Tensor, sigma: float, reduction: str = "mean") -> torch.Tensor:
    """−log N(x; mean, σ² I) summed over the pixels of each image: Σ_i [(x_i − μ_i)²/(2σ²) + log σ + ½ log 2π].

    With σ fixed this is the squared error scaled by 1/(2σ²) plus a constant: a smaller σ weighs the
    reconstruction more against the VAE's KL term.
    """
    if mean.shape != target.shape:
        raise ValueError(f"mean {list(mean.shape)} and target {list(target.shape)} must have one shape")
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0; got {sigma}")
    per_pixel = (target - mean).pow(2) / (2 * sigma**2) + math.log(sigma) + 0.5 * math.log(2 * math.pi)
    return _reduce(_per_image(per_pixel).sum(dim=1), reduction)


def gaussian_log_density(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; μ, diag σ²) summed over the last axis: −½ Σ_j [log 2π + log σ_j² + (z_j − μ_j)²/σ_j²].

    With μ = 0, log σ² = 0 it is the log prior of a VAE's code; with the encoder's μ, log σ² it is
    log q(z|x) — the two terms an importance-weighted estimate of log p(x) needs besides log p(x|z).
    """
    return -0.5 * (math.log(2 * math.pi) + logvar + (z - mu).pow(2) / logvar.exp()).sum(dim=-1)


# --- Jensen–Shannon divergence, what the original GAN minimizes -----------------------------------


def js_divergence(p: torch.Tensor, q: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """JSD(p, q) = ½ KL(p‖m) + ½ KL(q‖m), m = ½(p + q), for probabilities along the last axis (nats).

    0·log 0 = 0 (torch.xlogy), so disjoint supports give exactly log 2. The gradient with respect
    to a probability that is exactly 0 is infinite (d/dp of p·log p); to train through the JSD,
    use `js_divergence_from_logits`, whose probabilities are never exactly 0.
    """
    m = 0.5 * (p + q)

    def kl_to_m(a: torch.Tensor) -> torch.Tensor:
        return (torch.xlogy(a, a) - torch.xlogy(a, m)).sum(dim=-1)

    return _reduce(0.5 * kl_to_m(p) + 0.5 * kl_to_m(q), reduction)


def js_divergence_from_logits(logits_p: torch.Tensor, logits_q: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """JSD between softmax(logits_p) and softmax(logits_q), computed in log space.

    log m = logsumexp(log p, log q) − log 2 stays finite where either probability underflows, so
    the value and its gradient are finite for any finite logits.
    """
    log_p = F.log_softmax(logits_p, dim=-1)
    log_q = F.log_softmax(logits_q, dim=-1)
    log_m = torch.logaddexp(log_p, log_q) - math.log(2.0)
    kl_p = (log_p.exp() * (log_p - log_m)).sum(dim=-1)
    kl_q = (log_q.exp() * (log_q - log_m)).sum(dim=-1)
    return _reduce(0.5 * kl_p + 0.5 * kl_q, reduction)


# --- The GAN losses: the minimax game and the non-saturating generator loss ------------------------
#
# Every function takes the discriminator's *logits* a, D = σ(a): log D = logsigmoid(a) and
# log(1 − D) = logsigmoid(−a) stay finite where D rounds to 0 or 1 in floating point. Each returns the
# batch mean, the Monte Carlo estimate of the expectation in the equation it cites.

GENERATOR_LOSSES = ("non-saturating", "minimax")


def gan_value(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """V(D, G) = E_x~p_data[log D(x)] + E_z[log(1 − D(G(z)))] — Goodfellow et al. 2014, eq. 1.

    D maximizes V, G minimizes it. With the optimal D*(x) = p_data / (p_data + p_g) (their
    Proposition 1), V(D*, G) = 2·JSD(p_data ‖ p_g) − log 4 (their Theorem 1): −log 4 exactly when
    p_g = p_data, where D* = ½ everywhere.
    """
    return F.logsigmoid(real_logits).mean() + F.logsigmoid(-fake_logits).mean()


def gan_discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, real_target: float = 1.0) -> torch.Tensor:
    """−V(D, G), what D minimizes: −E[log D(x)] − E[log(1 − D(G(z)))], the binary cross-entropy of
    "real = 1, fake = 0".

    `real_target` < 1 is one-sided label smoothing (Salimans et al. 2016, "Improved techniques for
    training GANs", §3.4): the real term becomes −E[t·log D(x) + (1 − t)·log(1 − D(x))], which keeps D
    from growing over-confident on the data; t = 1 is the plain game.
    """
    if not 0.5 < real_target <= 1.0:
        raise ValueError(f"real_target must be in (0.5, 1]; got {real_target}")
    real_term = real_target * F.logsigmoid(real_logits) + (1.0 - real_target) * F.logsigmoid(-real_logits)
    return -real_term.mean() - F.logsigmoid(-fake_logits).mean()


def gan_minimax_generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """E_z[log(1 − D(G(z)))], the generator's part of V(D, G) (Goodfellow et al. 2014, eq. 1).

    It saturates: d/dD log(1 − D) = −1/(1 − D) ≈ −1 where D(G(z)) ≈ 0, i.e. early in training when D
    rejects every sample easily; through the logit, d/da log(1 − σ(a)) = −σ(a) = −D → 0.
    """
    return F.logsigmoid(-fake_logits).mean()


def gan_nonsaturating_generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """−E_z[log D(G(z))] — Goodfellow et al. 2014, §3: "train G to maximize log D(G(z))".

    Same fixed point as the minimax loss (both are stationary where p_g = p_data and D* = ½), but a
    strong gradient where D(G(z)) ≈ 0: d/dD (−log D) = −1/D, and through the logit −(1 − D) → −1.
    """
    return -F.logsigmoid(fake_logits).mean()


def gan_equilibrium(real_target: float = 1.0, generator_loss: str = "non-saturating") -> dict[str, float]:
    """What the losses read at the game's equilibrium p_g = p_data, with the best D for that G.

    The D minimizing −[t·log D + (1 − t)·log(1 − D)] on real data and −log(1 − D) on generated data
    is, point by point, D*(x) = t·p_data / (p_data + p_g) (Goodfellow et al. 2014, Prop. 1, for t = 1;
    Salimans et al. 2016, §3.4, for one-sided smoothing t < 1). Where p_g = p_data that is D = t/2
    everywhere, and the batch means the training loop logs settle at:
    d_output = t/2; d_loss = −t·log(t/2) − (1 − t)·log(1 − t/2) − log(1 − t/2) (log 4 when t = 1);
    value V = log(t/2) + log(1 − t/2) (−log 4 when t = 1); g_loss = −log(t/2) (non-saturating) or
    log(1 − t/2) (minimax).
    """
    if not 0.5 < real_target <= 1.0:
        raise ValueError(f"real_target must be in (0.5, 1]; got {real_target}")
    if generator_loss not in GENERATOR_LOSSES:
        raise ValueError(f"generator loss {generator_loss!r} is not one of {', '.join(GENERATOR_LOSSES)}")
    d = real_target / 2
    log_d, log_not_d = math.log(d), math.log1p(-d)
    return {
        "d_output": d,
        "d_loss": -real_target * log_d - (1 - real_target) * log_not_d - log_not_d,
        "value": log_d + log_not_d,
        "g_loss": -log_d if generator_loss == "non-saturating" else log_not_d,
    }


def r1_penalty(real_logits: torch.Tensor, real_inputs: torch.Tensor) -> torch.Tensor:
    """E_x[‖∇_x a(x)‖²] on real data, the R1 regularizer of Mescheder, Geiger & Nowozin 2018 ("Which
    training methods for GANs do actually converge?", eq. 9) — added to D's loss as (γ/2)·R1.

    Penalizing D's slope on the data removes the rotation that makes plain GAN training circle around
    its equilibrium instead of converging to it. `real_inputs` must have requires_grad=True before
    `real_logits` were computed from them; the result keeps the graph (create_graph), so it can be
    backpropagated into D's weights. Here a is D's logit, as in the paper, where D(x) = σ(a(x)).
    """
    (grad,) = torch.autograd.grad(real_logits.sum(), real_inputs, create_graph=True)
    return grad.pow(2).reshape(len(grad), -1).sum(dim=1).mean()


def gan_generator_loss(fake_logits: torch.Tensor, kind: str = "non-saturating") -> torch.Tensor:
    """The generator's loss by name: one of `GENERATOR_LOSSES`."""
    if kind == "non-saturating":
        return gan_nonsaturating_generator_loss(fake_logits)
    if kind == "minimax":
        return gan_minimax_generator_loss(fake_logits)
    raise ValueError(f"generator loss {kind!r} is not one of {', '.join(GENERATOR_LOSSES)}")


__all__ = [
    "GENERATOR_LOSSES",
    "REDUCTIONS",
    "bernoulli_entropy",
    "bernoulli_nll",
    "gan_discriminator_loss",
    "gan_equilibrium",
    "gan_generator_loss",
    "gan_minimax_generator_loss",
    "gan_nonsaturating_generator_loss",
    "gan_value",
    "gaussian_kl",
    "gaussian_kl_to_standard_normal",
    "gaussian_log_density",
    "gaussian_nll",
    "js_divergence",
    "js_divergence_from_logits",
    "r1_penalty",
    "reconstruction_mse",
]
