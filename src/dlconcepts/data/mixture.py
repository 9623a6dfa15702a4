"""A 1-D mixture of Gaussians whose density is known exactly: data for a GAN whose JSD can be measured.

p(x) = Σ_k w_k N(x; μ_k, σ_k²). With the density in closed form, the divergence between the data and
what a generator produces can be computed rather than guessed, and the optimal discriminator
D*(x) = p_data(x) / (p_data(x) + p_g(x)) can be drawn beside the learned one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

_erf = np.vectorize(math.erf, otypes=[np.float64])


@dataclass(frozen=True)
class GaussianMixture1D:
    """Weights (summing to 1), means and standard deviations of the components."""

    weights: tuple[float, ...] = (0.5, 0.5)
    means: tuple[float, ...] = (-2.0, 2.0)
    stds: tuple[float, ...] = (0.5, 0.5)

    def __post_init__(self) -> None:
        if not (len(self.weights) == len(self.means) == len(self.stds) >= 1):
            raise ValueError(f"weights, means and stds need one value per component; got {len(self.weights)}, "
                             f"{len(self.means)}, {len(self.stds)}")
        if any(w < 0 for w in self.weights) or not math.isclose(sum(self.weights), 1.0, abs_tol=1e-9):
            raise ValueError(f"weights must be >= 0 and sum to 1; got {self.weights}")
        if any(s <= 0 for s in self.stds):
            raise ValueError(f"standard deviations must be > 0; got {self.stds}")

    @classmethod
    def of(cls, weights: Sequence[float], means: Sequence[float], stds: Sequence[float]) -> "GaussianMixture1D":
        return cls(tuple(map(float, weights)), tuple(map(float, means)), tuple(map(float, stds)))

    @property
    def description(self) -> str:
        parts = [f"{w:g}·N({m:g}, {s:g}²)" for w, m, s in zip(self.weights, self.means, self.stds)]
        return "mixture " + " + ".join(parts)

    def pdf(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)[..., None]
        w, m, s = (np.asarray(v, dtype=np.float64) for v in (self.weights, self.means, self.stds))
        return (w * np.exp(-0.5 * ((x - m) / s) ** 2) / (s * math.sqrt(2 * math.pi))).sum(axis=-1)

    def cdf(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)[..., None]
        w, m, s = (np.asarray(v, dtype=np.float64) for v in (self.weights, self.means, self.stds))
        return (w * 0.5 * (1 + _erf((x - m) / (s * math.sqrt(2))))).sum(axis=-1)

    def bin_probabilities(self, bin_edges: np.ndarray) -> np.ndarray:
        """P(edge_i ≤ x < edge_{i+1}) for each bin, from the exact CDF."""
        return np.diff(self.cdf(np.asarray(bin_edges, dtype=np.float64)))

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        component = rng.choice(len(self.weights), size=n, p=np.asarray(self.weights) / sum(self.weights))
        return rng.normal(np.asarray(self.means)[component], np.asarray(self.stds)[component])

    def support(self, n_std: float = 4.0) -> tuple[float, float]:
        """An interval holding all but a negligible share of the mass (n_std standard deviations beyond the outer means)."""
        return (min(m - n_std * s for m, s in zip(self.means, self.stds)),
                max(m + n_std * s for m, s in zip(self.means, self.stds)))
