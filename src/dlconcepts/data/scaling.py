"""Standardization fitted on the training split only, with the inverse so reports speak in original units."""

from __future__ import annotations

import numpy as np


class Standardizer:
    """z = (x − mean) / std per column, learned by `fit` on training rows (scikit-learn's contract).

    A constant column gets std 1, so it maps to 0 instead of dividing by zero.
    """

    def fit(self, X: np.ndarray) -> "Standardizer":
        X = np.asarray(X, dtype=np.float64)
        self.mean_ = X.mean(axis=0)
        std = X.std(axis=0)
        self.scale_ = np.where(std > 0, std, 1.0)
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        return (np.asarray(X, dtype=np.float64) - self.mean_) / self.scale_

    def fit_transform(self, X: np.ndarray) -> np.ndarray:
        return self.fit(X).transform(X)

    def inverse_transform(self, Z: np.ndarray) -> np.ndarray:
        return np.asarray(Z, dtype=np.float64) * self.scale_ + self.mean_

    def state(self) -> dict[str, list[float]]:
        """Plain lists, so the scaler can be stored beside a model in a weights_only checkpoint."""
        return {"mean": self.mean_.tolist(), "scale": self.scale_.tolist()}


class Identity(Standardizer):
    """No scaling at all: what the course's notebook did (kept to show why scaling matters)."""

    def fit(self, X: np.ndarray) -> "Identity":
        X = np.asarray(X, dtype=np.float64)
        self.mean_ = np.zeros(X.shape[1:])
        self.scale_ = np.ones(X.shape[1:])
        return self
