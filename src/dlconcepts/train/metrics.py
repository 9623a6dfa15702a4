"""Metrics that are not losses: what a report states about a fitted model."""

from __future__ import annotations

import numpy as np
import torch


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
