"""The one home of cross-validation, baselines and intervals: each piece against an independent answer."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import balanced_accuracy_score, mean_absolute_error, r2_score, roc_auc_score

from dlconcepts.errors import UserError
from dlconcepts.tabular import validation as V


@pytest.fixture
def rows():
    rng = np.random.default_rng(0)
    return rng.integers(0, 60, size=(25, 60))  # 25 bootstrap-like resamples of 60 rows


def test_regression_metrics_equal_scikit_learn_on_every_resample(rows):
    rng = np.random.default_rng(1)
    y, p = rng.normal(size=60), rng.normal(size=60)
    r2, mae, rmse = V.r2_metric(y, p)(rows), V.mae_metric(y, p)(rows), V.rmse_metric(y, p)(rows)
    for k, r in enumerate(rows):
        assert r2[k] == pytest.approx(r2_score(y[r], p[r]), rel=1e-12)
        assert mae[k] == pytest.approx(mean_absolute_error(y[r], p[r]), rel=1e-12)
        assert rmse[k] == pytest.approx(np.sqrt(np.mean((y[r] - p[r]) ** 2)), rel=1e-12)
    assert np.isnan(V.r2_metric(np.ones(5), np.zeros(5))(np.arange(5)))  # no variance: R² undefined


@pytest.mark.parametrize("n_classes", [2, 3])
def test_class_metrics_equal_scikit_learn_on_every_resample(rows, n_classes):
    rng = np.random.default_rng(2)
    y = rng.integers(0, n_classes, 60)
    proba = rng.dirichlet(np.ones(n_classes), size=60)
    proba[10:20] = proba[:10]  # ties in the scores: they count half
    label = proba.argmax(axis=1)
    acc, bal = V.accuracy_metric(y, label)(rows), V.balanced_accuracy_metric(y, label)(rows)
    auc = (V.roc_auc_metric(y == 1, proba[:, 1]) if n_classes == 2
           else V.macro_roc_auc_metric(y, proba, np.arange(n_classes)))(rows)
    for k, r in enumerate(rows):
        assert acc[k] == pytest.approx(np.mean(y[r] == label[r]))
        assert bal[k] == pytest.approx(balanced_accuracy_score(y[r], label[r]), rel=1e-12)
        expected = (roc_auc_score(y[r], proba[r, 1]) if n_classes == 2
                    else roc_auc_score(y[r], proba[r], multi_class="ovr", average="macro"))
        assert auc[k] == pytest.approx(expected, rel=1e-12)
    assert np.isnan(V.roc_auc_metric(np.zeros(4, bool), np.arange(4.0))(np.arange(4)))  # one class: undefined


def test_interval_is_scipys_percentile_bootstrap_and_pairs_resamples():
    rng = np.random.default_rng(3)
    y = rng.normal(size=40)
    p_a, p_b = y + rng.normal(scale=0.5, size=40), y + rng.normal(scale=0.8, size=40)
    mae_a, mae_b = V.mae_metric(y, p_a), V.mae_metric(y, p_b)
    got = V.interval(mae_a, 40, n_boot=999, seed=5)
    # the same resamples drawn directly through scipy (one statistic per call) give the same interval
    ref = stats.bootstrap((np.arange(40),), lambda r: float(np.mean(np.abs(y[r] - p_a[r]))), vectorized=False,
                          n_resamples=999, method="percentile", rng=np.random.default_rng(5))
    assert got.value == pytest.approx(mean_absolute_error(y, p_a))
    assert (got.low, got.high) == pytest.approx((ref.confidence_interval.low, ref.confidence_interval.high), rel=1e-12)
    diff = V.paired_difference(mae_b, mae_a, 40, n_boot=999, seed=5)
    assert diff.value == pytest.approx(mae_b(np.arange(40)) - mae_a(np.arange(40)))
    assert diff.low > 0 and V.separated(diff)  # the noisier predictions are worse on (nearly) every resample
    # pairing: the difference's interval is far narrower than the two intervals side by side suggest
    b = V.interval(mae_b, 40, n_boot=999, seed=5)
    assert diff.high - diff.low < (b.high - b.low) + (got.high - got.low)


def test_interval_leaves_out_resamples_where_the_metric_is_undefined():
    y = np.array([1] + [0] * 19)  # one positive: most resamples of AUC hold no positive at all
    got = V.interval(V.roc_auc_metric(y == 1, np.linspace(1, 0, 20)), 20, n_boot=500, seed=0)
    assert got.value == 1.0 and got.low == got.high == 1.0


def test_plan_cv_auto_rule_and_explicit_plans():
    y_small, y_medium, y_large = np.arange(23.0), np.arange(120.0), np.arange(500.0)
    assert V.plan_cv("auto", "regression", y_small, 0).name == "leave-one-out (23 folds)"
    medium = V.plan_cv("auto", "regression", y_medium, 0)
    assert len(medium.repeats) == V.REPEATS and medium.n_fits == V.REPEATS * V.FOLDS and "repeats" in medium.name
    assert V.plan_cv("auto", "regression", y_large, 0).n_fits == V.FOLDS
    for plan in (medium, V.plan_cv(3, "regression", y_medium, 0)):
        for repeat in plan.repeats:  # every repeat covers every row exactly once
            assert np.array_equal(np.sort(np.concatenate([test for _, test in repeat])), np.arange(120))
    labels = np.array([0] * 100 + [1] * 3)
    assert "3-fold stratified" in V.plan_cv("auto", "classification", labels, 0).name  # folds ≤ smallest class
    with pytest.raises(UserError, match="class '1' of the target has 3 rows"):
        V.plan_cv(5, "classification", labels, 0)
    with pytest.raises(UserError, match="fewer than the 10 folds"):
        V.plan_cv(10, "regression", np.arange(5.0), 0)


def test_out_of_fold_predicts_each_row_from_models_that_never_saw_it():
    class Remember:
        """Predicts how many training rows it saw; fails if asked about one of them."""

        def fit(self, X, y):
            self.seen = set(X[:, 0].tolist())
            return self

        def predict(self, X):
            assert not self.seen & set(X[:, 0].tolist())
            return np.full(len(X), float(len(self.seen)))

    y = np.arange(30.0)
    frame = pd.DataFrame({"id": np.arange(30.0)})
    plan = V.plan_cv(3, "regression", y, 0)
    oof = V.out_of_fold(lambda _: Remember(), V.make_folds(frame, plan), y, "regression")
    assert np.array_equal(oof.predictions, np.full(30, 20.0)) and len(oof.fits) == 3


def test_compare_names_the_best_and_warns_when_the_focus_model_loses():
    rng = np.random.default_rng(4)
    y = rng.normal(size=80)
    good = V.OutOfFold(y + rng.normal(scale=0.3, size=80), None, None)
    bad = V.OutOfFold(y + rng.normal(scale=2.0, size=80), None, None)
    comparison = V.compare("regression", y, {"MLP": bad, "ridge regression": good}, focus="MLP", n_boot=500)
    assert comparison.best == "ridge regression"
    assert comparison.verdict.startswith("Out of fold, the ridge regression is best by R²")
    assert "the rows tell them apart" in comparison.verdict
    (warning,) = comparison.losses
    assert warning.startswith("The MLP loses to the ridge regression") and "the interval excludes 0" in warning
    comparison = V.compare("regression", y, {"MLP": good, "ridge regression": bad}, focus="MLP", n_boot=500)
    assert comparison.best == "MLP" and comparison.losses == []
