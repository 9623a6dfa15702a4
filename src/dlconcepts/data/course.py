"""The course's own example data, generated exactly as its notebooks describe, but seeded.

Every generator takes a `numpy.random.Generator`, so the same seed gives the same data and
nothing touches numpy's global random state.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Dataset:
    """Features `X` of shape (n, d) and targets `y`: (n, 1) floats for regression, (n,) ints for classes."""

    X: np.ndarray
    y: np.ndarray
    feature_names: tuple[str, ...]
    target_name: str
    description: str

    def __len__(self) -> int:
        return len(self.X)


def _column(values: np.ndarray) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).reshape(-1, 1)


def quadratic(start: int = -5000, stop: int = 5000, step: int = 100) -> Dataset:
    """y = 3x² + 25x + 580 for x in range(-5000, 5000, 100): 100 points, no noise."""
    x = np.arange(start, stop, step, dtype=np.float64)
    y = 3 * x**2 + 25 * x + 580
    return Dataset(_column(x), _column(y), ("x",), "y", f"y = 3x² + 25x + 580, x in range({start}, {stop}, {step})")


def noisy_line(rng: np.random.Generator, start: int = -100, stop: int = 100, step: int = 5) -> Dataset:
    """y = 3x + U(0,1)·100 for x in range(-100, 100, 5)."""
    x = np.arange(start, stop, step, dtype=np.float64)
    y = 3 * x + rng.uniform(0, 1, size=x.shape) * 100
    return Dataset(_column(x), _column(y), ("x",), "y", f"y = 3x + U(0,1)·100, x in range({start}, {stop}, {step})")


# The noise of `noisy_line`, U(0,1)·100, has mean 50 and standard deviation 100/√12 (a uniform on
# [0, 100)). So E[y | x] = 3x + 50 is the best predictor under squared error, and its expected RMSE on
# new points is that standard deviation: the floor no model of this data can go below.
NOISY_LINE_NOISE_STD = 100 / 12**0.5


def noisy_line_mean(x: np.ndarray) -> np.ndarray:
    """E[y | x] = 3x + 50 for `noisy_line`."""
    return 3 * np.asarray(x, dtype=np.float64) + 50


def noisy_cubic(rng: np.random.Generator, start: int = -5000, stop: int = 5000, step: int = 250) -> Dataset:
    """y = 3x³ + 2x² + 5x + U(0,1)·500 for x in range(-5000, 5000, 250): 40 points."""
    x = np.arange(start, stop, step, dtype=np.float64)
    y = 3 * x**3 + 2 * x**2 + 5 * x + rng.uniform(0, 1, size=x.shape) * 500
    return Dataset(
        _column(x), _column(y), ("x",), "y", f"y = 3x³ + 2x² + 5x + U(0,1)·500, x in range({start}, {stop}, {step})"
    )


@dataclass(frozen=True)
class GaussianBlobs:
    """Two classes, each a Gaussian with independent coordinates: (mean, standard deviation) per axis.

    The course's values: class 0 has x1 ~ N(0, 1), x2 ~ N(5, 2); class 1 has x1 ~ N(0.8, 1),
    x2 ~ N(3, 1.5). The second number is a standard deviation, as in `numpy.random.normal(loc, scale)`
    which the course's notebook calls. Equal class priors.
    """

    means: tuple[tuple[float, float], tuple[float, float]] = ((0.0, 5.0), (0.8, 3.0))
    stds: tuple[tuple[float, float], tuple[float, float]] = ((1.0, 2.0), (1.0, 1.5))

    def sample(self, rng: np.random.Generator, n_per_class: int) -> Dataset:
        parts = [rng.normal(self.means[c], self.stds[c], size=(n_per_class, 2)) for c in (0, 1)]
        X = np.concatenate(parts)
        y = np.repeat(np.arange(2), n_per_class)
        return Dataset(X, y, ("x1", "x2"), "class", f"two Gaussian blobs, {n_per_class} points each")

    def log_density(self, X: np.ndarray, cls: int) -> np.ndarray:
        """log p(x | class), the true density that generated the data."""
        mu, sd = np.asarray(self.means[cls]), np.asarray(self.stds[cls])
        z = (X - mu) / sd
        return -0.5 * np.sum(z**2, axis=1) - np.sum(np.log(sd)) - np.log(2 * np.pi)

    def bayes_predict(self, X: np.ndarray) -> np.ndarray:
        """The Bayes-optimal decision with equal priors: the class of higher true density."""
        return (self.log_density(X, 1) > self.log_density(X, 0)).astype(np.int64)

    def bayes_optimal_accuracy(self, rng: np.random.Generator, n_samples: int = 1_000_000) -> tuple[float, float]:
        """Monte Carlo estimate of the best accuracy any classifier can reach, with its standard error."""
        data = self.sample(rng, n_samples // 2)
        correct = self.bayes_predict(data.X) == data.y
        acc = float(correct.mean())
        return acc, float(np.sqrt(acc * (1 - acc) / len(correct)))


def two_gaussian_blobs(rng: np.random.Generator, n_per_class: int = 100) -> Dataset:
    """The course's two Gaussian blobs, 100 points per class by default."""
    return GaussianBlobs().sample(rng, n_per_class)
