"""`dlc train`'s defaults on real tables: out-of-fold scores of our MLP, the linear and constant baselines and
scikit-learn's own MLP (early stopping) on the same folds, and the seconds a whole `dlc train` takes.

    python benchmarks/tabular_defaults.py            # the real tables and Friedman #1 (README table)
    python benchmarks/tabular_defaults.py --tables digits,iris
    python benchmarks/tabular_defaults.py --speed    # 500-row and 5,000-row × 20-column tables, seconds only
    python benchmarks/tabular_defaults.py --seeds 0,1,2

Every table is written to a CSV and trained through `dlconcepts.tabular.train`, exactly as `dlc train --data
FILE --target y` would (default options). scikit-learn's MLP is scored on the folds `dlc train` used
(`validation.plan_cv` with the same seed, predictions averaged over repeats as ours are), in a pipeline with StandardScaler, early_stopping=True, max_iter=2000
(its default of 200 iterations stops far from a fit on these tables).
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import (
    load_breast_cancer,
    load_diabetes,
    load_digits,
    load_iris,
    load_wine,
    make_classification,
    make_friedman1,
)
from sklearn.metrics import accuracy_score, r2_score
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from dlconcepts import tabular
from dlconcepts.tabular import validation as V


def real_tables() -> dict[str, tuple[np.ndarray, np.ndarray, str]]:
    out = {}
    for name, loader in (("diabetes", load_diabetes), ("breast_cancer", load_breast_cancer), ("wine", load_wine)):
        X, y = loader(return_X_y=True)
        out[name] = (X, y, "regression" if name == "diabetes" else "classification")
    X, y = make_friedman1(n_samples=500, noise=1.0, random_state=0)
    out["friedman1"] = (X, y, "regression")
    # two real tables the defaults were not chosen on
    for name, loader in (("digits", load_digits), ("iris", load_iris)):
        X, y = loader(return_X_y=True)
        out[name] = (X, y, "classification")
    return out


def speed_tables() -> dict[str, tuple[np.ndarray, np.ndarray, str]]:
    X, y = make_friedman1(n_samples=500, n_features=10, noise=1.0, random_state=1)
    X5, y5 = make_friedman1(n_samples=5000, n_features=20, noise=1.0, random_state=2)
    Xc, yc = make_classification(n_samples=5000, n_features=20, n_informative=8, random_state=3)
    return {"friedman1 500×10": (X, y, "regression"), "friedman1 5000×20": (X5, y5, "regression"),
            "classification 5000×20": (Xc, yc, "classification")}


def write_csv(X: np.ndarray, y: np.ndarray, folder: Path, name: str) -> Path:
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])])
    frame["y"] = y
    path = folder / f"{name}.csv"
    frame.to_csv(path, index=False)
    return path


def sklearn_mlp(X: np.ndarray, y: np.ndarray, task: str, seed: int) -> float:
    """scikit-learn's MLP on the folds (and repeats) `dlc train` used, its predictions averaged the same way."""
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])])
    folds = V.make_folds(frame, V.plan_cv("auto", task, y, seed))
    kind = MLPRegressor if task == "regression" else MLPClassifier
    make = lambda _: make_pipeline(StandardScaler(), kind(early_stopping=True, max_iter=2000, random_state=seed))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        predicted = V.out_of_fold(make, folds, y, task).predictions
    return float(r2_score(y, predicted) if task == "regression" else accuracy_score(y, predicted))


def run(tables: dict, seeds: list[int], with_sklearn: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for name, (X, y, task) in tables.items():
            path = write_csv(X, y, Path(tmp), name.split()[0])
            for seed in seeds:
                start = time.perf_counter()
                outcome = tabular.train(tabular.TrainOptions(data=str(path), target="y", task=task, seed=seed,
                                                             out=str(Path(tmp) / "runs"), quiet=True))
                seconds = time.perf_counter() - start
                m = outcome.metrics
                main = m["main_metric"]
                scores = {model: s[main]["value"] for model, s in m["scores"].items()}
                ours, linear, constant = scores.pop("MLP"), *scores.values()
                line = (f"{name:24s} seed {seed}  {main:8s} MLP {ours:.4f}  linear {linear:.4f}  constant {constant:.4f}  "
                        f"MLP − linear {ours - linear:+.4f}")
                if with_sklearn:
                    line += f"  scikit-learn MLP {sklearn_mlp(X, y, task, seed):.4f}"
                print(f"{line}  ({seconds:.1f} s for dlc train, {m['cv']})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speed", action="store_true", help="time dlc train on the 500- and 5,000-row tables")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    parser.add_argument("--tables", help="comma-separated table names (default: all of the chosen study)")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    tables = speed_tables() if args.speed else real_tables()
    if args.tables:
        tables = {k: v for k, v in tables.items() if k.split()[0] in args.tables.split(",")}
    run(tables, seeds, with_sklearn=not args.speed)


if __name__ == "__main__":
    main()
