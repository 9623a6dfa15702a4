import numpy as np

from dlconcepts.data import Standardizer
from dlconcepts.data.scaling import Identity


def test_fitted_on_train_only():
    rng = np.random.default_rng(0)
    train, test = rng.normal(10, 3, (50, 2)), rng.normal(100, 1, (20, 2))
    s = Standardizer().fit(train)
    z = s.transform(train)
    np.testing.assert_allclose(z.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(z.std(axis=0), 1, atol=1e-12)
    # The test rows are scaled with the training statistics, not their own.
    np.testing.assert_allclose(s.transform(test), (test - train.mean(0)) / train.std(0))


def test_inverse_round_trip_and_constant_column():
    X = np.column_stack([np.linspace(-5000, 5000, 11), np.full(11, 7.0)])
    s = Standardizer().fit(X)
    z = s.transform(X)
    assert np.all(z[:, 1] == 0)
    np.testing.assert_allclose(s.inverse_transform(z), X, rtol=1e-12)


def test_affine_invariance():
    # Standardizing a*x + b gives the same numbers as standardizing x (for a > 0): units do not matter.
    x = np.random.default_rng(1).normal(size=(30, 1))
    np.testing.assert_allclose(Standardizer().fit_transform(x), Standardizer().fit_transform(1e6 * x - 42), atol=1e-9)


def test_identity_changes_nothing():
    X = np.arange(6.0).reshape(3, 2)
    s = Identity().fit(X)
    np.testing.assert_array_equal(s.transform(X), X)
    np.testing.assert_array_equal(s.inverse_transform(X), X)


def test_per_model_scalers_use_only_their_own_rows():
    from dlconcepts.data.scaling import PerModelStandardizer

    X = np.arange(20.0).reshape(10, 2)
    rows = [np.array([0, 1, 2]), np.array([5, 6, 9])]
    per = PerModelStandardizer().fit(X, rows)
    Z = per.transform(X, rows)
    assert Z.shape == (2, 3, 2)
    for r, part in enumerate(rows):
        np.testing.assert_allclose(Z[r], Standardizer().fit_transform(X[part]))
    np.testing.assert_allclose(per.inverse_transform(Z), np.stack([X[r] for r in rows]), atol=1e-12)
    assert per.transform(X).shape == (2, 10, 2) and len(per) == 2 and per[1].mean_[0] == X[rows[1], 0].mean()
