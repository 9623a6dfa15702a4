"""Lab `gait`: the leakage guard keeps the label's definition out, the metrics and intervals are right."""

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from dlconcepts.data.gait import COLUMNS, load_gait
from dlconcepts.labs import gait, get_lab
from dlconcepts.labs.runner import RunSettings, resolve_config, run_lab
from dlconcepts.nets.mlp import mlp
from dlconcepts.tabular import validation as V


# -- the guard -------------------------------------------------------------------------------------

def test_guarded_features_exclude_the_defining_columns_and_leaky_adds_them_back():
    y1, y1_leaky = gait.feature_columns("y1"), gait.feature_columns("y1", leaky=True)
    for column in ("No", "TUG", "time", "t6", "n6", "y1", "BBS", "y2"):
        assert column not in y1
    assert set(y1_leaky) - set(y1) == {"TUG", "time", "t6", "n6"}
    assert "y1" not in y1_leaky and "No" not in y1_leaky

    y2, y2_leaky = gait.feature_columns("y2"), gait.feature_columns("y2", leaky=True)
    for column in ("No", "BBS", "y2", "TUG", "y1"):
        assert column not in y2
    assert {"time", "t6", "n6"} <= set(y2)  # video timings are gait, not BBS
    assert set(y2_leaky) - set(y2) == {"BBS"}

    assert not {"TUG", "time", "t6", "n6", "y1", "y2", "BBS"} & set(gait.feature_columns("TUG"))
    assert not {"BBS", "y2", "y1", "TUG"} & set(gait.feature_columns("BBS"))
    assert set(gait.feature_columns("BBS", leaky=True)) - set(gait.feature_columns("BBS")) == {"y2"}
    # every column is either a gait feature of y1 or deliberately excluded
    assert set(y1) | {"No", "TUG", "time", "t6", "n6", "y1", "BBS", "y2"} == set(COLUMNS)
    with pytest.raises(ValueError, match="unknown gait target"):
        gait.feature_columns("age")


def _loo_scores(target, columns, model):
    table = load_gait()
    frame = table[columns]
    y = table[target].to_numpy(dtype=int)
    folds = V.make_folds(frame, V.plan_cv("loo", "classification", y, 0))
    return y, gait.out_of_fold(model, folds, y, "classification")


def test_the_leak_shows_tug_alone_ranks_y1_perfectly_and_leaky_features_score_no_worse():
    logistic = gait.classifiers(gait.Config(), seed=0)[gait.LOGISTIC]
    y, alone = _loo_scores("y1", ["TUG"], logistic)
    # y1 is exactly TUG >= 14 s, so the definition orders every at-risk subject above every other
    # (measured: AUC 1.00; its accuracy is 0.83 because the L2-penalized threshold is learned, not given).
    assert gait.roc_auc(y, alone) == 1.0
    _, guarded = _loo_scores("y1", gait.feature_columns("y1"), logistic)
    _, leaky = _loo_scores("y1", gait.feature_columns("y1", leaky=True), logistic)
    # measured: accuracy 0.91 leaky vs 0.83 guarded, ROC AUC 0.97 vs 0.96
    assert gait.accuracy(y, leaky) >= gait.accuracy(y, guarded)
    assert gait.roc_auc(y, leaky) >= gait.roc_auc(y, guarded)
    assert gait.roc_auc(y, guarded) < 1.0  # without the definition the ranking is no longer perfect


# -- metrics ---------------------------------------------------------------------------------------

def test_classification_metrics_by_hand_and_against_scikit_learn():
    y = np.array([1, 1, 1, 0, 0, 0, 0])
    score = np.array([0.9, 0.6, 0.2, 0.7, 0.1, 0.3, 0.6])  # predicted 1 when > 0.5: 1 1 0 1 0 0 1
    assert gait.sensitivity(y, score) == 2 / 3
    assert gait.specificity(y, score) == 2 / 4
    assert gait.accuracy(y, score) == 4 / 7
    assert gait.balanced_accuracy(y, score) == (2 / 3 + 2 / 4) / 2
    assert gait.roc_auc(y, score) == pytest.approx(roc_auc_score(y, score), abs=1e-15)  # the tie 0.6/0.6 counts half
    rng = np.random.default_rng(0)
    for _ in range(20):
        y = rng.integers(0, 2, size=23)
        score = rng.integers(0, 5, size=23) / 4  # many ties
        assert gait.roc_auc(y, score) == pytest.approx(roc_auc_score(y, score), abs=1e-12)
    assert math.isnan(gait.roc_auc(np.ones(4, dtype=int), np.arange(4.0)))
    assert math.isnan(gait.sensitivity(np.zeros(3, dtype=int), np.zeros(3)))


def test_bootstrap_interval_of_perfect_predictions_is_one_to_one():
    y = np.array([0, 1, 0, 1, 1, 0])
    accuracy, auc = gait.CLASS_METRICS["accuracy"], gait.CLASS_METRICS["ROC AUC"]
    got = gait.with_interval(accuracy, y, y.astype(float), 500, 0)
    assert (got["low"], got["high"]) == (1.0, 1.0)
    # ROC AUC is undefined on resamples holding one class: they are left out, the rest are all 1
    got = gait.with_interval(auc, y, y.astype(float), 500, 0)
    assert (got["low"], got["high"]) == (1.0, 1.0)
    got = gait.with_interval(auc, np.ones(5, dtype=int), np.ones(5), 50, 0)
    assert all(math.isnan(got[k]) for k in ("value", "low", "high"))


def test_bootstrap_interval_is_seeded():
    rng = np.random.default_rng(1)
    y, score = rng.integers(0, 2, 30), rng.random(30)
    a = gait.with_interval(gait.CLASS_METRICS["accuracy"], y, score, 300, 5)
    assert a == gait.with_interval(gait.CLASS_METRICS["accuracy"], y, score, 300, 5)
    assert a["low"] <= gait.accuracy(y, score) <= a["high"]


def test_bootstrap_interval_covers_a_known_mean_about_95_percent_of_the_time():
    # 300 samples of 60 Bernoulli(0.3) draws; the metric is the sample mean, the truth 0.3.
    # Binomial sd of the coverage over 300 replications is sqrt(0.95·0.05/300) = 0.013; the percentile
    # bootstrap also under-covers a little at n = 60 (about 1 point), so 0.95 − 1 − 3·1.3 points ≈ 0.90.
    rng = np.random.default_rng(2)
    covered = 0
    for k in range(300):
        draws = (rng.random(60) < 0.3).astype(float)
        got = V.interval(lambda rows: np.mean(draws[rows], axis=-1), 60, n_boot=400, seed=k)
        covered += got.low <= 0.3 <= got.high
    assert 0.90 <= covered / 300 <= 0.99


# -- the lab ---------------------------------------------------------------------------------------

def test_quick_lab_reports_the_leakage_check_and_the_baselines(tmp_path, keep_torch_threads):
    lab = get_lab("gait")
    config = resolve_config(lab, quick=True, file_values={}, set_pairs=[("regression", "true")])
    settings = RunSettings(quick=True, device="cpu", seed=0, quiet=True, out=str(tmp_path), threads=1)
    run, result = run_lab(lab, config, settings)
    report = (run.path / "report.md").read_text()
    assert "| leakage check | y1 | leaky (+ TUG, time, t6, n6) |" in report
    assert "| leakage check | y1 | TUG alone (the definition) |" in report
    assert "| baseline | y1 | guarded" in report and "majority class" in report and "logistic regression" in report
    assert "| baseline | TUG | guarded" in report and "ridge regression" in report
    assert "What 23 subjects can and cannot support" in report
    for name in ("forest_classification", "roc_loo", "forest_regression"):
        assert (run.path / "figures" / f"{name}.png").is_file()

    m = result.metrics["classification"]
    for target in ("y1", "y2"):
        for validation in (gait.LOO, gait.REPEATED):
            for model in (gait.MLP, gait.MAJORITY, gait.LOGISTIC):
                for v in m[target][gait.GUARDED][validation][model].values():
                    assert v["low"] <= v["value"] <= v["high"] or math.isnan(v["value"])
        majority = m[target][gait.GUARDED][gait.LOO][gait.MAJORITY]
        positives = int(load_gait()[target].sum())
        assert majority["accuracy"]["value"] == pytest.approx(1 - positives / 23)  # always 'not at risk'
        assert majority["balanced accuracy"]["value"] == 0.5
    assert m["y1"][gait.DEFINITION][gait.LOO][gait.LOGISTIC]["ROC AUC"]["value"] == 1.0

    saved = torch.load(run.path / "model.pt", weights_only=True)
    assert saved["features"] == gait.feature_columns("y1")
    net = mlp(saved["layer_sizes"], "relu").double()
    net.load_state_dict(saved["model"])  # the state_dict fits the network it describes
