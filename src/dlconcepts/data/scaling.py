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

    @classmethod
    def from_state(cls, state: dict[str, list[float]]) -> "Standardizer":
        """The fitted scaler `state()` described."""
        scaler = cls()
        scaler.mean_ = np.asarray(state["mean"], dtype=np.float64)
        scaler.scale_ = np.asarray(state["scale"], dtype=np.float64)
        return scaler


class Identity(Standardizer):
    """No scaling at all: what the course's notebook did (kept to show why scaling matters)."""

    def fit(self, X: np.ndarray) -> "Identity":
        X = np.asarray(X, dtype=np.float64)
        self.mean_ = np.zeros(X.shape[1:])
        self.scale_ = np.ones(X.shape[1:])
        return self


class PerModelStandardizer:
    """One `Standardizer` per model of a stack, each fitted on that model's own training rows.

    For many models trained at once (`train.many_models`), each on its own split: model r's inputs are
    `X[rows[r]]`, scaled with statistics of those rows only, and its predictions go back to original
    units with its own scaler. `transform` stacks the results to (R, rows, columns).
    """

    def fit(self, X: np.ndarray, rows: "list[np.ndarray] | np.ndarray") -> "PerModelStandardizer":
        self.scalers_ = [Standardizer().fit(np.asarray(X)[r]) for r in rows]
        return self

    def transform(self, X: np.ndarray, rows: "list[np.ndarray] | np.ndarray | None" = None) -> np.ndarray:
        """Model r's rows `X[rows[r]]` in model r's units, stacked; without `rows`, all of X for every model."""
        X = np.asarray(X)
        if rows is None:
            return np.stack([s.transform(X) for s in self.scalers_])
        return np.stack([s.transform(X[r]) for s, r in zip(self.scalers_, rows)])

    def inverse_transform(self, Z: np.ndarray) -> np.ndarray:
        """(R, rows, columns) in each model's units back to original units."""
        return np.stack([s.inverse_transform(z) for s, z in zip(self.scalers_, np.asarray(Z))])

    def __len__(self) -> int:
        return len(self.scalers_)

    def __getitem__(self, r):
        return self.scalers_[r]

    def __iter__(self):
        return iter(self.scalers_)
