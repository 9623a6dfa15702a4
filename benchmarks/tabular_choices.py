"""How `dlc train`'s MLP defaults were chosen: each choice measured out of fold on the same real tables.

    python benchmarks/tabular_choices.py grid     # weight-decay grids × inner folds × networks per fold
    python benchmarks/tabular_choices.py batch    # full batch against mini-batches, one network, same settings

`grid` scores `TunedMLP` with each search setting on scikit-learn's diabetes, breast cancer and wine
tables and Friedman #1 (500 rows, noise 1), 5 shuffled outer folds, for several seeds (each seed moves
the outer folds, the inner folds and the initial weights), and prints the seconds of the cross-validation.
`batch` trains one early-stopped network of the chosen width and weight decay per outer fold with the
package's single-model estimators, full batch and with mini-batches of 32 and 128 (same learning rate
per step count, patience in epochs), and prints score and seconds side by side.
"""

from __future__ import annotations

import argparse
import time
import warnings
from dataclasses import replace

import numpy as np
import torch
from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine, make_friedman1
from sklearn.metrics import accuracy_score, r2_score

from dlconcepts.estimators import MLPClassifier, MLPRegressor
from dlconcepts.tabular import validation as V
from dlconcepts.tabular.tuned_mlp import MLPSearch, TunedMLP

TABLES = {
    "diabetes": (lambda: load_diabetes(return_X_y=True), "regression"),
    "friedman1": (lambda: make_friedman1(n_samples=500, noise=1.0, random_state=0), "regression"),
    "breast_cancer": (lambda: load_breast_cancer(return_X_y=True), "classification"),
    "wine": (lambda: load_wine(return_X_y=True), "classification"),
}
DEFAULT = MLPSearch()
GRIDS = {
    "default: λ 3e-3, 3e-2; 5 inner folds": DEFAULT,
    "λ 1e-3, 1e-2, 1e-1, 1; 3 inner folds": replace(DEFAULT, weight_decays=(1e-3, 1e-2, 1e-1, 1.0), inner_folds=3),
    "λ 1e-3, 1e-2, 1e-1; 5 inner folds": replace(DEFAULT, weight_decays=(1e-3, 1e-2, 1e-1)),
    "default, 2 networks per inner fold": replace(DEFAULT, seeds=2),
    "default, predicting with one network": DEFAULT,  # the first inner fold's only: no averaging
}


def fitted(task: str, name: str, search: MLPSearch, seed: int, X: np.ndarray, y: np.ndarray) -> TunedMLP:
    model = TunedMLP(task, search, random_state=seed).fit(X, y)
    if name.endswith("with one network"):  # one network early-stopped on a fifth of the rows, as a refit would be
        model.networks_ = model.networks_.select(slice(0, 1))
    return model


def outer_folds(y: np.ndarray, task: str, seed: int):
    """The 5 shuffled outer folds, as `dlc train --cv 5 --seed SEED` cuts them."""
    (splits,) = V.plan_cv(5, task, y, seed).repeats
    return splits


def score(y: np.ndarray, predicted: np.ndarray, task: str) -> float:
    return float(r2_score(y, predicted) if task == "regression" else accuracy_score(y, predicted))


def grid(seeds: list[int]) -> None:
    for table, (load, task) in TABLES.items():
        X, y = load()
        for name, search in GRIDS.items():
            scores, seconds = [], 0.0
            for seed in seeds:
                predicted = np.zeros(len(y))
                start = time.perf_counter()
                for train, test in outer_folds(y, task, seed):
                    predicted[test] = fitted(task, name, search, seed, X[train], y[train]).predict(X[test])
                seconds += time.perf_counter() - start
                scores.append(score(y, predicted, task))
            print(f"{table:14s} {name:40s} " + " ".join(f"{s:.4f}" for s in scores)
                  + f"  median {np.median(scores):.4f}  {seconds / len(seeds):.1f} s per seed", flush=True)


def batch(seeds: list[int]) -> None:
    for table, (load, task) in TABLES.items():
        X, y = load()
        kind = MLPRegressor if task == "regression" else MLPClassifier
        for batch_size in (None, 32, 128):
            scores, seconds = [], 0.0
            for seed in seeds:
                predicted = np.zeros(len(y))
                start = time.perf_counter()
                for train, test in outer_folds(y, task, seed):
                    model = kind(hidden=(64, 32), lr=DEFAULT.lr, epochs=DEFAULT.max_epochs, batch_size=batch_size,
                                 weight_decay=3e-3, early_stopping=True, patience=DEFAULT.patience, random_state=seed,
                                 dtype="float32")
                    predicted[test] = model.fit(X[train], y[train]).predict(X[test])
                seconds += time.perf_counter() - start
                scores.append(score(y, predicted, task))
            label = "full batch" if batch_size is None else f"mini-batches of {batch_size}"
            print(f"{table:14s} {label:20s} " + " ".join(f"{s:.4f}" for s in scores)
                  + f"  median {np.median(scores):.4f}  {seconds / len(seeds):.1f} s per seed", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", choices=("grid", "batch"))
    parser.add_argument("--seeds", default="0,1,2,3,4")
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    seeds = [int(s) for s in args.seeds.split(",")]
    (grid if args.study == "grid" else batch)(seeds)


if __name__ == "__main__":
    main()
