"""Lab `cnn-digits`: quick runs through the real CLI on the bundled digits and on tiny MNIST IDX files."""

import json

import numpy as np
import pytest
import torch

from dlconcepts.cli import main
from dlconcepts.data.digits import MNIST_FILES, ImageSet, load_digits, split_images
from dlconcepts.nets.mlp import mlp_parameter_count
from tests.data.test_digits import idx_bytes


def _run_dir(out):
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    return run


def test_quick_run_on_the_bundled_digits(tmp_path):
    assert main(["run", "cnn-digits", "--quick", "--out", str(tmp_path), "--quiet", "--threads", "1"]) == 0
    run = _run_dir(tmp_path)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["data"] == "digits"
    assert metrics["n_train"] + metrics["n_valid"] + metrics["n_test"] == 1797
    assert abs(metrics["n_test"] - 0.2 * 1797) <= 10  # stratified per class: rounding per class moves a few
    # The MLPs have the CNN's parameter budget, within 5 %.
    for candidate in metrics["mlp_candidates"]:
        assert mlp_parameter_count(candidate["layer_sizes"]) == candidate["parameters"]
        assert abs(candidate["parameters"] - metrics["cnn_parameters"]) <= 0.05 * metrics["cnn_parameters"]
    # The validation split chose the MLP: the kept one has the best validation accuracy of the candidates.
    best = max(metrics["mlp_candidates"], key=lambda c: (c["valid_accuracy"], -c["valid_loss"]))
    assert (best["layer_sizes"], best["augmented"]) == (metrics["mlp_layer_sizes"], metrics["mlp_augmented"])
    # Accuracies, intervals, errors, the confusion matrix and McNemar's counts tell one story.
    n = metrics["n_test"]
    for model in ("cnn", "mlp"):
        acc, (low, high) = metrics[f"{model}_test_accuracy"], metrics[f"{model}_test_interval"]
        assert low <= acc <= high and round((1 - acc) * n) == metrics[f"{model}_errors"]
    counts = np.array(metrics["confusion_matrix"])
    assert counts.sum() == n and n - np.trace(counts) == metrics["cnn_errors"]
    assert metrics["mlp_errors"] - metrics["cnn_errors"] == metrics["mcnemar_only_cnn_right"] - metrics["mcnemar_only_mlp_right"]
    assert 0 < metrics["mcnemar_p"] <= 1
    figures = {p.name for p in (run / "figures").iterdir()}
    assert {"curves.png", "confusion_matrix.png", "first_layer_filters.png", "augmentation.png"} <= figures
    assert {"misclassified_cnn.png", "misclassified_mlp.png"} <= figures
    state = torch.load(run / "model.pt", weights_only=True)
    assert state["model"]["features.0.weight"].shape == (8, 1, 3, 3)  # the CNN; the MLP under "mlp"
    assert state["mlp"]["1.0.weight"].shape[1] == 64  # Flatten, then the MLP whose first Linear takes 8·8 pixels
    report = (run / "report.md").read_text()
    assert "McNemar" in report and "Wilson" in report


def _write_tiny_mnist(directory, n_train=80, n_test=30):
    rng = np.random.default_rng(1)
    arrays = {}
    for part, n in (("train", n_train), ("test", n_test)):
        labels = np.arange(n) % 10  # every digit present, so the stratified validation part has each class
        images = rng.integers(0, 40, (n, 28, 28))
        for k, label in enumerate(labels):  # a bright bar whose position says the digit: learnable, if barely
            images[k, 4 + 2 * label : 6 + 2 * label, 6:22] = 255
        arrays[f"{part}_images"], arrays[f"{part}_labels"] = images, labels
    for key, stem in MNIST_FILES.items():
        (directory / stem).write_bytes(idx_bytes(arrays[key]))


def test_quick_run_on_mnist_idx_files_uses_its_own_test_set(tmp_path):
    mnist = tmp_path / "mnist"
    mnist.mkdir()
    _write_tiny_mnist(mnist)
    out = tmp_path / "runs"
    assert main(["run", "cnn-digits", "--quick", "--mnist", str(mnist), "--out", str(out), "--quiet",
                 "--threads", "1"]) == 0  # --mnist DIR, the spelling of --set mnist=DIR
    metrics = json.loads((_run_dir(out) / "metrics.json").read_text())
    assert metrics["data"] == "mnist" and metrics["n_test"] == 30
    assert metrics["n_train"] + metrics["n_valid"] == 80 and metrics["n_valid"] == 10
    assert metrics["mlp_candidates"][0]["layer_sizes"][0] == 784


def test_split_keeps_mnist_test_fixed_and_bundled_digits_stratified():
    digits = load_digits()
    split = split_images(digits, np.random.default_rng(0), 0.15, 0.2)
    parts = [split.train, split.valid, split.test]
    assert sorted(np.concatenate(parts).tolist()) == list(range(1797))
    for part in parts:  # each class keeps its share (±1 image from per-class rounding)
        share = np.bincount(digits.labels[part], minlength=10) / np.bincount(digits.labels)
        assert np.ptp(share) < 0.02
    fake = ImageSet(np.zeros((100, 1, 28, 28), np.float32), np.arange(100) % 10, "mnist", "", np.arange(70, 100))
    split = split_images(fake, np.random.default_rng(0), 0.2, 0.5, train_limit=30)
    # 7 training images per class, round(0.2 · 7) = 1 of each for validation
    assert split.test.tolist() == list(range(70, 100)) and len(split.valid) == 10 and len(split.train) == 30
    assert not set(split.train) & set(split.valid) and max(split.valid) < 70


@pytest.mark.parametrize("make", ["missing", "empty", "not_idx"])
def test_bad_mnist_folder_is_one_line_and_exit_2(tmp_path, capsys, make):
    folder = tmp_path / "m"
    if make != "missing":
        folder.mkdir()
    if make == "not_idx":
        for stem in MNIST_FILES.values():
            (folder / stem).write_text("hello")
    code = main(["run", "cnn-digits", "--quick", "--set", f"mnist={folder}", "--out", str(tmp_path / "r"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("dlc: error: ") and err.count("\n") == 1
    assert str(folder) in err
    if make != "not_idx":  # a missing folder or file is refused before the run directory exists
        assert not (tmp_path / "r").exists()
