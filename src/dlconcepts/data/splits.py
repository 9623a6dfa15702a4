"""Seeded train / validation / test splits, stratified by class when asked."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dlconcepts.errors import UserError


@dataclass(frozen=True)
class Split:
    """Row indices of each part; they are disjoint and together cover every row once."""

    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray


def _part_sizes(n: int, valid_fraction: float, test_fraction: float) -> tuple[int, int, int]:
    n_test = int(round(n * test_fraction))
    n_valid = int(round(n * valid_fraction))
    return n - n_valid - n_test, n_valid, n_test


def train_valid_test_split(
    n: int,
    rng: np.random.Generator,
    valid_fraction: float = 0.2,
    test_fraction: float = 0.2,
    stratify: np.ndarray | None = None,
) -> Split:
    """Shuffle `range(n)` and cut it into train, valid and test parts.

    With `stratify` (one class label per row) each class is cut in the same proportions, so every
    part keeps the class balance of the whole table.
    """
    if not (0 <= valid_fraction < 1 and 0 <= test_fraction < 1 and valid_fraction + test_fraction < 1):
        raise UserError(
            f"split fractions valid={valid_fraction}, test={test_fraction} leave nothing to train on; "
            "use fractions in [0, 1) whose sum is below 1"
        )
    groups = [np.arange(n)] if stratify is None else [np.flatnonzero(stratify == c) for c in np.unique(stratify)]
    parts: list[list[np.ndarray]] = [[], [], []]
    for rows in groups:
        rows = rng.permutation(rows)
        n_train, n_valid, _ = _part_sizes(len(rows), valid_fraction, test_fraction)
        parts[0].append(rows[:n_train])
        parts[1].append(rows[n_train : n_train + n_valid])
        parts[2].append(rows[n_train + n_valid :])
    train, valid, test = (np.sort(np.concatenate(p)) for p in parts)
    if len(train) == 0:
        raise UserError(f"only {n} rows: the training part is empty; use more data or smaller valid/test fractions")
    return Split(train, valid, test)
