"""Data parallel training on torch.distributed: N real processes under torchrun (gloo, CPU) against one."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

from dlconcepts import distributed
from tests.ddp_worker import FAILING_STEP, start_ticks, train_small_classifier

WORKER = Path(__file__).with_name("ddp_worker.py")
TIMEOUT_S = 180
FAILURE_TIMEOUT_S = 120  # a job that fails on one rank ends in seconds; gloo's own timeout would take 5 minutes


def process_tree(root: int) -> list[int]:
    """`root` and every process descended from it, found by the parent pids in /proc. torchrun starts each
    worker in a session of its own, so the agent's process group does not hold its workers."""
    parents = {}
    for entry in os.listdir("/proc"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            parents[int(entry)] = int(Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()[1])
    tree, generation = [root], [root]
    while generation:
        generation = [pid for pid, parent in parents.items() if parent in generation]
        tree += generation
    return tree


def kill_tree(root: int) -> None:
    """SIGKILL `root` and its descendants, by pid. The tree is read before the first kill: a killed agent's
    workers are handed to another parent and would no longer look like its children."""
    for pid in process_tree(root):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def run_together(cmds: list[list[str]], timeout: float = TIMEOUT_S,
                 env: dict | None = None) -> tuple[list[int], list[subprocess.CompletedProcess]]:
    """Run the commands at once, each in a session of its own, and return their pids and results. Output goes
    to files: pipes read one after the other could fill up and stall a process. Unless all of them end within
    `timeout`, every process they started is killed and the test fails."""
    with contextlib.ExitStack() as files:
        logs = [(files.enter_context(tempfile.TemporaryFile("w+")), files.enter_context(tempfile.TemporaryFile("w+")))
                for _ in cmds]
        procs = [subprocess.Popen(cmd, stdout=out, stderr=err, text=True, start_new_session=True, env=env)
                 for cmd, (out, err) in zip(cmds, logs)]
        deadline = time.monotonic() + timeout
        try:
            for proc in procs:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pytest.fail(f"did not finish within {timeout} s: {[' '.join(cmd) for cmd in cmds]}")
        finally:
            for proc in procs:
                if proc.poll() is None:
                    kill_tree(proc.pid)
                    proc.wait()
        results = []
        for cmd, proc, (out, err) in zip(cmds, procs, logs):
            out.seek(0)
            err.seek(0)
            results.append(subprocess.CompletedProcess(cmd, proc.returncode, out.read(), err.read()))
    return [proc.pid for proc in procs], results


def run_with_timeout(cmd: list[str], timeout: float = TIMEOUT_S, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `cmd` (a torchrun agent, or `dlc` with its workers); when it outlives `timeout`, kill it and every
    process it started, and fail the test."""
    return run_together([cmd], timeout, env)[1][0]


def torchrun(nproc: int, *args: str, timeout: float = TIMEOUT_S) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc-per-node N ARGS`."""
    return run_with_timeout([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
                             *args], timeout)


def free_port() -> int:
    """A TCP port nobody listens on now (the system's pick for port 0)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def two_node_job(job_id: str, *node_args: list[str]) -> tuple[list[int], list[subprocess.CompletedProcess]]:
    """One job of two nodes, started as two machines would start it: a torchrun agent per node, one worker
    each, meeting at a c10d rendezvous at 127.0.0.1:PORT under `job_id`; node i runs `node_args[i]`. Returns
    the agents' pids and results.

    The first agent hosts the rendezvous store (is_host). torchrun would guess it by comparing the endpoint
    with the machine's own addresses, which here both agents share (the loser of the race to bind the port
    then falls back to being a client); told, neither races. --local-addr is the address at which the other
    node reaches this one: node 0's becomes every worker's MASTER_ADDR.
    """
    port = free_port()

    def agent(is_host: bool, args: list[str]) -> list[str]:
        return [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc-per-node=1",
                "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}", f"--rdzv-id={job_id}",
                f"--rdzv-conf=is_host={str(is_host).lower()}", "--local-addr=127.0.0.1", "--max-restarts=0", *args]

    return run_together([agent(True, node_args[0]), agent(False, node_args[1])])


def ended(record: dict) -> bool:
    """Whether the process a worker recorded (tests/ddp_worker.py: record_process) no longer runs."""
    return start_ticks(record["pid"]) != record["start_ticks"]


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


def assert_the_same_classifier(two: dict, one: dict) -> None:
    """Two processes trained the small classifier as one did: the same steps, weights and losses to 1e-10."""
    assert two["world_size"] == 2 and two["steps"] == one["steps"] >= 50
    for name, weight in one["state"].items():
        rel = ((two["state"][name] - weight).abs().max() / weight.abs().max()).item()
        assert rel <= 1e-10, (name, rel)
    for a, b in zip(one["epochs"], two["epochs"]):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-10)
        assert a["train_accuracy"] == b["train_accuracy"]  # every row counted once, on whichever rank
        assert a["valid_loss"] == pytest.approx(b["valid_loss"], rel=1e-10)


def test_two_processes_take_the_steps_one_process_takes(tmp_path):
    two, one = trained_by_two_processes_and_by_one(tmp_path, "classifier", train_small_classifier)
    assert_the_same_classifier(two, one)


def test_two_torchrun_agents_on_127_0_0_1_form_one_two_node_job(tmp_path):
    out = tmp_path / "classifier.pt"
    agent_pids, agents = two_node_job("two-node-classifier", *[[str(WORKER), str(out), "classifier"]] * 2)
    for done in agents:
        assert done.returncode == 0, failure(done)
    workers = [json.loads((tmp_path / f"classifier-rank{rank}.json").read_text()) for rank in (0, 1)]
    assert [w["world_size_of_group"] for w in workers] == [2, 2]
    assert sorted(w["group_rank"] for w in workers) == [0, 1]  # node 0 and node 1 ...
    assert sorted(w["agent_pid"] for w in workers) == sorted(agent_pids)  # ... each started by its own agent
    assert_the_same_classifier(torch.load(out, weights_only=True), train_small_classifier(distributed.SINGLE))


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


def dlc(*args: str, timeout: float = TIMEOUT_S, env: dict | None = None) -> subprocess.CompletedProcess:
    """The real `dlc` (with any workers it launches)."""
    return run_with_timeout([sys.executable, "-m", "dlconcepts", *args], timeout, env)


CLASSIFICATION_RUN = ("run", "mlp-classification", "--quick", "--seed", "3", "--quiet")


@pytest.fixture(scope="module")
def one_process_metrics(tmp_path_factory) -> dict:
    """metrics.json of `dlc run mlp-classification --quick --seed 3` in one process, which the runs of several
    processes are held against."""
    out = tmp_path_factory.mktemp("one-process")
    done = dlc(*CLASSIFICATION_RUN, "--out", str(out))
    assert done.returncode == 0, failure(done)
    return json.loads(next(out.glob("*/metrics.json")).read_text())


def assert_the_numbers_of_one_process(several: dict, one: dict) -> None:
    """A classification run of several processes reports what one process reports. The same steps in float32,
    summed in another order, give the same model up to rounding, which could carry one of the 200 000 fresh
    draws lying on the decision boundary to its other side: the fresh accuracy may differ by 10 draws. Every
    other number (the test accuracy and its confusion matrix, the epochs run, the best epoch) is equal."""
    several, one = dict(several), dict(one)
    del several["seconds"], one["seconds"]
    assert several.pop("fresh_accuracy") == pytest.approx(one.pop("fresh_accuracy"), abs=5e-5)
    assert several == one


def test_dlc_run_nproc_2_writes_one_run_directory_with_one_process_s_numbers(tmp_path, one_process_metrics):
    done = dlc(*CLASSIFICATION_RUN, "--nproc", "2", "--out", str(tmp_path / "two"))
    assert done.returncode == 0, failure(done)
    (run_dir,) = (tmp_path / "two").iterdir()  # rank 1 wrote nothing there
    assert json.loads((run_dir / "config.json").read_text())["runtime"]["processes"] == 2
    assert "2 processes (gloo)" in (run_dir / "log.txt").read_text()
    assert done.stdout.count("report: ") == 1
    assert_the_numbers_of_one_process(json.loads((run_dir / "metrics.json").read_text()), one_process_metrics)


def test_dlc_run_as_a_two_node_job_writes_one_run_directory_with_one_process_s_numbers(tmp_path, one_process_metrics):
    # Each node writes into a folder of its own, as two machines would onto their own disks.
    outs = [tmp_path / "node-a", tmp_path / "node-b"]
    _, agents = two_node_job("two-node-dlc", *[["-m", "dlconcepts", *CLASSIFICATION_RUN, "--out", str(out)] for out in outs])
    for done in agents:
        assert done.returncode == 0, failure(done)
    run_dirs = [run_dir for out in outs if out.exists() for run_dir in out.iterdir()]
    assert len(run_dirs) == 1, run_dirs  # global rank 0's, on whichever node torchrun made node 0
    assert sum(done.stdout.count("report: ") for done in agents) == 1
    assert json.loads((run_dirs[0] / "config.json").read_text())["runtime"]["processes"] == 2
    assert_the_numbers_of_one_process(json.loads((run_dirs[0] / "metrics.json").read_text()), one_process_metrics)


def test_a_failure_on_every_rank_is_one_line_and_exit_2(tmp_path):
    # Adam with lr 1e6 sends the loss to inf on both ranks at the same step (the guard reads the global loss).
    done = dlc("run", "mlp-regression", "--quick", "--nproc", "2", "--quiet", "--set", "lr=1e6", "--out", str(tmp_path))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dlc: error: the loss became inf"), done.stderr


# -- a failure on one rank only ----------------------------------------------------------------------------

def failing_job_processes(folder: Path) -> list[dict]:
    """What the two workers of a job failing on one rank recorded of themselves (tests/ddp_worker.py)."""
    return [json.loads((folder / f"process-rank{rank}.json").read_text()) for rank in (0, 1)]


# Rank 1 only under plain torchrun; a failure on rank 0 is covered through `dlc run --nproc 2` below.
@pytest.mark.parametrize("failing_rank", [1])
def test_a_mistake_on_one_rank_ends_every_process_of_a_torchrun_job(tmp_path, failing_rank):
    """`dlc run` in two processes under plain torchrun, the Trainer of one rank raising a UserError at step 5.
    The failing rank says its one line, no traceback. Its peer, waiting for it in that step's all-reduce, is
    not left hanging: gloo raises "Connection closed by peer" there once the failing rank's group is torn down
    (and torchrun's agent, which stops the job at its first failed worker, SIGTERMs whoever is left), so
    torchrun ends, non-zero, in seconds and leaves no process behind."""
    done = torchrun(2, "--max-restarts=0", str(WORKER), str(tmp_path), "cli-failing-on-rank", str(failing_rank), "user",
                    timeout=FAILURE_TIMEOUT_S)
    assert done.returncode != 0
    assert all(ended(worker) for worker in failing_job_processes(tmp_path))
    message = f"dlc: error: rank {failing_rank} failed on purpose at step {FAILING_STEP}"
    assert done.stderr.count(message) == 1, failure(done)
    assert f"[rank{failing_rank}]: Traceback" not in done.stderr, failure(done)


SITECUSTOMIZE = """\
# Put on PYTHONPATH by tests/test_distributed.py: Python imports this file at the start of every process of
# the test's `dlc run --nproc` job, and it acts in the workers only, to whom torchrun gives a RANK.
import os

if "RANK" in os.environ:
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("ddp_worker", {worker!r})
    ddp_worker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ddp_worker)
    ddp_worker.take_part_in_a_failing_job(Path({folder!r}), {rank}, {kind!r})
"""


def environment_failing_on_rank(folder: Path, rank: int, kind: str) -> dict:
    """os.environ with a PYTHONPATH whose sitecustomize.py makes rank `rank` of a torchrun job fail (`kind`),
    every worker recording itself in `folder`."""
    hooks = folder / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(SITECUSTOMIZE.format(worker=str(WORKER), folder=str(folder), rank=rank,
                                                                 kind=kind))
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(hooks), *filter(None, [os.environ.get("PYTHONPATH")])])}


@pytest.mark.parametrize("failing_rank, kind", [(0, "user"), (1, "bug")])
def test_dlc_run_nproc_2_tells_only_the_first_failure_when_one_rank_fails(tmp_path, failing_rank, kind):
    """`dlc run --nproc 2` whose Trainer fails at step 5 on one rank only (a mistake on rank 0, a bug on rank 1:
    each rank fails first once, and echoes once). A mistake (UserError) is told in its one line with exit 2,
    nothing else; a bug by its own traceback and the launcher's line naming its rank. The peer's failure,
    which only echoes it ("Connection closed by peer" in its all-reduce), is not told.

    The failure is put into the workers from outside the package, which has no hooks for tests: a
    sitecustomize.py in a folder on PYTHONPATH, which Python imports at the start of every process. The
    workers inherit the launcher's environment, and in them (torchrun gave them a RANK) it records the
    process and makes one rank's Trainer fail (tests/ddp_worker.py: take_part_in_a_failing_job)."""
    env = environment_failing_on_rank(tmp_path, failing_rank, kind)
    done = dlc("run", "mlp-classification", "--quick", "--nproc", "2", "--quiet", "--out", str(tmp_path / "runs"),
               timeout=FAILURE_TIMEOUT_S, env=env)
    assert done.returncode == 2, failure(done)
    assert all(ended(worker) for worker in failing_job_processes(tmp_path))
    what = f"rank {failing_rank} failed on purpose at step {FAILING_STEP}"
    peer = 1 - failing_rank
    assert f"[rank{peer}]" not in done.stderr and "Connection closed" not in done.stderr, failure(done)
    if kind == "user":
        assert done.stderr.splitlines() == [f"dlc: error: {what}"], failure(done)
    else:
        assert f"[rank{failing_rank}]: RuntimeError: {what}" in done.stderr, failure(done)
        assert done.stderr.splitlines()[-1] == (f"dlc: error: process {failing_rank} of 2 failed with exit code 1; "
                                                "run without --nproc to see why"), failure(done)


def test_the_launcher_tells_the_first_failure_of_the_last_attempt(tmp_path):
    from types import SimpleNamespace

    def files(**named: str) -> str:
        folder = tmp_path / str(len(list(tmp_path.iterdir())))
        folder.mkdir()
        for name, text in named.items():
            (folder / name.replace("_", "-")).write_text(text)
        return str(folder)

    exited = {0: SimpleNamespace(exitcode=1), 1: SimpleNamespace(exitcode=2)}
    # Rank 1 failed first with a mistake; rank 0's line came after it.
    assert distributed._first_failure(files(attempt_0_first="1", attempt_0_rank_00000="echo", attempt_0_rank_00001="why"),
                                      exited, 2) == "why"
    # Rank 0 failed first with a bug (no line of its own): its exit code, not rank 1's line.
    assert distributed._first_failure(files(attempt_0_first="0", attempt_0_rank_00001="echo"), exited, 2) == (
        "process 0 of 2 failed with exit code 1; run without --nproc to see why")
    # A restarted job: the last attempt's failure, not the first attempt's.
    assert distributed._first_failure(files(attempt_0_first="0", attempt_0_rank_00000="old", attempt_1_first="1",
                                            attempt_1_rank_00001="new"), exited, 2) == "new"
    # Nobody claimed a first failure (a process killed outright): the lowest rank's line, else the lowest failed rank.
    assert distributed._first_failure(files(attempt_0_rank_00001="why"), exited, 2) == "why"
    assert distributed._first_failure(files(), {1: SimpleNamespace(exitcode=-9)}, 2) == (
        "process 1 of 2 failed with exit code -9; run without --nproc to see why")


@pytest.mark.parametrize("args, message", [
    (("gait", "--nproc", "2"), "lab 'gait' does not train in several processes yet; run it without --nproc"),
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
