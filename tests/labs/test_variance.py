"""The variance lab: every run gets its own split, the two init modes are what they say, and the numbers hold."""

import math

import numpy as np
import torch

from dlconcepts.data import GaussianBlobs
from dlconcepts.labs import get_lab
from dlconcepts.labs.runner import RunSettings, resolve_config, run_lab
from dlconcepts.labs.variance import init_seeds, repeated_splits, spread
from dlconcepts.train.many_models import StackedMLP, seeded_models


def quick_run(tmp_path, set_pairs=()):
    lab = get_lab("variance")
    config = resolve_config(lab, quick=True, file_values={}, set_pairs=list(set_pairs))
    run, result = run_lab(lab, config, RunSettings(quick=True, device="cpu", seed=3, quiet=True, out=str(tmp_path),
                                                   threads=1))
    return run, result


def test_every_split_is_its_own():
    # The course's notebook reused one random_state, so its "repeated" splits were all one split.
    splits = repeated_splits(40, seed=0, runs=300, test_fraction=0.2)
    tests = {s.test.tobytes() for s in splits}
    assert len(tests) == 300
    for s in splits:
        assert len(s.train) == 32 and len(s.test) == 8 and len(s.valid) == 0
        assert sorted(np.concatenate([s.train, s.test]).tolist()) == list(range(40))
    again = repeated_splits(40, seed=0, runs=300, test_fraction=0.2)
    assert all(np.array_equal(a.test, b.test) for a, b in zip(splits, again))  # reproducible for a seed
    other = repeated_splits(40, seed=1, runs=300, test_fraction=0.2)
    assert any(not np.array_equal(a.test, b.test) for a, b in zip(splits, other))


def test_classification_splits_are_stratified_and_distinct():
    y = np.repeat([0, 1], 100)
    splits = repeated_splits(200, seed=0, runs=50, test_fraction=0.2, stratify=y, stream=3)
    assert all(np.bincount(y[s.test]).tolist() == [20, 20] for s in splits)
    assert len({s.test.tobytes() for s in splits}) == 50


def stacked(same_init: bool, runs: int = 5) -> StackedMLP:
    return StackedMLP.from_models(seeded_models((1, 20, 10, 1), init_seeds(7, runs, same_init)), "relu")


def test_same_init_starts_every_model_from_identical_weights_and_fresh_init_does_not():
    same, fresh = stacked(True), stacked(False)
    for p_same, p_fresh in zip(same.parameters(), fresh.parameters()):
        assert all(torch.equal(p_same[0], p_same[r]) for r in range(1, 5))
        assert not any(torch.equal(p_fresh[0], p_fresh[r]) for r in range(1, 5))
        assert torch.equal(p_same[0], p_fresh[0])  # model 0 shares its init across the modes


def test_spread_matches_known_percentiles():
    s = spread(np.arange(101.0))
    assert (s["median"], s["iqr"], s["p5"], s["p95"], s["range_5_95"]) == (50, 50, 5, 95, 90)
    assert (s["min"], s["max"]) == (0, 100)
    assert math.isclose(s["std"], np.arange(101.0).std(ddof=1))


def test_quick_lab_measures_both_modes_and_the_classifier(tmp_path, keep_torch_threads):
    run, result = quick_run(tmp_path)
    m = result.metrics
    assert {p.name for p in (run.path / "figures").glob("*.png")} == {"test_mse_boxplots.png", "accuracy_boxplot.png"}
    assert m["pairs_sharing_a_test_set"] == 0
    assert (m["n_train"], m["n_test"]) == (32, 8)
    for key in ("same init", "fresh init", "one split reused", "mean function"):
        s = m["test_mse"][key]
        assert 0 < s["p5"] <= s["median"] <= s["p95"] and math.isfinite(s["p95"])
    assert 0 <= m["init_variance_share"] and m["diverged"] == {"same init": 0, "fresh init": 0}

    c = m["classification"]
    for key in ("test_accuracy", "fresh_accuracy", "bayes_rule_accuracy"):
        assert 0 <= c[key]["min"] <= c[key]["median"] <= c[key]["max"] <= 1
    assert c["n_test"] == 40
    # No classifier beats the Bayes rule on the same fresh draws, up to sampling noise: per draw the
    # difference d = 1[model right] − 1[rule right] has E[d] ≤ 0 and Var(d) ≤ P(they disagree)
    # ≤ (1 − a_model) + (1 − a_rule), so the mean of d over n draws lies below 4·√(that / n)
    # except with probability ~3e-5.
    n, rule = c["n_fresh"], c["bayes_rule_fresh_accuracy"]
    best = c["fresh_accuracy"]["max"]
    assert best - rule < 4 * math.sqrt((2 - best - rule) / n)
    assert abs(rule - GaussianBlobs().bayes_optimal_accuracy(np.random.default_rng(0), 200_000)[0]) < 4 * math.sqrt(
        0.25 / n + 0.25 / 200_000)  # the rule on the fresh draws estimates the same ceiling
    state = torch.load(run.path / "model.pt", weights_only=True)
    assert state["layer_sizes"] == [1, 200, 150, 1] and len(state["test_rows"]) == 8


def test_quadratic_has_no_noise_so_its_mean_function_is_exact(tmp_path, keep_torch_threads):
    _, result = quick_run(tmp_path, [("data", "quadratic"), ("cls_runs", "2")])
    m = result.metrics
    assert (m["n_train"], m["n_test"]) == (80, 20)
    assert m["test_mse"]["mean function"]["p95"] == 0  # y = 3x² + 25x + 580 exactly: nothing left to predict
    assert m["test_mse"]["fresh init"]["median"] > 0
