"""Metrics that are not losses: what a report states about a fitted model."""

from __future__ import annotations

import numpy as np
import torch

from dlconcepts.losses import js_divergence


def accuracy(logits: torch.Tensor, target: torch.Tensor) -> float:
    """Share of rows whose highest logit is the target class (works on logits or probabilities)."""
    return (logits.argmax(dim=1) == target).sum().item() / len(target)


def rmse(pred: np.ndarray, target: np.ndarray) -> float:
    """Root mean squared error, in the units of the target."""
    pred, target = np.asarray(pred, dtype=np.float64), np.asarray(target, dtype=np.float64)
    if pred.shape != target.shape:
        raise ValueError(f"rmse needs equal shapes; got {pred.shape} and {target.shape}")
    return float(np.sqrt(np.mean((pred - target) ** 2)))


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """counts[i, j] = number of rows of true class i predicted as class j."""
    counts = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(counts, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return counts


# -- comparing two distributions from samples: generative models --

def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two samples of feature vectors (rows).

    d² = ‖μ_a − μ_b‖² + Tr(Σ_a + Σ_b − 2 (Σ_a Σ_b)^½) — the Fréchet (2-Wasserstein) distance between
    N(μ_a, Σ_a) and N(μ_b, Σ_b) (Dowson & Landau 1982), used on a classifier's features as the "FID"
    of Heusel et al. 2017. Σ_a Σ_b is not symmetric, but it is similar to the symmetric positive
    semi-definite √Σ_a Σ_b √Σ_a, so Tr((Σ_a Σ_b)^½) = Σ_i √λ_i(√Σ_a Σ_b √Σ_a): two symmetric
    eigen-decompositions, no general matrix square root and no complex round-off to discard.

    Both are sample estimates (covariances with n − 1): the distance between two finite samples of
    one distribution is positive and shrinks as the samples grow, so compare distances computed on
    the same number of rows.
    """
    a, b = np.asarray(features_a, dtype=np.float64), np.asarray(features_b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"frechet_distance needs two [n, d] arrays of equal d; got {a.shape} and {b.shape}")
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"frechet_distance needs at least 2 rows on each side; got {len(a)} and {len(b)}")
    mean_gap = a.mean(axis=0) - b.mean(axis=0)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    eigval_a, eigvec_a = np.linalg.eigh(cov_a)
    sqrt_a = (eigvec_a * np.sqrt(np.clip(eigval_a, 0.0, None))) @ eigvec_a.T
    middle = sqrt_a @ cov_b @ sqrt_a
    # Round-off can leave tiny negative eigenvalues of a PSD matrix; they stand for zero.
    trace_sqrt_product = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0.0, None)).sum()
    value = mean_gap @ mean_gap + np.trace(cov_a) + np.trace(cov_b) - 2.0 * trace_sqrt_product
    return float(max(value, 0.0))


def binned_js_divergence(samples: np.ndarray, bin_edges: np.ndarray, reference_probabilities: np.ndarray) -> float:
    """JSD (nats) between the histogram of `samples` and known probabilities of the same bins.

    The estimator of the continuous JSD(p_ref ‖ p_samples) used to watch a 1-D GAN. Its two biases
    pull in opposite directions:
    * binning can only lose information, so the JSD of the binned distributions is at most the
      continuous one (data processing inequality) — a downward bias that vanishes as the bins narrow;
    * the histogram of m samples is noisy, and any noise raises the divergence: where the sample
      distribution equals the reference, E[JSD] ≈ (K − 1) / (8 m) for K bins (second-order expansion:
      JSD(p + δ, p) ≈ Σ δ_i² / (8 p_i), E δ_i² = p_i (1 − p_i) / m) — an upward bias that vanishes as m
      grows. The expansion needs every bin to hold many draws; `binned_jsd_noise_floor` measures the
      bias without that assumption.
    Samples outside the outermost edges count in no bin; give edges that cover both distributions
    (the reference probabilities must then sum to ≈ 1).
    """
    edges = np.asarray(bin_edges, dtype=np.float64)
    reference = np.asarray(reference_probabilities, dtype=np.float64)
    if edges.ndim != 1 or len(reference) != len(edges) - 1:
        raise ValueError(f"need K+1 bin edges for K reference probabilities; got {len(edges)} edges and {len(reference)}")
    samples = np.asarray(samples, dtype=np.float64).ravel()
    if len(samples) == 0:
        raise ValueError("binned_js_divergence needs at least one sample")
    counts, _ = np.histogram(samples, bins=edges)
    # Mass outside the edges is a bin of its own on the sample side (and empty on the reference
    # side), so a generator that throws samples far away is charged for them, not forgiven.
    outside = len(samples) - counts.sum()
    sample_probabilities = np.append(counts, outside) / len(samples)
    reference = np.append(reference, max(0.0, 1.0 - reference.sum()))
    value = js_divergence(torch.from_numpy(sample_probabilities), torch.from_numpy(reference / reference.sum()), "none")
    return float(value)


def wilson_interval(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion successes/n (Wilson 1927), by `scipy.stats.binomtest`.

    Unlike the textbook p ± z·√(p(1−p)/n), it stays inside [0, 1] and does not shrink to zero width
    when every case is right: 360 correct of 360 gives (0.9895, 1), not (1, 1).
    """
    if n < 1 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n >= 1; got {successes} of {n}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1); got {level}")
    from scipy import stats  # on first use: importing scipy.stats costs ~0.7 s, and most runs never test

    ci = stats.binomtest(successes, n).proportion_ci(confidence_level=level, method="wilson")
    return float(ci.low), float(ci.high)


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> tuple[int, int, float]:
    """Exact McNemar test of two classifiers scored on the *same* cases (McNemar 1947; Dietterich 1998).

    Only the discordant cases carry information: b = cases A got right and B wrong, c = the reverse.
    Under "A and B are equally accurate" each discordant case is a fair coin, so b ~ Binomial(b + c, 1/2);
    the two-sided p-value is `scipy.stats.binomtest(b, b + c, 0.5)`'s. Returns (b, c, p); p = 1 when b = c.
    Comparing two accuracies as if the test sets were independent wastes the pairing and is far less
    sensitive when both models get the same easy cases right.
    """
    correct_a, correct_b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if correct_a.shape != correct_b.shape or correct_a.ndim != 1:
        raise ValueError(f"mcnemar_exact needs two equal 1-d arrays of per-case correctness; got "
                         f"{correct_a.shape} and {correct_b.shape}")
    b = int(np.sum(correct_a & ~correct_b))
    c = int(np.sum(~correct_a & correct_b))
    if b + c == 0:
        return b, c, 1.0
    from scipy import stats

    return b, c, float(stats.binomtest(b, b + c, 0.5).pvalue)


def binned_jsd_noise_floor(reference_probabilities: np.ndarray, n_samples: int, rng: np.random.Generator,
                           repeats: int = 20) -> float:
    """What `binned_js_divergence` reads, on average, for a *perfect* sampler: the mean JSD between the
    reference and `repeats` histograms of `n_samples` draws from the reference itself (multinomial).

    An estimate below this level cannot be told apart from zero. Where every bin holds many draws it is
    ≈ (K − 1) / (8 m); bins with only a few expected draws add more than that formula says.
    """
    reference = np.asarray(reference_probabilities, dtype=np.float64)
    reference = np.append(reference, max(0.0, 1.0 - reference.sum()))
    reference = reference / reference.sum()
    counts = rng.multinomial(n_samples, reference, size=repeats)
    values = js_divergence(torch.from_numpy(counts / n_samples), torch.from_numpy(reference).expand(repeats, -1), "none")
    return float(values.mean())
