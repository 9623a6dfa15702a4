"""Checkpoints: the pieces (RNG streams, the file format, the save policy), the Trainer stopped and resumed in
one process, and the CLI's side (SIGTERM, --resume and its refusals, a run's status)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from dlconcepts.checkpoints import (
    Checkpoints,
    RunInterrupted,
    load_file,
    parse_every,
    rng_state,
    set_rng_state,
)
from dlconcepts.cli import main
from dlconcepts.errors import UserError
from dlconcepts.runs import run_status
from dlconcepts.train import Trainer, accuracy
from dlconcepts.train.callbacks import Callback, EarlyStopping, LRScheduler

TIMEOUT_S = 120


def test_checkpoint_every_reads_epochs_or_seconds():
    assert parse_every("5") == (5, None)
    assert parse_every("2.5s") == (None, 2.5)
    assert parse_every(None) == (None, None)
    assert parse_every("off") == (None, float("inf"))
    for bad in ("0", "-3", "fast", "0s", "1.5"):
        with pytest.raises(UserError, match="--checkpoint-every"):
            parse_every(bad)


def test_by_default_saving_takes_at_most_two_percent_of_the_time():
    checkpoints = Checkpoints.disabled()
    checkpoints.last_save_took = 0.1  # the last save took 0.1 s: the next one waits 49 × 0.1 s
    checkpoints.last_save = time.monotonic() - 4.0
    assert checkpoints._agree(epoch=7) == (False, None)
    checkpoints.last_save = time.monotonic() - 5.0
    assert checkpoints._agree(epoch=8) == (True, None)
    assert Checkpoints.disabled()._agree(epoch=1) == (True, None)  # nothing saved yet: the first epoch's end saves


def test_rng_streams_come_back_where_they_were():
    torch.manual_seed(3), np.random.seed(4), random.seed(5)
    np.random.normal()  # a cached Gaussian in numpy's legacy state must come back too
    saved = rng_state()
    first = (random.random(), np.random.normal(size=3).tolist(), torch.randn(3).tolist())
    set_rng_state(saved)
    assert (random.random(), np.random.normal(size=3).tolist(), torch.randn(3).tolist()) == first


class _Bomb:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_a_checkpoint_file_is_read_without_running_code(tmp_path):
    """`weights_only=True`: a file that smuggles a callable is refused with one line, and nothing runs."""
    path = tmp_path / "checkpoint.pt"
    torch.save({"format": 1, "stages": [], "payload": _Bomb()}, path)
    with pytest.raises(UserError, match="cannot read checkpoint"):
        load_file(path)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="cannot read checkpoint"):
        load_file(path)


# -- the Trainer, stopped and resumed in one process -----------------------------------------------

class StopAt(Callback):
    """Asks the run to stop at the end of `epoch`, as a SIGTERM arriving during it would."""

    def __init__(self, checkpoints: Checkpoints, epoch: int):
        self.checkpoints, self.epoch = checkpoints, epoch

    def on_epoch_end(self, trainer, epoch, logs):
        if epoch == self.epoch:
            self.checkpoints.request_stop(signal.SIGTERM)


def _train(checkpoints: Checkpoints, stop_at: int | None = None):
    """Dropout (global RNG), augmentation (its own generator), mini-batches (the trainer's generator), early
    stopping and a cosine schedule: every kind of state a resumed epoch depends on."""
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(120, 6, generator=gen)
    y = (X[:, 0] + X[:, 1] > 0).long()
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 2))

    def jitter(x: torch.Tensor) -> torch.Tensor:
        return x + 0.1 * torch.randn(x.shape, generator=jitter.generator)

    jitter.generator = torch.Generator().manual_seed(2)
    callbacks = [EarlyStopping(patience=50), LRScheduler(lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, 12))]
    if stop_at is not None:
        callbacks.append(StopAt(checkpoints, stop_at))
    trainer = Trainer(model, nn.CrossEntropyLoss(), "adam", lr=0.01, batch_size=16, metrics={"accuracy": accuracy},
                      callbacks=callbacks, seed=3, augment=jitter, checkpoints=checkpoints)
    history = trainer.fit(X[:90], y[:90], 12, valid=(X[90:], y[90:]))
    return model, history, torch.randn(4)  # the global stream after training, as the code after fit sees it


def test_a_trainer_stopped_mid_run_resumes_to_the_same_weights(tmp_path):
    model, history, after = _train(Checkpoints.disabled())

    path = tmp_path / "checkpoint.pt"
    with pytest.raises(RunInterrupted, match="stopped by SIGTERM; saved stage 1 .* epoch 5"):
        checkpoints = Checkpoints(path, every_epochs=100)  # never due by itself: only the stop saves
        _train(checkpoints, stop_at=5)
    torch.manual_seed(99), np.random.seed(99), random.seed(99)  # a new process starts elsewhere
    resumed, resumed_history, resumed_after = _train(Checkpoints(path, saved=load_file(path)))
    for (name, a), b in zip(model.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    assert resumed_history.epochs == history.epochs
    assert torch.equal(resumed_after, after)


def _train_gan(checkpoints: Checkpoints, stop_at: int | None = None):
    """A small game with dropout in D (global RNG), a weight average, snapshots and an epoch hook with a
    generator of its own: all of it must come back."""
    from dlconcepts.nets.mlp import mlp
    from dlconcepts.train.gan import sample_noise, train_gan

    data = torch.randn(96, 2, generator=torch.Generator().manual_seed(0)) * 0.5 + 1.0
    torch.manual_seed(1)
    generator, discriminator = mlp((3, 16, 2), "relu"), mlp((2, 16, 1), "relu", dropout=0.2)
    hook_noise = torch.Generator().manual_seed(2)

    def hook(epoch, g, d):
        return {"mean": g(sample_noise(8, 3, hook_noise)).mean().item()}

    stop = [StopAt(checkpoints, stop_at)] if stop_at is not None else []
    history = train_gan(generator, discriminator, data, latent_dim=3, epochs=8, batch_size=16, average_decay=0.9,
                        snapshot_epochs=(0, 4, 8), on_epoch_end=hook, callbacks=stop, seed=3,
                        checkpoints=checkpoints, hook_generators=[hook_noise])
    return generator, discriminator, history


def test_a_gan_stopped_mid_game_resumes_to_the_same_players(tmp_path):
    generator, discriminator, history = _train_gan(Checkpoints.disabled())
    path = tmp_path / "checkpoint.pt"
    with pytest.raises(RunInterrupted, match="epoch 3"):
        _train_gan(Checkpoints(path, every_epochs=100), stop_at=3)
    torch.manual_seed(99)
    g, d, resumed = _train_gan(Checkpoints(path, saved=load_file(path)))
    for a, b in [(generator, g), (discriminator, d), (history.averaged_generator, resumed.averaged_generator)]:
        assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert resumed.epochs == history.epochs and resumed.steps == history.steps
    assert sorted(resumed.snapshots) == [0, 4, 8]
    assert all(np.array_equal(resumed.snapshots[k], history.snapshots[k]) for k in history.snapshots)


def _train_vae(checkpoints: Checkpoints, stop_at: int | None = None):
    from dlconcepts.nets.autoencoder import make_vae
    from dlconcepts.train.self_supervised import VAETrainer

    images = torch.rand(64, 1, 6, 6, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(1)
    model = make_vae("mlp", (1, 6, 6), 2, (16,), (4,), "relu", "bernoulli", 0.1)
    stop = [StopAt(checkpoints, stop_at)] if stop_at is not None else []
    trainer = VAETrainer(model, "adam", lr=1e-2, batch_size=16, warmup_epochs=3, callbacks=stop, seed=2,
                         checkpoints=checkpoints)
    return model, trainer.fit(images[:48], 7, images[48:])


def test_a_vae_stopped_mid_run_resumes_to_the_same_weights(tmp_path):
    model, history = _train_vae(Checkpoints.disabled())
    path = tmp_path / "checkpoint.pt"
    with pytest.raises(RunInterrupted, match="epoch 4"):
        _train_vae(Checkpoints(path, every_epochs=100), stop_at=4)
    torch.manual_seed(99)
    resumed, resumed_history = _train_vae(Checkpoints(path, saved=load_file(path)))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), resumed.state_dict().values()))
    assert resumed_history.epochs == history.epochs


def test_a_study_is_put_back_without_training_and_the_code_after_it_draws_alike(tmp_path):
    from dlconcepts.train.many_models import ManySettings, StackedMLP, seeded_models, train_many

    def study(checkpoints: Checkpoints):
        gen = torch.Generator().manual_seed(0)
        X = torch.randn(5, 30, 1, generator=gen)
        y = torch.sin(2 * X) + 0.1 * torch.randn(5, 30, 1, generator=gen)
        stack = StackedMLP.from_models(seeded_models((1, 8, 1), range(5)), dropout=0.2)  # dropout: global RNG
        torch.manual_seed(1)
        result = train_many(stack, X[:, :20], y[:, :20], ManySettings(epochs=30, patience=5), valid=(X[:, 20:], y[:, 20:]),
                            checkpoints=checkpoints)
        return result, torch.randn(3)

    path = tmp_path / "checkpoint.pt"
    result, after = study(Checkpoints(path))
    torch.manual_seed(99)
    resumed, resumed_after = study(Checkpoints(path, saved=load_file(path)))
    assert all(torch.equal(a, b) for a, b in zip(result.model.state_dict().values(), resumed.model.state_dict().values()))
    for name in ("train_loss", "valid_loss", "epochs_used", "best_epoch", "diverged_at"):
        np.testing.assert_array_equal(getattr(resumed, name), getattr(result, name))
    assert torch.equal(resumed_after, after)


def test_a_finished_stage_is_put_back_without_training(tmp_path):
    path = tmp_path / "checkpoint.pt"
    checkpoints = Checkpoints(path)
    model, history, after = _train(checkpoints)
    saved = load_file(path)
    assert [s["finished"] for s in saved["stages"]] == [True]
    resumed, resumed_history, resumed_after = _train(Checkpoints(path, saved=saved))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), resumed.state_dict().values()))
    assert resumed_history.epochs == history.epochs and torch.equal(resumed_after, after)


def test_a_checkpoint_of_other_code_is_refused(tmp_path):
    path = tmp_path / "checkpoint.pt"
    _train(Checkpoints(path))
    checkpoints = Checkpoints(path, saved=load_file(path))
    with pytest.raises(UserError, match="stage 1 is a 'fit' loop but this run's is a 'gan' loop"):
        checkpoints.stage("gan")


def test_a_signal_outside_any_training_loop_stops_at_once():
    checkpoints = Checkpoints.disabled()
    with pytest.raises(RunInterrupted, match="SIGINT"):
        checkpoints.request_stop(signal.SIGINT)


# -- the CLI ---------------------------------------------------------------------------------------

def _dlc(cwd: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "dlconcepts", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def _communicate(proc: subprocess.Popen) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise


def _stopped_by(signum: int, tmp_path: Path) -> tuple[subprocess.Popen, str, Path]:
    """A `dlc run` sent `signum` once its first checkpoint is written: the process, its stderr, its run."""
    proc = _dlc(tmp_path, "run", "mlp-classification", "--quick", "--quiet", "--set", "epochs=400",
                "--checkpoint-every", "1", "--out", "runs")
    deadline = time.monotonic() + TIMEOUT_S
    while not list(tmp_path.glob("runs/*/checkpoint.pt")):
        assert proc.poll() is None and time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    proc.send_signal(signum)
    _, err = _communicate(proc)
    (run_dir,) = tmp_path.glob("runs/*")
    return proc, err, run_dir


def test_sigterm_saves_says_so_and_resume_finishes_the_run(tmp_path):
    proc, err, run_dir = _stopped_by(signal.SIGTERM, tmp_path)
    assert proc.returncode == 128 + signal.SIGTERM
    assert err.count("\n") == 1 and err.startswith("dlc: interrupted: stopped by SIGTERM; saved stage 1")
    assert f"dlc run --resume runs/{run_dir.name}" in err and "Traceback" not in err
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "interrupted" and run_status(run_dir) == "interrupted"
    assert "**Interrupted**" in (run_dir / "report.md").read_text()
    assert "interrupted: stopped by SIGTERM" in (run_dir / "log.txt").read_text()

    proc = _dlc(tmp_path, "run", "--resume", str(run_dir), "--quiet")
    out, err = _communicate(proc)
    assert proc.returncode == 0, err
    assert run_status(run_dir) == "completed" and not (run_dir / "checkpoint.pt").exists()
    log = (run_dir / "log.txt").read_text()
    assert "resumed from stage 1" in log and log.index("interrupted:") < log.index("resumed from")
    assert json.loads((run_dir / "metrics.json").read_text())["resumes"] == 1


@pytest.fixture(scope="module")
def completed_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("completed") / "runs"
    assert main(["run", "mlp-classification", "--quick", "--quiet", "--out", str(out)]) == 0
    (run_dir,) = out.iterdir()
    return run_dir


@pytest.mark.parametrize("lab, options, message", [
    ([], [], "is complete; nothing to resume"),
    (["overfitting"], [], "leave out a lab id"),
    ([], ["--set", "epochs=3"], "leave out --set"),
    ([], ["--seed", "0"], "leave out --seed"),
    ([], ["--quick"], "leave out --quick"),
    ([], ["--checkpoint-every", "soon"], "--checkpoint-every 'soon' is not understood"),
])
def test_resume_refusals_are_one_line(completed_run, capsys, lab, options, message):
    capsys.readouterr()
    assert main(["run", *lab, "--resume", str(completed_run), *options]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_resume_of_a_folder_that_is_no_run_is_one_line(tmp_path, capsys):
    assert main(["run", "--resume", str(tmp_path)]) == 2
    assert "is not a run directory" in capsys.readouterr().err


def test_a_run_s_status_follows_its_process(tmp_path):
    import socket

    def write(**metrics):
        (tmp_path / "metrics.json").write_text(json.dumps({"lab": "x", **metrics}))

    write(status="running", pid=os.getpid(), host=socket.gethostname())
    assert run_status(tmp_path) == "running"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    write(status="running", pid=dead.pid, host=socket.gethostname())
    assert run_status(tmp_path) == "interrupted"
    write(seconds=1.0)  # a run from before runs had a status
    assert run_status(tmp_path) == "completed"
    write(status="failed", error="x")
    assert run_status(tmp_path) == "failed"


def test_the_course_index_names_an_interrupted_lab(tmp_path, monkeypatch):
    from dlconcepts.labs import all_labs, runner

    labs = all_labs()
    chosen = {k: labs[k] for k in ("matrix", "backprop")}

    def interrupted(cfg, ctx):
        raise RunInterrupted("stopped by SIGTERM; saved before its first checkpoint", signal.SIGTERM)

    import dataclasses

    chosen["backprop"] = dataclasses.replace(chosen["backprop"], run=interrupted)
    monkeypatch.setattr(runner, "all_labs", lambda: chosen)
    settings = runner.RunSettings(quick=True, quiet=True, out=str(tmp_path))
    with pytest.raises(RunInterrupted):
        runner.run_all(settings, {}, [])
    (root,) = tmp_path.iterdir()
    index = (root / "report.md").read_text()
    assert "| interrupted |" in index and "dlc run --resume" in index
    statuses = [e["status"] for e in json.loads((root / "metrics.json").read_text())["labs"]]
    assert statuses == ["ok", "interrupted"]


def test_a_notebook_resumes_an_interrupted_run_as_the_cli_does(tmp_path):
    """`dlconcepts.resume_lab` is `dlc run --resume` for a notebook: same runner, same refusals."""
    import dlconcepts

    proc, _, run_dir = _stopped_by(signal.SIGINT, tmp_path)
    assert proc.returncode == 128 + signal.SIGINT
    resumed = dlconcepts.resume_lab(run_dir, quiet=True)
    assert resumed.metrics["status"] == "completed" and resumed.metrics["resumes"] == 1
    assert resumed.config["epochs"] == 400 and resumed.quick
    with pytest.raises(UserError, match="is complete; nothing to resume"):
        dlconcepts.resume_lab(run_dir)
