"""The MLP of dlc train: inner cross-validation over widths and weight decays, early-stopped fold networks averaged."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from dlconcepts.errors import UserError
from dlconcepts.tabular.tuned_mlp import MLPSearch, TunedMLP

pytestmark = pytest.mark.usefixtures("one_torch_thread")
FAST = replace(MLPSearch(), hidden=((8,), (16, 8)), weight_decays=(1e-3, 1e-1), inner_folds=3, max_epochs=300, patience=20)


def regression_rows(n=90, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    return X, np.sin(2 * X[:, 0]) + X[:, 1] ** 2 + 0.1 * rng.normal(size=n)


def test_the_choice_is_the_candidate_of_least_pooled_validation_loss_and_predictions_average_its_networks():
    X, y = regression_rows()
    model = TunedMLP("regression", FAST, random_state=0).fit(X, y)
    assert [(c.hidden, c.weight_decay) for c in model.candidates_] == FAST.candidates
    assert model.choice_ == min(model.candidates_, key=lambda c: c.validation_loss)
    assert model.networks_.n_models == FAST.inner_folds and model.networks_.layer_sizes[1:-1] == model.choice_.hidden
    assert all(1 <= e < FAST.max_epochs for e in model.choice_.best_epochs)  # early stopping ended every fit
    # the prediction is the mean of the fold networks, back in the target's units
    Z = torch.as_tensor(model.x_scaler_.transform(X[:5]), dtype=torch.float32)
    with torch.no_grad():
        each = model.networks_.eval()(Z).double().numpy()[:, :, 0]
    expected = model.y_scaler_.inverse_transform(each.mean(axis=0)[:, None]).ravel()
    np.testing.assert_allclose(model.predict(X[:5]), expected, rtol=1e-12)
    assert model.curves_["train"].shape[1] == FAST.inner_folds  # the chosen networks' loss curves, for the figure


def test_it_learns_a_nonlinear_function_and_is_reproducible():
    X, y = regression_rows(200)
    model = TunedMLP("regression", FAST, random_state=3).fit(X[:150], y[:150])
    residual = y[150:] - model.predict(X[150:])
    assert 1 - residual.var() / y[150:].var() > 0.8  # held-out R²; a linear fit reaches about 0.3 here
    again = TunedMLP("regression", FAST, random_state=3).fit(X[:150], y[:150])
    np.testing.assert_array_equal(model.predict(X[150:]), again.predict(X[150:]))


def test_classification_probabilities_average_the_networks_and_any_labels_work():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(120, 2))
    y = np.where(X[:, 0] * X[:, 1] > 0, "same", "other")  # XOR-like: no line separates it
    model = TunedMLP("classification", FAST, random_state=0).fit(X[:90], y[:90])
    proba = model.predict_proba(X[90:])
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-12)
    assert list(model.classes_) == ["other", "same"]
    assert np.mean(model.predict(X[90:]) == y[90:]) > 0.8


def test_state_round_trip_predicts_bit_for_bit(tmp_path):
    X, y = regression_rows()
    model = TunedMLP("regression", FAST, random_state=0).fit(X, y)
    torch.save(model.state(), tmp_path / "m.pt")
    loaded = TunedMLP.from_state(torch.load(tmp_path / "m.pt", weights_only=True))
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert loaded.choice_ == model.choice_


def test_a_class_with_one_row_falls_back_to_plain_folds_and_too_few_rows_is_a_user_error():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(12, 2))
    y = np.array([0] * 6 + [1] * 5 + [2])
    model = TunedMLP("classification", FAST, random_state=0).fit(X, y)
    assert model.predict_proba(X).shape == (12, 3)
    with pytest.raises(UserError, match="at least 2"):
        TunedMLP("regression", FAST).fit(X[:1], np.ones(1))
    with pytest.raises(UserError, match="widths >= 1"):
        MLPSearch(hidden=((0,),))
