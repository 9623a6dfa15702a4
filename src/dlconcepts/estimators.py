"""scikit-learn estimators around the course's MLP: `MLPRegressor` and `MLPClassifier`.

They follow scikit-learn's contract, so `cross_val_score`, `GridSearchCV`, `Pipeline` and `clone`
work on them: `__init__` only stores the hyperparameters; `fit` validates them and the data, builds
`dlconcepts.nets.mlp`, trains it with `dlconcepts.train.Trainer` (the one training loop of the
package) and returns `self`; everything learned ends in `_`.

    from sklearn.model_selection import cross_val_score
    cross_val_score(MLPClassifier(hidden=(16,), lr=1e-2, epochs=200, random_state=0), X, y, cv=5)

What `fit` does, in order:

1. validate X and y (`sklearn.utils.validation.validate_data`: finite, 2-D X, one target per row);
2. with `early_stopping`, carve a validation part of `validation_fraction` out of the rows given to
   `fit` — never a test fold — and stop once its loss has not improved for `patience` epochs,
   keeping the weights of the best epoch;
3. with `standardize`, standardize inputs (and regression targets) with `dlconcepts.data.Standardizer`
   fitted on the training rows only; predictions come back in the original units;
4. train. The regressor minimizes MSELoss; the classifier minimizes CrossEntropyLoss on the logits
   (the network ends in a linear layer, never in Softmax, since the loss applies log-softmax itself);
   `predict_proba` is the softmax of the logits, computed in float64 so every row sums to 1.

Randomness. `random_state` (None, an int or a `numpy.random.RandomState`, as everywhere in
scikit-learn) draws the seeds of the initial weights, of the mini-batch order and of the validation
split. Torch's global generator is seeded with that seed *inside* `torch.random.fork_rng`, so
the weights and dropout masks are reproducible while the caller's torch random state is left
exactly as it was. With `random_state=None` every fit is different (the seed comes from NumPy's
global generator, as scikit-learn does).

Threads are left alone: the estimator never calls `torch.set_num_threads`; the caller (or
`dlconcepts.runtime.make_runtime`, for labs) decides.

A loss that becomes NaN or infinite raises `dlconcepts.errors.TrainingDiverged` unchanged: one line
naming the epoch and the fix. Invalid hyperparameters raise `InvalidHyperparameter`, both a
`UserError` (one clear line in the CLI) and a `ValueError` (what scikit-learn's tools expect).

scikit-learn's `check_estimator` (scikit-learn 1.9, legacy checks included): the regressor passes
52 of its 53 checks and the classifier 54 of 55, with a fast configuration (tests/test_estimators.py);
none is expected to fail. The one left, `check_array_api_input`, is skipped by scikit-learn itself
unless SCIPY_ARRAY_API is set; these estimators take NumPy-convertible input only. Two facts make the
checks hold and are worth knowing:

* predictions do not depend on which other rows are in the same call: `check_methods_subset_invariance`
  demands agreement to 1e-7, and in float32 a row's output drifts with the batch it is computed in
  (measured: 1.8e-7 absolute, so the check fails). The network therefore runs in float64 by default
  (`dtype="float64"`), as scikit-learn's own estimators do. `dtype="float32"` is there for speed: on
  this 2-core CPU a default fit is ~1.3× faster (iris, 500 epochs: 0.16 s vs 0.21 s) and ~1.8× for a
  (256, 256) network; it gives up only that 1e-7 batch invariance;
* refitting with the same `random_state` gives the same predictions (`check_fit_idempotent`), which
  rests on the seeded `fork_rng` above and on CPU kernels being deterministic (on CUDA, some kernels
  are not, and fits may differ in the last bits).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted
from torch import nn

from dlconcepts.data.scaling import Identity, Standardizer
from dlconcepts.errors import UserError
from dlconcepts.nets.mlp import ACTIVATIONS, mlp
from dlconcepts.train.callbacks import EarlyStopping, ProgressBar
from dlconcepts.train.optim import OPTIMIZERS
from dlconcepts.train.trainer import Trainer

from sklearn.utils.validation import validate_data  # scikit-learn >= 1.6 (pinned in pyproject.toml)


DTYPES = {"float32": torch.float32, "float64": torch.float64}


class InvalidHyperparameter(UserError, ValueError):
    """A hyperparameter of an estimator has a value `fit` cannot use; the message names the fix."""


class _MLPEstimator(BaseEstimator):
    """What the regressor and the classifier share: hyperparameters, validation, the fit itself."""

    def __init__(
        self,
        hidden: int | Sequence[int] = (30, 15),
        activation: str = "relu",
        optimizer: str = "adam",
        lr: float = 1e-3,
        epochs: int = 500,
        batch_size: int | None = None,
        weight_decay: float = 0.0,
        dropout: float = 0.0,
        early_stopping: bool = False,
        validation_fraction: float = 0.2,
        patience: int = 20,
        standardize: bool = True,
        random_state: int | np.random.RandomState | None = None,
        device: str = "cpu",
        dtype: str = "float64",
        verbose: bool = False,
    ):
        self.hidden = hidden
        self.activation = activation
        self.optimizer = optimizer
        self.lr = lr
        self.epochs = epochs
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.dropout = dropout
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.standardize = standardize
        self.random_state = random_state
        self.device = device
        self.dtype = dtype
        self.verbose = verbose

    # -- hyperparameters ------------------------------------------------------------------------
    def _hidden_sizes(self) -> tuple[int, ...]:
        hidden = (self.hidden,) if isinstance(self.hidden, (int, np.integer)) else self.hidden
        try:
            sizes = tuple(int(h) for h in hidden)
            valid = all(int(h) == h and h >= 1 for h in hidden)
        except (TypeError, ValueError):
            valid = False
        if not valid:
            raise InvalidHyperparameter(
                f"hidden must be a tuple of layer widths >= 1, e.g. (30, 15), or () for none; got {self.hidden!r}"
            )
        return sizes

    def _check_hyperparameters(self) -> None:
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise InvalidHyperparameter(message)

        need(
            self.activation in ACTIVATIONS,
            f"activation must be one of {', '.join(ACTIVATIONS)}; got {self.activation!r}",
        )
        need(self.optimizer in OPTIMIZERS, f"optimizer must be one of {', '.join(OPTIMIZERS)}; got {self.optimizer!r}")
        need(_is_number(self.lr) and self.lr > 0, f"lr must be a positive number, e.g. 1e-3; got {self.lr!r}")
        need(_is_int(self.epochs) and self.epochs >= 1, f"epochs must be an integer >= 1; got {self.epochs!r}")
        need(
            self.batch_size is None or (_is_int(self.batch_size) and self.batch_size >= 1),
            f"batch_size must be an integer >= 1, or None for full batch; got {self.batch_size!r}",
        )
        need(
            _is_number(self.weight_decay) and self.weight_decay >= 0,
            f"weight_decay must be >= 0; got {self.weight_decay!r}",
        )
        need(_is_number(self.dropout) and 0 <= self.dropout < 1, f"dropout must be in [0, 1); got {self.dropout!r}")
        need(
            _is_number(self.validation_fraction) and 0 < self.validation_fraction < 1,
            f"validation_fraction must be in (0, 1), e.g. 0.2; got {self.validation_fraction!r}",
        )
        need(_is_int(self.patience) and self.patience >= 1, f"patience must be an integer >= 1; got {self.patience!r}")
        need(self.dtype in DTYPES, f"dtype must be one of {', '.join(DTYPES)}; got {self.dtype!r}")

    # -- fitting --------------------------------------------------------------------------------
    def _fit(
        self,
        X: np.ndarray,
        targets: np.ndarray,
        n_outputs: int,
        loss_fn: nn.Module,
        *,
        scale_targets: bool,
        stratify: np.ndarray | None,
    ):
        """Train an MLP from X to `targets` (both validated); sets the fitted attributes."""
        self._check_hyperparameters()
        sizes = (X.shape[1], *self._hidden_sizes(), n_outputs)
        rng = check_random_state(self.random_state)
        model_seed, shuffle_seed, split_seed = (int(s) for s in rng.randint(0, 2**31 - 1, size=3))

        valid = None
        X_train, t_train = X, targets
        if self.early_stopping:
            X_train, X_valid, t_train, t_valid = self._split_validation(X, targets, split_seed, stratify)
        self.x_scaler_ = (Standardizer() if self.standardize else Identity()).fit(X_train)
        X_train = self.x_scaler_.transform(X_train)
        if scale_targets:
            self.y_scaler_ = (Standardizer() if self.standardize else Identity()).fit(t_train)
            t_train = self.y_scaler_.transform(t_train)
        if self.early_stopping:
            t_valid = self.y_scaler_.transform(t_valid) if scale_targets else t_valid
            valid = (self.x_scaler_.transform(X_valid), t_valid)

        device = torch.device(self.device)
        callbacks: list[Any] = []
        if self.early_stopping:
            callbacks.append(EarlyStopping(patience=self.patience, monitor="valid_loss", restore_best=True))
        if self.verbose:
            callbacks.append(ProgressBar(total=self.epochs, desc=type(self).__name__))
        # Seed torch's global generator (weights, dropout masks) inside fork_rng, so the fit is
        # reproducible and the caller's torch random state is the same afterwards.
        forked = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=forked):
            torch.manual_seed(model_seed)
            model = mlp(sizes, self.activation, dropout=self.dropout)
            trainer = Trainer(
                model,
                loss_fn,
                self.optimizer,
                lr=self.lr,
                weight_decay=self.weight_decay,
                batch_size=self.batch_size,
                callbacks=callbacks,
                device=device,
                dtype=DTYPES[self.dtype],
                seed=shuffle_seed,
            )
            self.history_ = trainer.fit(X_train, t_train, epochs=self.epochs, valid=valid)
        self.model_ = trainer.model.eval()
        self.n_iter_ = len(self.history_)
        self.loss_curve_ = self.history_.column("train_loss")
        return self

    def _split_validation(self, X: np.ndarray, targets: np.ndarray, seed: int, stratify: np.ndarray | None):
        n_valid = int(np.ceil(self.validation_fraction * len(X)))
        if n_valid < 1 or len(X) - n_valid < 1:
            raise InvalidHyperparameter(
                f"early_stopping needs at least one training and one validation row; {len(X)} rows with "
                f"validation_fraction={self.validation_fraction} leave none; give more rows or set early_stopping=False"
            )
        if stratify is not None and (np.bincount(stratify).min() < 2 or n_valid < len(np.unique(stratify))):
            stratify = None  # too few rows of some class to put one on each side
        return train_test_split(X, targets, test_size=n_valid, random_state=seed, stratify=stratify)

    # -- inference ------------------------------------------------------------------------------
    def _network_outputs(self, X: Any) -> np.ndarray:
        """The network's outputs (float64, training units) for new rows X."""
        check_is_fitted(self, "model_")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        parameter = next(self.model_.parameters())
        inputs = torch.as_tensor(self.x_scaler_.transform(X), dtype=parameter.dtype, device=parameter.device)
        with torch.no_grad():
            return self.model_(inputs).cpu().double().numpy()


class MLPRegressor(RegressorMixin, _MLPEstimator):
    """An MLP fitted by MSE; `y` of shape (n,) or (n, k) for k outputs. `score` is R².

    Fitted attributes: `model_` (the torch network, in eval mode), `x_scaler_`, `y_scaler_`,
    `n_outputs_`, `n_features_in_` (and `feature_names_in_` for DataFrames), `history_`
    (`dlconcepts.train.History`), `n_iter_` (epochs run), `loss_curve_` (train loss per epoch,
    in standardized units).
    """

    def fit(self, X: Any, y: Any) -> "MLPRegressor":
        X, y = validate_data(self, X, y, dtype=np.float64, y_numeric=True, multi_output=True)
        y = np.asarray(y, dtype=np.float64)
        self._y_1d = y.ndim == 1
        Y = y.reshape(len(y), -1)
        self.n_outputs_ = Y.shape[1]
        return self._fit(X, Y, self.n_outputs_, nn.MSELoss(), scale_targets=True, stratify=None)

    def predict(self, X: Any) -> np.ndarray:
        """Predictions in the units of y: shape (n,) when fitted on a 1-D y, else (n, k)."""
        check_is_fitted(self, "model_")
        Y = self.y_scaler_.inverse_transform(self._network_outputs(X))
        return Y.ravel() if self._y_1d else Y

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


class MLPClassifier(ClassifierMixin, _MLPEstimator):
    """An MLP fitted by cross-entropy on its logits; any labels (ints, strings), binary or multiclass.

    `predict_proba` is the softmax of the logits (columns in the order of `classes_`); `score` is
    accuracy. Fitted attributes: `classes_`, `model_`, `x_scaler_`, `n_features_in_`, `history_`,
    `n_iter_`, `loss_curve_`.
    """

    def fit(self, X: Any, y: Any) -> "MLPClassifier":
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        self.classes_, class_index = np.unique(y, return_inverse=True)
        class_index = class_index.astype(np.int64)
        return self._fit(
            X, class_index, len(self.classes_), nn.CrossEntropyLoss(), scale_targets=False, stratify=class_index
        )

    def predict_proba(self, X: Any) -> np.ndarray:
        """Softmax of the logits, (n, classes); rows sum to 1."""
        logits = self._network_outputs(X)
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))  # no overflow for large logits
        return shifted / shifted.sum(axis=1, keepdims=True)

    def predict(self, X: Any) -> np.ndarray:
        """The class of the largest logit, as one of `classes_`."""
        check_is_fitted(self, "model_")
        return self.classes_[self._network_outputs(X).argmax(axis=1)]


def _is_number(value: Any) -> bool:
    is_real = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    return is_real and bool(np.isfinite(value))


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
