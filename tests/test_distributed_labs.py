"""The mini-batch labs under torch.distributed: `vae` (VAETrainer) and `cnn-digits` (Trainer, per-rank warps),
in real torchrun processes (gloo, CPU) against one process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dlconcepts import distributed
from dlconcepts.runtime import seed_for_rank
from tests.test_distributed import failure, run_with_timeout, torchrun

WORKER = Path(__file__).with_name("ddp_lab_worker.py")
# One torchrun job of two processes on a 2-core machine takes 10–20 s; a hung rendezvous must not hang the suite.
TIMEOUT_S = 120


def dlc(*args: str) -> subprocess.CompletedProcess:
    """The real `dlc` (with the torchrun workers it launches, killed with it on a timeout)."""
    return run_with_timeout([sys.executable, "-m", "dlconcepts", *args], timeout=TIMEOUT_S)


def two_processes_and_one(tmp_path, what: str) -> tuple[dict, dict]:
    """tests/ddp_lab_worker.py's `what` trained by two torchrun processes (rank 0's result) and by this one."""
    from tests.ddp_lab_worker import TRAININGS

    out = tmp_path / f"{what}.pt"
    done = torchrun(2, str(WORKER), str(out), what)
    assert done.returncode == 0, failure(done)
    return torch.load(out, weights_only=True), TRAININGS[what](distributed.SINGLE)


def largest_relative_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """max over tensors of max|a − b| / max|a| (integer tensors, e.g. BatchNorm's count, must be equal)."""
    worst = 0.0
    for name, value in a.items():
        if value.is_floating_point():
            worst = max(worst, ((b[name] - value).abs().max() / value.abs().max()).item())
        else:
            assert torch.equal(b[name], value), name
    return worst


# -- float64: two processes take the very steps one process takes ----------------------------------------


def test_vae_over_two_processes_takes_the_steps_one_process_takes(tmp_path):
    """ε drawn for the global batch and split by rows, shares weighted, losses summed over the ranks, the KL
    warm-up and the cosine schedule as in one process: in float64 the two agree to rounding (measured
    ≤ 7e-16 relative; 1e-10 leaves room for other BLAS builds and still catches any error of the loop,
    which moves the weights by percents)."""
    two, one = two_processes_and_one(tmp_path, "vae")
    assert two["world_size"] == 2 and two["steps"] == one["steps"] == 36
    assert largest_relative_difference(one["state"], two["state"]) <= 1e-10
    for a, b in zip(one["epochs"], two["epochs"], strict=True):
        assert a["kl_weight"] == b["kl_weight"] and a["lr"] == b["lr"]  # warm-up and schedule per epoch
        for key in ("train_loss", "train_reconstruction", "train_kl", "train_neg_elbo", "valid_neg_elbo"):
            assert a[key] == pytest.approx(b[key], rel=1e-10), key
    assert [e["kl_weight"] for e in one["epochs"]] == pytest.approx([1 / 3, 2 / 3, 1, 1, 1, 1])


def test_the_digits_cnn_over_two_processes_takes_the_steps_one_process_takes(tmp_path):
    """cnn-digits's CNN (3×3 conv–BatchNorm2d–ReLU stages) through the Trainer: the BatchNorm statistics are the
    global batch's over height, width and both ranks' images (measured ≤ 3e-15 relative in float64)."""
    two, one = two_processes_and_one(tmp_path, "digits_cnn")
    assert two["steps"] == one["steps"] == 24
    assert largest_relative_difference(one["state"], two["state"]) <= 1e-10  # weights and running statistics
    for a, b in zip(one["epochs"], two["epochs"], strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-10)
        assert a["train_accuracy"] == b["train_accuracy"] and a["valid_accuracy"] == b["valid_accuracy"]


# -- per-rank augmentation streams -----------------------------------------------------------------------


def test_seeds_for_ranks_are_reproducible_distinct_and_rank_0_keeps_the_run_seed():
    assert [seed_for_rank(s, 0) for s in (0, 5, 2**40)] == [0, 5, 2**40]
    ranks = [seed_for_rank(5, r) for r in range(8)]
    assert ranks == [seed_for_rank(5, r) for r in range(8)]  # a function of (seed, rank) only
    assert len(set(ranks)) == 8
    # Not seed + rank: rank 1 of seed 5 must not replay seed 6 (a lab's other stream, or the next run's rank 0).
    assert not set(ranks[1:]) & set(range(0, 64))
    assert seed_for_rank(6, 1) != seed_for_rank(5, 2)
    with pytest.raises(ValueError):
        seed_for_rank(-1, 1)


def test_each_rank_warps_from_its_own_stream_and_one_process_warps_as_before():
    from dlconcepts.labs.cnn_digits import Config, training_warps

    cfg = Config()
    # The first draws of RandomAffine(10°, ±10 %, ±1 px, seed=5) as the lab made them before there were ranks.
    angles, scales, shifts = training_warps(cfg, 5, rank=0).draw(4)
    assert angles.tolist() == pytest.approx([6.605037689208984, -7.477781772613525, 8.149394035339355, 6.398540496826172])
    assert scales.tolist() == pytest.approx([1.084020733833313, 0.9233290553092957, 0.932878315448761, 1.047583818435669])
    assert shifts.tolist() == [[-1.0, 0.0], [0.0, -1.0], [1.0, 1.0], [-1.0, -1.0]]

    rank_0 = training_warps(cfg, 5, rank=0).draw(2000)[0]
    rank_1 = training_warps(cfg, 5, rank=1).draw(2000)[0]
    torch.testing.assert_close(training_warps(cfg, 5, rank=1).draw(2000)[0], rank_1, rtol=0, atol=0)  # repeatable
    # Not the same stream, nor one stream at an offset: no angle of one rank's 2,000 turns up in the other's.
    assert not set(rank_0.tolist()) & set(rank_1.tolist())
    assert not torch.equal(training_warps(cfg, 6, rank=1).draw(10)[0], rank_1[:10])  # and it follows the run seed


def test_the_lab_hands_each_rank_s_trainer_that_rank_s_warps(monkeypatch):
    """train_model asks the process group for its rank (no processes needed: the group and the Trainer are
    stand-ins that record what the lab gives them)."""
    from dlconcepts.labs import cnn_digits

    given = {}

    class RecordingTrainer:
        def __init__(self, *args, augment=None, **kwargs):
            given["augment"] = augment

        def fit(self, *args, **kwargs):
            return None

    monkeypatch.setattr(cnn_digits, "Trainer", RecordingTrainer)
    monkeypatch.setattr(cnn_digits.distributed, "current", lambda: distributed.Group(rank=1, world_size=2))
    ctx = type("Ctx", (), {"progress": False, "checkpoints": None,
                           "runtime": type("Runtime", (), {"device": torch.device("cpu")})()})()
    split = type("Split", (), {"train": np.arange(4), "valid": np.arange(4)})()
    cfg = cnn_digits.Config()
    cnn_digits.train_model(torch.nn.Linear(1, 1), cfg, ctx, np.zeros((4, 1, 8, 8)), np.zeros(4), split, 5, "x", True)
    torch.testing.assert_close(given["augment"].draw(50), cnn_digits.training_warps(cfg, 5, rank=1).draw(50), rtol=0, atol=0)
    cnn_digits.train_model(torch.nn.Linear(1, 1), cfg, ctx, np.zeros((4, 1, 8, 8)), np.zeros(4), split, 5, "x", False)
    assert given["augment"] is None


def test_two_ranks_draw_dropout_masks_of_their_own(tmp_path):
    """Every rank seeds torch alike (so the models start alike); from the DDP wrap on, dropout must not
    drop the same units of the k-th row on every rank."""
    out = tmp_path / "dropout.pt"
    done = torchrun(2, str(WORKER), str(out), "dropout")
    assert done.returncode == 0, failure(done)
    masks = torch.load(out, weights_only=True)["masks"]
    assert not torch.equal(masks[0], masks[1])


# -- the labs through the real CLI -------------------------------------------------------------------------


def only_run_directory(out: Path) -> tuple[Path, dict]:
    (run_dir,) = out.iterdir()  # rank 1 wrote nothing there
    return run_dir, json.loads((run_dir / "metrics.json").read_text())


def test_dlc_run_vae_nproc_2_gives_the_one_process_numbers(tmp_path):
    """The lab in float32: the same steps, the gradients summed in another order. Measured (seed 3): the
    training curves agree to 1e-7 relative, the test numbers exactly. 1e-5 leaves room for float32 rounding
    carried through 51 Adam steps, and each mistake of the loop tried here broke it: ε of other rows (test
    −ELBO 1.1e-2 off), no gradient averaging (2.8e-3), the uneven last batch (28 + 27 images) not weighted
    by its shares (test KL 5.5e-4), the logged losses not summed over the ranks (curves halved)."""
    common = ("--quick", "--seed", "3", "--quiet")
    two = dlc("run", "vae", *common, "--nproc", "2", "--out", str(tmp_path / "two"))
    assert two.returncode == 0, failure(two)
    run_dir, two_metrics = only_run_directory(tmp_path / "two")
    assert json.loads((run_dir / "config.json").read_text())["runtime"]["processes"] == 2
    assert two.stdout.count("report: ") == 1
    one = dlc("run", "vae", *common, "--out", str(tmp_path / "one"))
    assert one.returncode == 0, failure(one)
    _, one_metrics = only_run_directory(tmp_path / "one")
    assert two_metrics["epochs_run"] == one_metrics["epochs_run"] == 3
    for key in ("test_neg_elbo", "test_reconstruction", "test_kl", "train_neg_elbo", "test_iw_nll", "test_mse"):
        assert two_metrics[key] == pytest.approx(one_metrics[key], rel=1e-5), key
    for a, b in zip(one_metrics["history"]["epochs"], two_metrics["history"]["epochs"], strict=True):
        assert a["kl_weight"] == b["kl_weight"]
        for key in ("train_loss", "train_reconstruction", "train_kl", "valid_neg_elbo"):
            assert a[key] == pytest.approx(b[key], rel=1e-5), key


def test_dlc_run_cnn_digits_nproc_2_writes_one_run_directory_and_learns(tmp_path):
    """With the warps on, two processes warp other images than one process does (each rank its own stream;
    the float64 test above shows the rest of the step is one process's), so the numbers differ: what holds
    is the data, the split, the models, one run directory, and a CNN that learned."""
    # One MLP candidate instead of four: the CNN is what is looked at here, and the test stays short.
    common = ("--quick", "--seed", "1", "--quiet", "--set", "mlp_depths=1", "--set", "mlp_unaugmented=false")
    two = dlc("run", "cnn-digits", *common, "--nproc", "2", "--out", str(tmp_path / "two"))
    assert two.returncode == 0, failure(two)
    run_dir, two_metrics = only_run_directory(tmp_path / "two")
    assert "2 processes (gloo)" in (run_dir / "log.txt").read_text()
    assert (run_dir / "figures" / "augmentation.png").exists() and (run_dir / "model.pt").exists()
    one = dlc("run", "cnn-digits", *common, "--out", str(tmp_path / "one"))
    assert one.returncode == 0, failure(one)
    _, one_metrics = only_run_directory(tmp_path / "one")
    for key in ("n_train", "n_valid", "n_test", "cnn_parameters", "mlp_parameters", "mlp_layer_sizes"):
        assert two_metrics[key] == one_metrics[key], key
    # Two quick epochs on warped digits: 0.64–0.77 test accuracy measured over 1 and 2 processes and
    # several warp streams; chance is 0.1.
    assert two_metrics["cnn_test_accuracy"] > 0.4 and one_metrics["cnn_test_accuracy"] > 0.4
    assert two_metrics["cnn_errors"] == round((1 - two_metrics["cnn_test_accuracy"]) * two_metrics["n_test"])


def test_dlc_run_cnn_digits_nproc_2_reads_mnist_idx_files_on_every_rank(tmp_path):
    from tests.labs.test_cnn_digits import _write_tiny_mnist

    mnist = tmp_path / "mnist"
    mnist.mkdir()
    _write_tiny_mnist(mnist)
    done = dlc("run", "cnn-digits", "--quick", "--mnist", str(mnist), "--nproc", "2", "--quiet", "--out", str(tmp_path / "runs"))
    assert done.returncode == 0, failure(done)
    _, metrics = only_run_directory(tmp_path / "runs")
    assert metrics["data"] == "mnist" and metrics["n_test"] == 30 and metrics["n_train"] + metrics["n_valid"] == 80
