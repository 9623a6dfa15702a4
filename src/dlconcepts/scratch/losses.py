"""The four losses of the course — MSE, cross-entropy, KL divergence, Jensen–Shannon divergence — in NumPy.

All logarithms are natural (nats). Discrete distributions lie along the last axis; leading axes
are a batch, and every divergence returns one value per distribution in the batch. Conventions:
0·log 0 = 0 (a zero-probability outcome contributes nothing), and KL(p‖q) = +inf when some
outcome has q = 0 < p (q cannot explain an outcome p produces).
"""

from __future__ import annotations

import numpy as np

# A sum of probabilities normalized in float32 is off from 1 by up to about n·2⁻²⁴ ≈ n·6e-8; this
# admits those (n up to ~10⁴) while still refusing counts, percentages or logits passed by mistake.
_NORMALIZATION_TOLERANCE = 1e-3


def _distribution(p: np.ndarray, name: str) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    if p.ndim == 0 or np.any(p < 0) or not np.all(np.isfinite(p)):
        raise ValueError(f"{name} must be an array of non-negative finite probabilities along its last axis")
    if np.any(np.abs(p.sum(axis=-1) - 1.0) > _NORMALIZATION_TOLERANCE):
        raise ValueError(f"{name} does not sum to 1 along its last axis; divide by its sum (or softmax logits) first")
    return p


def _xlogy(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """x·log y with 0·log y = 0 for every y, 0 included (the 0·log 0 = 0 convention)."""
    x, y = np.broadcast_arrays(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
    out = np.zeros_like(x)
    nonzero = x != 0
    with np.errstate(divide="ignore"):  # log 0 = −inf where x > 0 is the intended +inf of KL
        out[nonzero] = x[nonzero] * np.log(y[nonzero])
    return out


# --- MSE ------------------------------------------------------------------------------------------


def mse(y_hat: np.ndarray, y: np.ndarray) -> float:
    """Mean squared error, the mean over every entry (torch.nn.functional.mse_loss, reduction='mean')."""
    y_hat, y = np.asarray(y_hat, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if y_hat.shape != y.shape:  # (N, 1) against (N,) would broadcast to (N, N) and give a wrong number
        raise ValueError(f"predictions {y_hat.shape} and targets {y.shape} differ in shape; reshape one of them")
    return float(np.mean((y_hat - y) ** 2))


# --- cross-entropy --------------------------------------------------------------------------------


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """log softmax along the last axis: z − max z − log Σ exp(z − max z); subtracting the max keeps exp from overflowing."""
    z = np.asarray(logits, dtype=np.float64)
    shifted = z - z.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def softmax(logits: np.ndarray) -> np.ndarray:
    return np.exp(log_softmax(logits))


def _targets_as_distributions(targets: np.ndarray, n_classes: int) -> np.ndarray:
    """Class indices (N,) become one-hot rows; probability rows (N, C) are checked and kept."""
    targets = np.asarray(targets)
    if np.issubdtype(targets.dtype, np.integer):
        if targets.min(initial=0) < 0 or targets.max(initial=0) >= n_classes:
            raise ValueError(f"class indices must lie in 0..{n_classes - 1}")
        return np.eye(n_classes)[targets]
    return _distribution(targets, "targets")


def cross_entropy_from_logits(logits: np.ndarray, targets: np.ndarray) -> float:
    """Mean over examples of −Σ_c t_c log softmax(z)_c; targets are class indices (N,) or probabilities (N, C).

    The same number as torch.nn.functional.cross_entropy(logits, targets): it takes raw scores and
    applies log-softmax itself, so never pass it softmax outputs.
    """
    log_p = log_softmax(logits)
    t = _targets_as_distributions(targets, log_p.shape[-1])
    return float(np.mean(-np.sum(t * log_p, axis=-1)))


def cross_entropy(probabilities: np.ndarray, targets: np.ndarray) -> float:
    """Mean over examples of −Σ_c t_c log p_c, from probabilities (N, C); +inf when a target class has p = 0."""
    p = _distribution(probabilities, "probabilities")
    t = _targets_as_distributions(targets, p.shape[-1])
    return float(np.mean(-np.sum(_xlogy(t, p), axis=-1)))


# --- Kullback–Leibler divergence ------------------------------------------------------------------


def kl_divergence(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """KL(p‖q) = Σ_i p_i log(p_i / q_i) along the last axis; 0·log 0 = 0, +inf where q_i = 0 < p_i."""
    p, q = _distribution(p, "p"), _distribution(q, "q")
    # Σ p log p − Σ p log q, each with 0·log(anything) = 0; a p_i > 0 meeting q_i = 0 gives −(−inf) = +inf.
    return np.sum(_xlogy(p, p), axis=-1) - np.sum(_xlogy(p, q), axis=-1)


def gaussian_kl(mu_p: np.ndarray, std_p: np.ndarray, mu_q: np.ndarray, std_q: np.ndarray) -> np.ndarray:
    """KL(N(μ_p, σ_p²) ‖ N(μ_q, σ_q²)) in closed form, summed over the last axis for diagonal Gaussians.

    Per dimension: log(σ_q/σ_p) + (σ_p² + (μ_p − μ_q)²) / (2σ_q²) − 1/2 (e.g. Bishop, PRML, ex. 1.30;
    with μ_q = 0, σ_q = 1 it is Kingma & Welling 2014, appendix B). Scalars are univariate Gaussians;
    arrays have the Gaussian's dimensions along the last axis and a batch before it.
    """
    mu_p, std_p, mu_q, std_q = (np.asarray(a, dtype=np.float64) for a in (mu_p, std_p, mu_q, std_q))
    if np.any(std_p <= 0) or np.any(std_q <= 0):
        raise ValueError("standard deviations must be > 0 (pass σ, not σ² or log σ²)")
    per_dimension = np.log(std_q / std_p) + (std_p**2 + (mu_p - mu_q) ** 2) / (2 * std_q**2) - 0.5
    return per_dimension.sum(axis=-1) if per_dimension.ndim else per_dimension


# --- Jensen–Shannon divergence --------------------------------------------------------------------


def js_divergence(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """JSD(p, q) = ½ KL(p‖m) + ½ KL(q‖m) with m = ½(p + q), along the last axis.

    Symmetric, finite even for disjoint supports (m > 0 wherever p or q is), 0 exactly when p = q,
    and at most log 2 (reached for disjoint supports) in nats — the bound the GAN analysis uses.
    """
    p, q = _distribution(p, "p"), _distribution(q, "q")
    m = 0.5 * (p + q)
    return 0.5 * kl_divergence(p, m) + 0.5 * kl_divergence(q, m)
