"""Lab `regularization`: each setting is wired to do what its name says, and the comparison is sound."""

import math

import numpy as np
import pytest
import torch

from dlconcepts.cli import main
from dlconcepts.data import noisy_line
from dlconcepts.labs import regularization as reg
from dlconcepts.train.many_models import ManySettings

SEED = 3


@pytest.fixture(scope="module")
def task():
    cfg = reg.Config(seeds=6, epochs=300, patience=15, weight_decay=0.1, l1=1e-3)
    data = noisy_line(np.random.default_rng(SEED))
    rows = reg.seed_rows(len(data), SEED, cfg.seeds, cfg.test_fraction, cfg.valid_fraction)
    return cfg, data, rows


@pytest.fixture(scope="module")
def outcomes(task):
    cfg, data, rows = task
    torch.manual_seed(0)  # dropout masks
    return {s.name: reg.train_setting(cfg, s, data, rows, SEED, "cpu") for s in reg.six_settings(cfg)}


# -- the comparison ---------------------------------------------------------------------------------

def test_sign_test_matches_hand_computed_binomial_tails():
    # 9 wins, 1 loss: 2·(C(10,0) + C(10,1)) / 2¹⁰ = 22/1024.
    assert reg.sign_test_p_value(9, 1) == pytest.approx(22 / 1024, rel=1e-12)
    assert reg.sign_test_p_value(1, 9) == reg.sign_test_p_value(9, 1)
    assert reg.sign_test_p_value(5, 5) == 1.0  # an even split is the most likely outcome: capped at 1
    assert reg.sign_test_p_value(0, 0) == 1.0
    assert reg.sign_test_p_value(30, 0) == pytest.approx(2 / 2**30, rel=1e-12)


def test_sign_test_agrees_with_scipy():
    stats = pytest.importorskip("scipy.stats")
    for wins, losses in [(12, 3), (20, 20), (31, 9), (7, 0)]:
        expected = stats.binomtest(wins, wins + losses, 0.5, alternative="two-sided").pvalue
        assert reg.sign_test_p_value(wins, losses) == pytest.approx(expected, rel=1e-9)


def test_compare_to_none_counts_paired_wins_and_calls_the_verdict():
    none = np.arange(1.0, 41.0)
    better = none * 0.9
    better[:3] = none[:3] * 1.1  # 37 wins, 3 losses
    c = reg.compare_to_none(better, none)
    assert (c["wins"], c["losses"], c["ties"]) == (37, 3, 0)
    assert c["verdict"] == "helped" and c["sign_test_p"] < 1e-6
    assert reg.compare_to_none(none * 1.2, none)["verdict"] == "hurt"
    mixed = np.where(np.arange(40) % 2 == 0, none * 0.5, none * 1.5)  # 20 wins, 20 losses
    assert reg.compare_to_none(mixed, none)["verdict"] == "no clear difference"
    assert reg.compare_to_none(none, none)["ties"] == 40


# -- per-seed data ----------------------------------------------------------------------------------

def test_each_seed_has_its_own_split_and_validation_comes_from_training_rows(task):
    _, data, rows = task
    assert rows.train.shape == (6, 20) and rows.test.shape == (6, 20) and rows.valid.shape == (6, 5)
    for train, fit, valid, test in zip(rows.train, rows.fit, rows.valid, rows.test):
        assert set(fit) | set(valid) == set(train) and not set(fit) & set(valid)
        assert not set(train) & set(test) and len(set(train) | set(test)) == len(data)
    assert len({tuple(t) for t in rows.test}) == 6  # the splits really vary over seeds
    again = reg.seed_rows(len(data), SEED, 6, 0.5, 0.25)
    assert all(np.array_equal(getattr(rows, k), getattr(again, k)) for k in ("train", "fit", "valid", "test"))


def test_each_seed_is_standardized_on_its_own_training_rows(task):
    _, data, rows = task
    scaling = reg.PerSeedScaling(data, rows.train)
    X, y = scaling.inputs(data, rows.train), scaling.targets(data, rows.train)
    np.testing.assert_allclose(X.mean(axis=1), 0, atol=1e-12)
    np.testing.assert_allclose(y.std(axis=1), 1, atol=1e-12)
    assert len({round(s.mean_[0], 9) for s in scaling.y}) == 6  # one scaler per seed, not one for all
    np.testing.assert_allclose(scaling.to_original(y), data.y[rows.train], rtol=1e-12)


# -- each setting does what its name says -----------------------------------------------------------

def test_all_settings_but_small_init_start_from_the_same_weights(task):
    cfg, _, _ = task
    seeds = reg.init_seeds(SEED, 4)
    stacks = {s.name: reg.initial_stack(cfg, s, seeds) for s in reg.six_settings(cfg)}
    for name in ("dropout", "early stopping", "L1", "L2"):
        for a, b in zip(stacks["none"].parameters(), stacks[name].parameters()):
            assert torch.equal(a, b), name
    small = torch.cat([p.flatten() for p in stacks["small init"].parameters()])
    # ~5,300 draws of N(0, 0.002²): their std is 0.002 to within a few percent; PyTorch's default is ~100× larger.
    assert small.std().item() == pytest.approx(cfg.init_std, rel=0.05)
    assert stacks["none"].weight1.std().item() > 20 * cfg.init_std


def test_dropout_is_on_in_training_and_off_for_predictions(outcomes):
    model = outcomes["dropout"].result.model
    assert model.dropout_rates == (0.5, 0.2)
    X = torch.linspace(-1.5, 1.5, 20).reshape(1, 20, 1).expand(6, 20, 1).contiguous()
    model.eval()
    assert torch.equal(model(X), model(X))
    model.train()
    torch.manual_seed(1)
    assert not torch.allclose(model(X), model(X))
    model.eval()
    # Dropout changed the training: from the same initial weights, the loss curves differ from 'none'.
    assert not np.allclose(outcomes["dropout"].result.train_loss, outcomes["none"].result.train_loss)


def test_early_stopping_stops_early_and_restores_the_best_validation_weights(task, outcomes):
    cfg, data, rows = task
    out = outcomes["early stopping"]
    r = out.result
    assert np.all(r.epochs_used <= cfg.epochs)
    assert np.sum(r.epochs_used < cfg.epochs) >= 4  # patience 15 of 300 epochs: most of the 6 seeds stop
    assert np.all(r.best_epoch <= r.epochs_used)
    # The returned weights are the best epoch's: their validation loss is the lowest recorded.
    Xv, yv = out.scaling.inputs(data, rows.valid), out.scaling.targets(data, rows.valid)
    valid_now = ((r.predict(Xv).double().numpy() - yv) ** 2).mean(axis=(1, 2))
    # float32 training vs a float64 recomputation of 5 rows: agree to float32 rounding (~1e-7 relative), × margin.
    np.testing.assert_allclose(valid_now, np.nanmin(r.valid_loss, axis=0), rtol=1e-4)
    # It trains on the training rows minus the validation rows; the others on all training rows.
    assert r.model.n_models == 6 and rows.fit.shape[1] == 15


def test_l1_and_l2_shrink_the_weights(outcomes):
    def norms(name, p):
        return torch.stack([W.detach().abs().pow(p).sum(dim=(1, 2)) for W in outcomes[name].result.model.weights()]).sum(0)

    assert torch.all(norms("L2", 2) < norms("none", 2))  # Σw² smaller on every seed
    assert torch.all(norms("L1", 1) < norms("none", 1))  # Σ|w| smaller on every seed


def test_mse_is_reported_in_original_units(task, outcomes):
    _, data, rows = task
    out = outcomes["none"]
    pred = out.scaling.to_original(out.result.predict(out.scaling.inputs(data, rows.test)).double().numpy())
    by_hand = [np.mean((pred[r] - data.y[rows.test[r]]) ** 2) for r in range(6)]
    np.testing.assert_allclose(out.test_mse, by_hand, rtol=1e-12)
    assert np.median(out.test_mse) > 100  # target units: y spans ~700, so squared errors are in the hundreds


# -- the lab ----------------------------------------------------------------------------------------

def test_quick_lab_reports_every_setting(tmp_path):
    assert main(["run", "regularization", "--quick", "--seed", "2", "--out", str(tmp_path), "--quiet"]) == 0
    (run_dir,) = tmp_path.iterdir()
    report = (run_dir / "report.md").read_text()
    names = [s.name for s in reg.six_settings(reg.Config())]
    results = report[report.index("## Results"): report.index("## What the numbers say")]
    table_rows = [line for line in results.splitlines() if line.startswith("| ") and not line.startswith("| setting")]
    assert [row.split("|")[1].strip() for row in table_rows] == [*names, "true mean line 3x + 50"]
    assert "Only 4 seeds" in report  # quick mode says its verdicts rest on too few seeds
    state = torch.load(run_dir / "model.pt", weights_only=True)
    assert set(state["settings"]) == set(names)
    assert all(k.endswith(("weight", "bias")) for k in state["model"])


def test_dropout_needs_one_rate_per_hidden_layer(tmp_path, capsys):
    assert main(["run", "regularization", "--quick", "--set", "dropout=0.5", "--out", str(tmp_path), "--quiet"]) == 2
    assert "one probability per hidden layer" in capsys.readouterr().err
    assert math.isclose(reg.NOISE_VARIANCE, 833.333, rel_tol=1e-6)
