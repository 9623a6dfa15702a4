"""The scikit-learn estimators: scikit-learn's own conformance checks, then the tools they must work with.

scikit-learn's checks (`parametrize_with_checks`) run on instances with few epochs and a larger
learning rate, so the ~110 fits they make take seconds. Every check runs and none is expected to
fail. One is skipped by scikit-learn itself: `check_array_api_input` raises SkipTest unless the
environment variable SCIPY_ARRAY_API is set, and these estimators declare no array-API support.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_iris, make_blobs
from sklearn.exceptions import NotFittedError
from sklearn.metrics import r2_score
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from dlconcepts.errors import TrainingDiverged, UserError
from dlconcepts.estimators import InvalidHyperparameter, MLPClassifier, MLPRegressor

# Fast settings for the conformance checks: they fit ~55 times per estimator on ≤ 200 rows, and
# check_classifiers_train / check_regressors_train demand accuracy > 0.83 and R² > 0.5 after fit.
FAST = dict(hidden=(16,), lr=0.02, epochs=100)


@parametrize_with_checks([MLPRegressor(**FAST), MLPClassifier(**FAST)])
def test_sklearn_conformance(estimator, check):
    check(estimator)


def smooth_1d(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """y = 1000 + 500·sin(x) on [-3, 3]: far from zero mean and unit scale, so unscaled predictions would show."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-3, 3, size=(n, 1))
    return x, 1000 + 500 * np.sin(x[:, 0])


def test_classifier_iris_cross_validated_accuracy():
    X, y = load_iris(return_X_y=True)
    scores = cross_val_score(MLPClassifier(random_state=0), X, y, cv=5)
    # Measured: mean 0.96 (folds 0.967 0.967 0.933 0.933 1.0) with the default hyperparameters.
    assert scores.mean() >= 0.9, scores


def test_regressor_fits_a_smooth_function_in_original_units():
    X, y = smooth_1d(600, seed=0)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)
    model = MLPRegressor(lr=1e-2, epochs=500, random_state=0).fit(X_train, y_train)
    pred = model.predict(X_test)
    assert pred.shape == y_test.shape
    # Measured: held-out R² 0.9996.
    assert r2_score(y_test, pred) >= 0.95
    assert model.score(X_test, y_test) == pytest.approx(r2_score(y_test, pred))


def test_regressor_multi_output():
    X, _ = smooth_1d(400, seed=1)
    Y = np.column_stack([np.sin(X[:, 0]), 10 * np.cos(X[:, 0])])
    model = MLPRegressor(lr=1e-2, epochs=400, random_state=0).fit(X, Y)
    assert model.n_outputs_ == 2
    pred = model.predict(X)
    assert pred.shape == (400, 2)
    # Measured: R² 0.9997 and 0.9997 per output.
    assert min(r2_score(Y, pred, multioutput="raw_values")) >= 0.95


def test_grid_search_over_hidden_and_lr():
    X, y = load_iris(return_X_y=True)
    grid = {"hidden": [(8,), (16, 8)], "lr": [1e-3, 1e-2]}
    search = GridSearchCV(MLPClassifier(epochs=200, random_state=0), grid, cv=3).fit(X, y)
    assert len(search.cv_results_["params"]) == 4
    assert search.best_params_["hidden"] in grid["hidden"] and search.best_params_["lr"] in grid["lr"]
    assert search.best_estimator_.get_params()["lr"] == search.best_params_["lr"]
    # Measured: 3-fold accuracies 0.853 / 0.973 / 0.887 / 0.960; best (8,) with lr 1e-2.
    assert search.best_score_ >= 0.9
    assert search.score(X, y) >= 0.9


def test_pipeline_with_string_labels():
    data = load_iris()
    labels = data.target_names[data.target]  # 'setosa', 'versicolor', 'virginica'
    pipe = Pipeline([("scale", StandardScaler()), ("mlp", MLPClassifier(random_state=0))])
    scores = cross_val_score(pipe, data.data, labels, cv=5)
    assert scores.mean() >= 0.9, scores  # measured: 0.96
    pipe.fit(data.data, labels)
    assert set(pipe.predict(data.data)) <= set(data.target_names)
    assert list(pipe.named_steps["mlp"].classes_) == sorted(data.target_names)


def test_binary_classifier_probabilities_are_the_softmax_of_the_logits():
    X, y = make_blobs(n_samples=120, centers=2, random_state=3)
    labels = np.where(y == 1, "yes", "no")
    model = MLPClassifier(epochs=100, random_state=0).fit(X, labels)
    proba = model.predict_proba(X)
    assert proba.shape == (120, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    # Independent reference: torch's softmax of the network's own logits (float64 network).
    with torch.no_grad():
        logits = model.model_(torch.as_tensor(model.x_scaler_.transform(X)))
    np.testing.assert_allclose(proba, torch.softmax(logits, dim=1).numpy(), rtol=1e-12, atol=1e-15)
    assert np.array_equal(model.predict(X), model.classes_[proba.argmax(axis=1)])
    assert model.score(X, labels) >= 0.95  # two well separated blobs; measured 0.992


def test_clone_is_unfitted_with_the_same_hyperparameters():
    X, y = make_blobs(n_samples=60, centers=2, random_state=0)
    fitted = MLPClassifier(hidden=(5,), epochs=10, random_state=1).fit(X, y)
    copy = clone(fitted)
    assert copy.get_params() == fitted.get_params()
    assert not hasattr(copy, "model_")
    with pytest.raises(NotFittedError):
        copy.predict(X)


@pytest.mark.parametrize("extra", [{}, {"dropout": 0.2, "batch_size": 16}], ids=["full-batch", "dropout-minibatch"])
def test_random_state_makes_fits_reproducible_without_touching_torch_global_state(extra):
    X, y = smooth_1d(100, seed=2)
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    first = MLPRegressor(epochs=30, random_state=7, **extra).fit(X, y).predict(X)
    assert torch.equal(torch.rand(3), expected_next)  # the caller's torch stream is untouched
    second = MLPRegressor(epochs=30, random_state=7, **extra).fit(X, y).predict(X)
    other = MLPRegressor(epochs=30, random_state=8, **extra).fit(X, y).predict(X)
    assert np.array_equal(first, second)
    assert not np.allclose(first, other)


def test_early_stopping_uses_a_validation_part_of_the_fit_data():
    X, y = smooth_1d(200, seed=3)
    model = MLPRegressor(lr=0.05, epochs=2000, early_stopping=True, patience=5, random_state=0).fit(X, y)
    assert "valid_loss" in model.history_.epochs[0]
    assert model.n_iter_ < 2000 and model.history_.stop_reason.startswith("early stopping")
    # The input scaler saw only the 160 training rows, not the 40 validation rows.
    assert not np.allclose(model.x_scaler_.mean_, X.mean(axis=0))


def test_hyperparameters_are_validated_in_fit_not_init():
    X, y = make_blobs(n_samples=30, centers=2, random_state=0)
    model = MLPClassifier(lr=-1.0)  # init stores, never validates
    with pytest.raises(InvalidHyperparameter, match="lr must be a positive number"):
        model.fit(X, y)
    with pytest.raises(UserError, match="hidden must be a tuple"):
        MLPClassifier(hidden=(8, 0)).fit(X, y)
    with pytest.raises(ValueError, match="activation must be one of"):
        MLPClassifier(activation="softmax").fit(X, y)


def test_divergence_propagates_as_training_diverged():
    X, y = smooth_1d(50, seed=4)
    # Unscaled targets around 1000 and plain SGD with lr=1: the squared error explodes within a few steps.
    model = MLPRegressor(optimizer="sgd", lr=1.0, standardize=False, epochs=100, random_state=0)
    with pytest.raises(TrainingDiverged, match="the loss became"):
        model.fit(X, y * 1e3)
