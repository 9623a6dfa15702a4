"""Data parallel training on torch.distributed: N real processes under torchrun (gloo, CPU) against one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dlconcepts import distributed
from tests.ddp_worker import train_small_classifier

WORKER = Path(__file__).with_name("ddp_worker.py")
TIMEOUT_S = 180


def run_with_timeout(cmd: list[str], timeout: float = TIMEOUT_S) -> subprocess.CompletedProcess:
    """Run `cmd` in its own process group; when it outlives `timeout`, kill the whole group (a torchrun
    agent and its workers) by that group's id and fail the test."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"did not finish within {timeout} s: {' '.join(cmd)}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def torchrun(nproc: int, *args: str) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc-per-node N ARGS`."""
    return run_with_timeout([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", *args])


def failure(done: subprocess.CompletedProcess) -> str:
    """What the workers said: the first lines (their tracebacks) and the last (torchrun's summary)."""
    err = done.stderr
    return err if len(err) < 8000 else err[:5000] + "\n...\n" + err[-3000:]


def trained_by_two_processes_and_by_one(tmp_path, what: str, train) -> tuple[dict, dict]:
    """`train` from tests/ddp_worker.py run by two torchrun processes (rank 0's result) and by this one."""
    out = tmp_path / f"{what}.pt"
    done = torchrun(2, str(WORKER), str(out), what)
    assert done.returncode == 0, failure(done)
    return torch.load(out, weights_only=True), train(distributed.SINGLE)


def test_two_processes_take_the_steps_one_process_takes(tmp_path):
    two, one = trained_by_two_processes_and_by_one(tmp_path, "classifier", train_small_classifier)
    assert two["world_size"] == 2 and two["steps"] == one["steps"] >= 50
    for name, weight in one["state"].items():
        rel = ((two["state"][name] - weight).abs().max() / weight.abs().max()).item()
        assert rel <= 1e-10, (name, rel)
    for a, b in zip(one["epochs"], two["epochs"]):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-10)
        assert a["train_accuracy"] == b["train_accuracy"]  # every row counted once, on whichever rank
        assert a["valid_loss"] == pytest.approx(b["valid_loss"], rel=1e-10)


def test_each_rank_takes_its_share_of_a_global_batch():
    batch = torch.tensor([7, 3, 9, 1, 4])
    shares = [distributed.rows_of_rank(batch, distributed.Group(rank=r, world_size=2)).tolist() for r in (0, 1)]
    assert shares == [[7, 9, 4], [3, 1]]
    assert distributed.rows_of_rank(batch, distributed.SINGLE) is batch


@pytest.mark.parametrize("n, world", [(10, 3), (3, 4), (12, 4), (1, 1)])
def test_the_slices_of_a_study_cover_every_model_once(n, world):
    slices = [distributed.slice_of_rank(n, distributed.Group(rank=r, world_size=world)) for r in range(world)]
    covered = [i for s in slices for i in range(n)[s]]
    assert covered == list(range(n))
    sizes = [len(range(n)[s]) for s in slices]
    assert max(sizes) - min(sizes) <= 1


def test_a_process_alone_is_a_group_of_one(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    group = distributed.join(torch.device("cpu"))
    assert group == distributed.SINGLE and group.is_main and not group.distributed
    assert distributed.backend_for(torch.device("cpu")) == "gloo"
    assert distributed.backend_for(torch.device("cuda", 0)) == "nccl"


def dlc(*args: str) -> subprocess.CompletedProcess:
    """The real `dlc` (with any workers it launches)."""
    return run_with_timeout([sys.executable, "-m", "dlconcepts", *args])


def test_dlc_run_nproc_2_writes_one_run_directory_with_one_process_s_numbers(tmp_path):
    import json

    done = dlc("run", "mlp-classification", "--quick", "--seed", "3", "--nproc", "2", "--quiet", "--out", str(tmp_path / "two"))
    assert done.returncode == 0, failure(done)
    (run_dir,) = (tmp_path / "two").iterdir()  # rank 1 wrote nothing there
    assert json.loads((run_dir / "config.json").read_text())["runtime"]["processes"] == 2
    assert "2 processes (gloo)" in (run_dir / "log.txt").read_text()
    assert done.stdout.count("report: ") == 1
    one = dlc("run", "mlp-classification", "--quick", "--seed", "3", "--quiet", "--out", str(tmp_path / "one"))
    assert one.returncode == 0
    two_metrics = json.loads((run_dir / "metrics.json").read_text())
    one_metrics = json.loads(next((tmp_path / "one").glob("*/metrics.json")).read_text())
    # The same steps in float32, summed in another order: the same model up to rounding.
    assert two_metrics["epochs_run"] == one_metrics["epochs_run"]
    assert abs(two_metrics["fresh_accuracy"] - one_metrics["fresh_accuracy"]) <= 0.01


def test_a_failure_on_every_rank_is_one_line_and_exit_2(tmp_path):
    # Adam with lr 1e6 sends the loss to inf on both ranks at the same step (the guard reads the global loss).
    done = dlc("run", "mlp-regression", "--quick", "--nproc", "2", "--quiet", "--set", "lr=1e6", "--out", str(tmp_path))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dlc: error: the loss became inf"), done.stderr


@pytest.mark.parametrize("args, message", [
    (("vae", "--nproc", "2"), "lab 'vae' does not train in several processes yet; run it without --nproc"),
    (("mlp-regression", "--nproc", "0"), "--nproc 0 is impossible"),
    (("mlp-regression", "--nproc", "2", "--set", "lr=-1"), "lr=-1.0 is impossible"),
])
def test_nproc_refusals_are_one_line_before_any_process_starts(tmp_path, capsys, args, message):
    from dlconcepts.cli import main

    assert main(["run", *args, "--quick", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert list(tmp_path.iterdir()) == []


def test_a_study_shared_out_over_two_processes_equals_the_one_process_study(tmp_path):
    from tests.ddp_worker import train_small_study

    two, one = trained_by_two_processes_and_by_one(tmp_path, "study", train_small_study)
    # Model by model: the same stopping epochs, the same losses to 1e-12, the same weights.
    assert torch.equal(two["epochs_used"], one["epochs_used"]) and torch.equal(two["best_epoch"], one["best_epoch"])
    assert len(set(one["epochs_used"].tolist())) > 1  # the models stopped at different epochs
    finite = ~torch.isnan(one["train_loss"])
    assert torch.equal(finite, ~torch.isnan(two["train_loss"]))
    assert torch.allclose(two["train_loss"][finite], one["train_loss"][finite], rtol=1e-12, atol=0)
    for name, weight in one["state"].items():
        assert torch.allclose(two["state"][name], weight, rtol=1e-12, atol=1e-14), name


def test_batchnorm_over_two_processes_normalizes_with_the_global_batch(tmp_path):
    from tests.ddp_worker import train_small_batchnorm_net

    two, one = trained_by_two_processes_and_by_one(tmp_path, "batchnorm", train_small_batchnorm_net)
    assert two["steps"] == one["steps"] >= 50
    for name, value in one["state"].items():  # weights, and BatchNorm's running mean, variance and count
        if value.is_floating_point():
            rel = ((two["state"][name] - value).abs().max() / value.abs().max()).item()
            assert rel <= 1e-10, (name, rel)
        else:
            assert torch.equal(two["state"][name], value), name
    for a, b in zip(one["epochs"], two["epochs"]):
        assert a["valid_loss"] == pytest.approx(b["valid_loss"], rel=1e-10)


def test_synchronized_batchnorm_keeps_the_layers_own_tensors():
    from torch import nn

    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Sequential(nn.BatchNorm1d(4)))
    before = {name: t for name, t in [*model.named_parameters(), *model.named_buffers()]}
    synced = distributed.with_synchronized_batchnorm(model, torch.device("cpu"))
    assert isinstance(synced[1], distributed.SyncBatchNorm) and isinstance(synced[2][0], distributed.SyncBatchNorm)
    after = {name: t for name, t in [*synced.named_parameters(), *synced.named_buffers()]}
    assert after.keys() == before.keys() and all(after[k] is before[k] for k in before)
    x = torch.randn(6, 3)
    model.eval()
    assert torch.equal(synced(x), synced(x))  # a group of one / eval mode: plain BatchNorm
