"""Resume: every resumable lab, killed with SIGKILL at three seeded random moments and resumed each time,
ends with the weights and metrics of a run that was never stopped, bit for bit (on the CPU).

The default suite kills one lab (tests/test_checkpoints.py and tests/rl/test_ppo_resume.py stop and resume
every kind of training loop in-process); `DLC_RESUME_ALL=1` (`make test-resume`) kills every resumable
lab, about seven minutes on two cores:

    DLC_RESUME_ALL=1 .venv/bin/python -m pytest -q tests/test_resume.py

Each lab runs as a real `dlc` process. A kill lands a random delay (from a generator seeded per lab) after
the process's first checkpoint write: SIGKILL gives it no chance to save, so what it did after that write
is lost and done again. The test asserts every kill found the process still running, so none is vacuous.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dlconcepts.runs import run_status

TIMEOUT_S = 240

# lab -> (--set pairs that make training last a few seconds, so that three kills land inside it whatever the
# machine's load; --checkpoint-every; the largest delay after a checkpoint write before a kill, seconds)
RESUMABLE = {
    "mlp-regression": (["epochs=2000"], "100", 0.3),
    "mlp-classification": (["epochs=40"], "1", 0.3),
    "overfitting": (["epochs=2500"], "100", 0.3),
    "sparse-data": (["epochs=1500"], "100", 0.3),
    "gan-1d": (["epochs=30"], "1", 0.3),
    "gan": (["epochs=12", "classifier_epochs=6"], "1", 0.3),
    # A study saves only when it ends: each must outlast a kill's delay, or a resumed run may have no study
    # left to save before the next kill (regularization trains 6 studies, variance 4).
    "regularization": (["epochs=400"], "1", 0.2),
    "variance": (["epochs=400", "cls_epochs=400"], "1", 0.2),
    "cnn-digits": (["epochs=6"], "1", 0.3),
    "autoencoder": (["epochs=12"], "1", 0.3),
    "vae": (["epochs=30"], "1", 0.3),
    "ppo-cartpole": (["total_steps=16000"], "1", 0.3),
    "ppo-pendulum": (["total_steps=16384", "eval_every=4096", "eval_episodes=5"], "1", 0.3),
}
# Clock readings (seconds, steps per second) differ between any two runs; the count of resumes is the point.
def is_a_clock_reading(key: str) -> bool:
    return key == "resumes" or key.endswith("seconds") or key.endswith("per_second")


def dlc_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "dlconcepts", *args]


def finish(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def saved_since(checkpoint: Path, before: tuple[int, int] | None) -> bool:
    """Whether `checkpoint` was (re)written since `before` (its inode and mtime then; None: it did not exist)."""
    try:
        st = checkpoint.stat()
    except FileNotFoundError:
        return False
    return (st.st_ino, st.st_mtime_ns) != before


def file_identity(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns


def kill_after_a_checkpoint(cmd: list[str], cwd: Path, runs: Path, delay: float) -> Path:
    """Start `cmd`, wait for it to write a checkpoint, wait `delay` more, SIGKILL it; returns its run directory."""
    existing = {p: file_identity(p / "checkpoint.pt") for p in runs.glob("*")} if runs.exists() else {}
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + TIMEOUT_S
        run_dir = None
        while run_dir is None:
            assert proc.poll() is None, f"the run ended before its first checkpoint: {proc.stderr.read()}"
            assert time.monotonic() < deadline, "no checkpoint written in time"
            candidates = list(runs.glob("*")) if runs.exists() else []
            run_dir = next((p for p in candidates if saved_since(p / "checkpoint.pt", existing.get(p))), None)
            time.sleep(0.01)
        time.sleep(delay)
        assert proc.poll() is None, f"the run finished before its kill {delay:.2f} s after a checkpoint; lengthen it"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        return run_dir
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stderr.close()


def model_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor in a model.pt, flattened to 'key/subkey' names."""
    out: dict[str, torch.Tensor] = {}

    def walk(prefix: str, obj) -> None:
        if isinstance(obj, torch.Tensor):
            out[prefix] = obj
        elif isinstance(obj, dict):
            for k, v in obj.items():
                walk(f"{prefix}/{k}", v)

    walk("", torch.load(path, map_location="cpu", weights_only=True))
    return out


def without_clock_readings(obj):
    if isinstance(obj, dict):
        return {k: without_clock_readings(v) for k, v in obj.items() if not is_a_clock_reading(k)}
    if isinstance(obj, list):
        return [without_clock_readings(v) for v in obj]
    return obj


def comparable_metrics(run_dir: Path) -> dict:
    return without_clock_readings(json.loads((run_dir / "metrics.json").read_text()))


# One lab runs by default; the others with DLC_RESUME_ALL=1 (the same loops in other labs' code).
IN_THE_DEFAULT_SUITE = {"mlp-classification"}
EVERY_LAB = os.environ.get("DLC_RESUME_ALL") == "1"


@pytest.mark.parametrize("lab", [
    lab if lab in IN_THE_DEFAULT_SUITE else
    pytest.param(lab, marks=pytest.mark.skipif(not EVERY_LAB, reason="DLC_RESUME_ALL=1 kills every resumable lab"))
    for lab in RESUMABLE])
def test_a_run_killed_three_times_and_resumed_equals_one_never_stopped(lab, tmp_path):
    pairs, every, longest_delay = RESUMABLE[lab]
    common = ["--quick", "--quiet", "--checkpoint-every", every, *(a for pair in pairs for a in ("--set", pair))]
    reference = finish(dlc_command("run", lab, *common, "--out", "reference"), tmp_path)
    assert reference.returncode == 0, reference.stderr
    (reference_dir,) = (tmp_path / "reference").iterdir()

    delays = [random.Random(f"{lab}-{i}").uniform(0, longest_delay) for i in range(3)]
    runs = tmp_path / "killed"
    run_dir = kill_after_a_checkpoint(dlc_command("run", lab, *common, "--out", "killed"), tmp_path, runs, delays[0])
    assert run_status(run_dir) == "interrupted"
    resume = dlc_command("run", "--resume", str(run_dir), "--quiet", "--checkpoint-every", every)
    for delay in delays[1:]:
        assert kill_after_a_checkpoint(resume, tmp_path, runs, delay) == run_dir
        assert run_status(run_dir) == "interrupted"
    done = finish(resume, tmp_path)
    assert done.returncode == 0, done.stderr
    assert run_status(run_dir) == "completed"
    assert json.loads((run_dir / "metrics.json").read_text())["resumes"] == 3
    assert not (run_dir / "checkpoint.pt").exists()

    assert_same_run(run_dir, reference_dir)


# -- elastic restarts: torchrun restarts a killed worker, and the job resumes from its checkpoint ---------

def worker_of_rank(launcher: int, rank: int) -> int | None:
    """The pid of the torchrun worker with LOCAL_RANK `rank` among the launcher's children."""
    try:
        children = Path(f"/proc/{launcher}/task/{launcher}/children").read_text().split()
    except OSError:
        return None
    for pid in children:
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"LOCAL_RANK={rank}".encode() in environ:
            return int(pid)
    return None


def assert_same_run(run_dir: Path, reference_dir: Path) -> None:
    assert comparable_metrics(run_dir) == comparable_metrics(reference_dir)
    resumed, uninterrupted = model_tensors(run_dir / "model.pt"), model_tensors(reference_dir / "model.pt")
    assert resumed.keys() == uninterrupted.keys() and resumed
    for name, tensor in uninterrupted.items():
        assert torch.equal(resumed[name], tensor), f"{name} differs after resuming"


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="finds the workers through /proc (Linux)")
def test_a_two_process_job_resumes_after_a_restart_and_after_ctrl_c(tmp_path):
    """Elastic: rank 1 SIGKILLed under --max-restarts 1, the restarted job resumes by itself. Ctrl-C: the
    launcher gets SIGINT, torchrun stops the workers, rank 0 says how to resume; `--resume --nproc 2` does."""
    options = ["--quick", "--quiet", "--seed", "3", "--set", "epochs=60", "--checkpoint-every", "1"]
    # Two processes round float32 sums in another order than one: the reference is a two-process run too.
    reference = finish(dlc_command("run", "mlp-classification", *options, "--nproc", "2", "--out", "reference"), tmp_path)
    assert reference.returncode == 0, reference.stderr
    (reference_dir,) = (tmp_path / "reference").iterdir()

    launcher = subprocess.Popen(dlc_command("run", "mlp-classification", *options, "--nproc", "2", "--max-restarts", "1",
                                            "--out", "elastic"), cwd=tmp_path, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while not list(tmp_path.glob("elastic/*/checkpoint.pt")):
            assert launcher.poll() is None and time.monotonic() < deadline, "no checkpoint written in time"
            time.sleep(0.01)
        victim = worker_of_rank(launcher.pid, 1)
        assert victim is not None, "no worker of rank 1 found"
        os.kill(victim, signal.SIGKILL)
        out, err = launcher.communicate(timeout=TIMEOUT_S)
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
            launcher.communicate()
    assert launcher.returncode == 0, err
    (run_dir,) = (tmp_path / "elastic").iterdir()
    assert run_status(run_dir) == "completed"
    log = (run_dir / "log.txt").read_text()
    assert "resumed from stage 1" in log, log  # the restarted workers continued; they did not start over
    assert_same_run(run_dir, reference_dir)

    launcher = subprocess.Popen(dlc_command("run", "mlp-classification", *options, "--nproc", "2", "--out", "stopped"),
                                cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while not list(tmp_path.glob("stopped/*/checkpoint.pt")):
            assert launcher.poll() is None and time.monotonic() < deadline, "no checkpoint written in time"
            time.sleep(0.01)
        launcher.send_signal(signal.SIGINT)
        out, err = launcher.communicate(timeout=TIMEOUT_S)
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
            launcher.communicate()
    (run_dir,) = (tmp_path / "stopped").iterdir()
    assert launcher.returncode == 128 + signal.SIGINT, err
    assert "dlc: interrupted: stopped by SIG" in err and f"dlc run --resume stopped/{run_dir.name}" in err
    assert run_status(run_dir) == "interrupted"
    done = finish(dlc_command("run", "--resume", str(run_dir), "--nproc", "2", "--quiet", "--checkpoint-every", "1"),
                  tmp_path)
    assert done.returncode == 0, done.stderr
    assert_same_run(run_dir, reference_dir)
