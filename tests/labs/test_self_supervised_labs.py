"""Labs `autoencoder` and `vae`: quick runs through the real CLI on MNIST-format files and in their other
modes, refused inputs, and the issue's target (median of 3 seeds, full lab)."""

import statistics

import pytest
import torch

from dlconcepts.cli import main
from dlconcepts.labs import get_lab
from dlconcepts.labs.runner import RunSettings, resolve_config, run_lab
from tests.data.test_digits import write_mnist
from tests.labs.quick import run_quick


@pytest.mark.parametrize("lab_id", ["autoencoder", "vae"])
def test_labs_run_on_mnist_files_with_mnists_own_test_set(lab_id, tmp_path):
    mnist = tmp_path / "mnist"
    mnist.mkdir()
    write_mnist(mnist, n_train=60, n_test=20)
    metrics, figures, run_dir = run_quick(lab_id, tmp_path / "runs", f"mnist={mnist}", "arch=conv", seed=3)
    assert metrics["data"] == "mnist" and metrics["n_test"] == 20  # t10k's images, not a split of the 60
    assert metrics["n_train"] + metrics["n_valid"] == 60
    assert "MNIST’s own test set" in (run_dir / "log.txt").read_text()
    state = torch.load(run_dir / "model.pt", weights_only=True)
    assert state["image_shape"] == [1, 28, 28] and state["arch"] == "conv"
    assert len(figures) == 4


def test_autoencoder_metrics_hold_together(tmp_path):
    metrics, figures, run_dir = run_quick("autoencoder", tmp_path, seed=3)
    assert figures == ["curves", "latent_space", "mse_vs_pca", "reconstructions"]
    assert metrics["mse_ratio_autoencoder_to_pca"] == pytest.approx(metrics["test_mse_autoencoder"] / metrics["test_mse_pca"])
    assert metrics["test_mse_pca"] == metrics["pca_test_mse_by_components"]["2"]
    curve = list(metrics["pca_test_mse_by_components"].values())
    assert curve == sorted(curve, reverse=True)
    # PCA is the best linear code on its training rows: the linear autoencoder cannot go below it.
    assert metrics["linear_autoencoder_train_mse"] >= metrics["train_mse_pca"] * (1 - 1e-5)
    assert (metrics["n_train"], metrics["n_valid"], metrics["n_test"]) == (1079, 359, 359)


def test_vae_other_modes_and_its_metrics(tmp_path):
    metrics, figures, run_dir = run_quick("vae", tmp_path, "likelihood=gaussian", "latent=3", "warmup_epochs=2", seed=3)
    assert figures == ["elbo_curves", "latent_means", "latent_traversal", "prior_samples"]
    assert metrics["test_neg_elbo"] == pytest.approx(metrics["test_reconstruction"] + metrics["test_kl"])
    assert metrics["test_entropy_floor"] is None  # only the Bernoulli decoder has it
    weights = [row["kl_weight"] for row in metrics["history"]["epochs"]]
    assert weights == [0.5, 1.0, 1.0]
    assert len(metrics["latent_mean_variance"]) == 3
    assert "warm-up" in (run_dir / "report.md").read_text()


def test_refused_settings_exit_with_one_line(tmp_path, capsys):
    assert main(["run", "autoencoder", "--quick", "--set", "latent=9", "--out", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "pca_max_components" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert main(["run", "vae", "--quick", "--set", f"mnist={tmp_path / 'nowhere'}", "--out", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_autoencoder_beats_pca_at_two_latent_dimensions(tmp_path):
    # The target: test reconstruction MSE ≤ 0.6 × PCA's with 2 components, median of seeds 0, 1, 2
    # (full lab; the linear autoencoder is left out, it does not enter the ratio).
    lab = get_lab("autoencoder")
    config = resolve_config(lab, quick=False, file_values={}, set_pairs=[("linear_epochs", "0")])
    ratios = []
    for seed in range(3):
        _, result = run_lab(lab, config, RunSettings(device="cpu", seed=seed, quiet=True, out=str(tmp_path)))
        ratios.append(result.metrics["mse_ratio_autoencoder_to_pca"])
    assert statistics.median(ratios) <= 0.6, ratios
