"""The MLP of `dlc train`: its capacity and weight decay chosen by cross-validation inside the rows it is given.

A network that is trained until its training loss stops falling memorizes a small table (the old
default reached a training MSE of 0.013 on standardized targets and an out-of-fold R² of −0.34 on
scikit-learn's diabetes table). What the course teaches against that — early stopping, weight decay,
validation on rows the model did not learn from — is what `TunedMLP.fit` does, in this order:

1. standardize the inputs (and a regression target) with the mean and spread of the rows given to `fit`;
2. cut those rows into `inner_folds` folds (stratified for classes). For every candidate of the grid
   — hidden layer widths × weight decay — and every inner fold, one network learns from the other
   folds' rows and is validated on that fold's rows: full-batch Adam for at most `max_epochs`, stopped
   once the validation loss has not improved for `patience` epochs, its best weights kept;
3. score each candidate by its validation loss pooled over the inner folds, and keep the best one;
4. predict with the mean of that candidate's fold networks (for classes, the mean of their
   probabilities). Each of them was early-stopped on rows it did not learn from, and averaging them
   is the "average a few networks" of the course at no extra cost: no network is refitted.

Every candidate × fold network of one width trains at once, as one stack (`train.many_models`, with
each model's rows and L2 strength given by masks), so the whole search costs a few stacked fits.
The candidates are scored on the same folds that stopped them, which flatters every candidate by a
little and so barely changes which one wins; the score `dlc train` reports comes from outer folds
this search never sees (nested cross-validation).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.model_selection import KFold, StratifiedKFold

from dlconcepts.data.scaling import Standardizer
from dlconcepts.errors import TrainingDiverged, UserError
from dlconcepts.train.many_models import ManySettings, RowMasks, StackedMLP, seeded_models, train_many

DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass(frozen=True)
class MLPSearch:
    """What `TunedMLP` searches over and how each network trains (the defaults are measured: README)."""

    hidden: tuple[tuple[int, ...], ...] = ((32,), (64, 32))  # candidate hidden layer widths
    weight_decays: tuple[float, ...] = (3e-3, 3e-2)  # candidate L2 strengths λ (gradient λ·W, weights only)
    inner_folds: int = 5  # folds of the inner cross-validation; also the networks averaged at the end
    seeds: int = 1  # networks per inner fold, each from other initial weights
    lr: float = 1e-2  # Adam's learning rate, full batch
    max_epochs: int = 1000  # an upper bound: early stopping ends nearly every fit long before
    patience: int = 50  # epochs without a better validation loss before a network stops
    activation: str = "relu"

    def __post_init__(self) -> None:
        if not self.hidden or any(not h or min(h) < 1 for h in self.hidden):
            raise UserError(f"hidden layer candidates {self.hidden} must each be widths >= 1; use e.g. --hidden 32")
        if not self.weight_decays or min(self.weight_decays) < 0:
            raise UserError(f"weight decay candidates {self.weight_decays} must be >= 0")
        if self.inner_folds < 2 or self.seeds < 1 or self.max_epochs < 1 or self.patience < 1 or not self.lr > 0:
            raise UserError("inner_folds >= 2, seeds >= 1, max_epochs >= 1, patience >= 1 and lr > 0 are required")

    @property
    def candidates(self) -> list[tuple[tuple[int, ...], float]]:
        return [(h, wd) for h in self.hidden for wd in self.weight_decays]


@dataclass
class Candidate:
    """One grid point and what the inner cross-validation measured for it."""

    hidden: tuple[int, ...]
    weight_decay: float
    validation_loss: float  # pooled over the inner folds, at each network's best epoch
    best_epochs: list[int] = field(default_factory=list)  # each network's best epoch


class TunedMLP(BaseEstimator):
    """An average of early-stopped MLPs whose width and weight decay were chosen by inner cross-validation.

    `task` is "regression" (MSE on the standardized target) or "classification" (cross-entropy on
    logits; `predict_proba` averages the networks' softmax). Fitted attributes: `choice_` (the winning
    `Candidate`), `candidates_` (every candidate, in grid order), `networks_` (a `StackedMLP` of the
    averaged networks), `curves_` (their training and validation loss per epoch; not saved), `x_scaler_`,
    `y_scaler_` (regression), `classes_` (classification).
    """

    def __init__(self, task: str = "regression", search: MLPSearch = MLPSearch(), random_state: int = 0,
                 device: str = "cpu", dtype: str = "float32"):
        self.task = task
        self.search = search
        self.random_state = random_state
        self.device = device
        self.dtype = dtype

    # -- fitting ------------------------------------------------------------------------------
    def fit(self, X: np.ndarray, y: np.ndarray) -> "TunedMLP":
        X = np.asarray(X, dtype=np.float64)
        if self.task not in ("regression", "classification"):
            raise ValueError(f"task must be 'regression' or 'classification'; got {self.task!r}")
        self.x_scaler_ = Standardizer().fit(X)
        Z = self.x_scaler_.transform(X)
        if self.task == "classification":
            self.classes_, target = np.unique(np.asarray(y), return_inverse=True)
            outputs, loss = len(self.classes_), "cross_entropy"
        else:
            y = np.asarray(y, dtype=np.float64).reshape(-1, 1)
            self.y_scaler_ = Standardizer().fit(y)
            target, outputs, loss = self.y_scaler_.transform(y), 1, "mse"
        folds = self._inner_folds(Z, target)
        rng = np.random.default_rng(self.random_state)
        self.candidates_, results = [], []
        for hidden in self.search.hidden:
            found, result = self._search_width(Z, target, folds, hidden, outputs, loss, rng)
            self.candidates_ += found
            results.append(result)
        best = int(np.argmin([c.validation_loss for c in self.candidates_]))
        self.choice_ = self.candidates_[best]
        width, position = divmod(best, len(self.search.weight_decays))
        per_candidate = len(folds) * self.search.seeds
        chosen = slice(position * per_candidate, (position + 1) * per_candidate)
        result = results[width]
        self.networks_ = result.model.select(chosen)
        # epochs × networks, NaN after each network's stop
        self.curves_ = {"train": result.train_loss[:, chosen], "valid": result.valid_loss[:, chosen]}
        self.n_features_in_ = X.shape[1]
        return self

    def _inner_folds(self, Z: np.ndarray, target: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        n = len(Z)
        if n < 2:
            raise UserError(f"a training fold has {n} row; the MLP needs at least 2 to validate on — add rows or use fewer folds")
        k = min(self.search.inner_folds, n)
        if self.task == "classification":
            smallest = np.bincount(target).min()
            if smallest >= 2:
                k = min(k, int(smallest))
                return list(StratifiedKFold(k, shuffle=True, random_state=self.random_state).split(Z, target))
        # a class with a single row cannot sit on both sides of a stratified cut: plain folds
        return list(KFold(k, shuffle=True, random_state=self.random_state).split(Z))

    def _search_width(self, Z, target, folds, hidden, outputs, loss, rng):
        """Every weight decay × inner fold × seed network of one width, trained as one stack."""
        s = self.search
        n = len(Z)
        sizes = (Z.shape[1], *hidden, outputs)
        train_masks, valid_masks, l2 = [], [], []
        for wd in s.weight_decays:
            for train_rows, valid_rows in folds:
                for _ in range(s.seeds):
                    train_masks.append(np.isin(np.arange(n), train_rows))
                    valid_masks.append(np.isin(np.arange(n), valid_rows))
                    l2.append(wd)
        seeds = rng.integers(0, 2**31 - 1, size=len(l2))
        with torch.random.fork_rng():
            stack = StackedMLP.from_models(seeded_models(sizes, seeds, s.activation), s.activation)
        settings = ManySettings(epochs=s.max_epochs, lr=s.lr, patience=s.patience, loss=loss)
        result = train_many(stack, Z, target, settings, rows=RowMasks(np.array(train_masks), np.array(valid_masks)),
                            l2=np.array(l2), device=self.device, dtype=DTYPES[self.dtype])
        if result.diverged.any():
            raise TrainingDiverged(f"an MLP of hidden widths {list(hidden)} diverged at epoch {int(result.diverged_at.max())}; "
                                   "lower --lr", int(result.diverged_at.max()))
        best_valid = result.valid_loss[result.best_epoch - 1, np.arange(len(l2))]
        valid_sizes = np.array([len(v) for _, v in folds for _ in range(s.seeds)], dtype=np.float64)
        found = []
        per_candidate = len(folds) * s.seeds
        for j, wd in enumerate(s.weight_decays):
            part = slice(j * per_candidate, (j + 1) * per_candidate)
            pooled = float(np.sum(best_valid[part] * valid_sizes) / np.sum(valid_sizes))
            found.append(Candidate(tuple(hidden), float(wd), pooled, [int(e) for e in result.best_epoch[part]]))
        return found, result

    # -- predicting ---------------------------------------------------------------------------
    def _outputs(self, X: np.ndarray) -> torch.Tensor:
        Z = self.x_scaler_.transform(np.asarray(X, dtype=np.float64))
        model = self.networks_.eval()
        with torch.no_grad():
            return model(torch.as_tensor(Z, dtype=model.weight0.dtype)).double()

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """The mean of the networks' class probabilities, (rows, classes) in the order of `classes_`."""
        if self.task != "classification":
            raise AttributeError("predict_proba is for classification")
        return torch.softmax(self._outputs(X), dim=2).mean(dim=0).numpy()

    def predict(self, X: np.ndarray) -> np.ndarray:
        if self.task == "classification":
            return self.classes_[self.predict_proba(X).argmax(axis=1)]
        mean = self._outputs(X).mean(dim=0).numpy()
        return self.y_scaler_.inverse_transform(mean).ravel()

    # -- saving -------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Primitives and one state_dict: everything `from_state` needs (loads with weights_only=True)."""
        state: dict[str, Any] = {
            "task": self.task,
            "search": {k: (list(map(list, v)) if k == "hidden" else list(v) if isinstance(v, tuple) else v)
                       for k, v in asdict(self.search).items()},
            "random_state": self.random_state,
            "dtype": self.dtype,
            "layer_sizes": list(self.networks_.layer_sizes),
            "n_networks": self.networks_.n_models,
            "networks": self.networks_.state_dict(),
            "x_scaler": self.x_scaler_.state(),
            "choice": asdict(self.choice_),
            "candidates": [asdict(c) for c in self.candidates_],
            "n_features_in": self.n_features_in_,
        }
        if self.task == "classification":
            state["classes"] = self.classes_.tolist()
        else:
            state["y_scaler"] = self.y_scaler_.state()
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "TunedMLP":
        search = dict(state["search"])
        search["hidden"] = tuple(tuple(h) for h in search["hidden"])
        search["weight_decays"] = tuple(search["weight_decays"])
        model = cls(state["task"], MLPSearch(**search), state["random_state"], "cpu", state["dtype"])
        model.x_scaler_ = Standardizer.from_state(state["x_scaler"])
        if model.task == "classification":
            model.classes_ = np.array(state["classes"])
        else:
            model.y_scaler_ = Standardizer.from_state(state["y_scaler"])
        networks = StackedMLP(state["layer_sizes"], state["n_networks"], model.search.activation)
        networks.load_state_dict(state["networks"])
        model.networks_ = networks.to(DTYPES[model.dtype])
        model.choice_ = _candidate(state["choice"])
        model.candidates_ = [_candidate(c) for c in state["candidates"]]
        model.n_features_in_ = state["n_features_in"]
        return model


def _candidate(values: dict[str, Any]) -> Candidate:
    return Candidate(tuple(values["hidden"]), values["weight_decay"], values["validation_loss"], list(values["best_epochs"]))

