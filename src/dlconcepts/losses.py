"""Step 2 of the course — the losses torch.nn lacks: Gaussian KL divergence and Jensen–Shannon divergence.

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


__all__ = [
    "REDUCTIONS",
    "gaussian_kl",
    "gaussian_kl_to_standard_normal",
    "js_divergence",
    "js_divergence_from_logits",
]
