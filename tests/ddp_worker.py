"""A small float64 classifier trained by `Trainer` with mini-batches, and a small study of many models
trained by `train_many`: run in-process by the tests, and as the script of `torchrun --nproc-per-node N`
(`python ddp_worker.py OUT.pt [classifier|batchnorm|study]`), where rank 0 saves the result and every rank
records who it is in OUT-rankN.json.

`python ddp_worker.py OUT_DIR cli-failing-on-rank R KIND` runs the real `dlc run mlp-classification --quick`
in every process, with the Trainer of rank R made to fail mid-training (KIND: `user`, a mistake the user can
fix, or `bug`); each process records itself in OUT_DIR/process-rankN.json.

Not a test module itself; tests/test_distributed.py compares and checks them.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
from pathlib import Path

import torch
from torch import nn

from dlconcepts import distributed
from dlconcepts.errors import UserError
from dlconcepts.train import Trainer, accuracy
from dlconcepts.train.many_models import ManySettings, StackedMLP, seeded_models, train_many

# 80 training rows in batches of 15: 6 steps an epoch, 60 in all; two ranks split 15 rows 8 + 7 and the last 5 as 3 + 2
ROWS, BATCH, EPOCHS = 100, 15, 10


def train_small_classifier(group: distributed.Group) -> dict:
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(ROWS, 4, generator=gen, dtype=torch.float64)
    y = (X[:, 0] + X[:, 1] * X[:, 2] > 0).long() + (X[:, 3] > 1).long()
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 3))
    trainer = Trainer(model, nn.CrossEntropyLoss(), "adam", lr=0.01, batch_size=BATCH, dtype=torch.float64,
                      metrics={"accuracy": accuracy}, seed=2, group=group)
    history = trainer.fit(X[:80], y[:80], EPOCHS, valid=(X[80:], y[80:]))
    return {"state": {k: v.clone() for k, v in model.state_dict().items()}, "epochs": history.epochs,
            "steps": trainer.steps}


def train_small_batchnorm_net(group: distributed.Group) -> dict:
    """The classifier's task with a BatchNorm layer: its statistics must be the global batch's."""
    gen = torch.Generator().manual_seed(4)
    X = 3 * torch.randn(ROWS, 4, generator=gen, dtype=torch.float64) + 1
    y = (X[:, 0] * X[:, 1] > 1).long()
    torch.manual_seed(5)
    # No bias before BatchNorm: its gradient is exactly 0 in theory, so Adam would move it by rounding
    # noise alone (lr · noise/|noise|), which no two summation orders share.
    model = nn.Sequential(nn.Linear(4, 16, bias=False), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 2))
    trainer = Trainer(model, nn.CrossEntropyLoss(), "adam", lr=0.01, batch_size=BATCH, dtype=torch.float64,
                      seed=6, group=group)
    history = trainer.fit(X[:80], y[:80], EPOCHS, valid=(X[80:], y[80:]))
    return {"state": {k: v.clone() for k, v in model.state_dict().items()}, "epochs": history.epochs,
            "steps": trainer.steps}


STUDY_MODELS = 7  # 4 on rank 0, 3 on rank 1


def train_small_study(group: distributed.Group) -> dict:
    """Seven MLPs, each on its own noisy rows, early-stopped on its own validation rows."""
    gen = torch.Generator().manual_seed(3)
    X = torch.randn(STUDY_MODELS, 40, 1, generator=gen, dtype=torch.float64)
    y = torch.sin(3 * X) + 0.3 * torch.randn(STUDY_MODELS, 40, 1, generator=gen, dtype=torch.float64)
    stack = StackedMLP.from_models(seeded_models((1, 16, 8, 1), range(10, 10 + STUDY_MODELS)))
    settings = ManySettings(epochs=150, lr=0.01, patience=20)
    result = train_many(stack, X[:, :30], y[:, :30], settings, valid=(X[:, 30:], y[:, 30:]), dtype=torch.float64,
                        group=group)
    return {"state": {k: v.clone() for k, v in result.model.state_dict().items()},
            "train_loss": torch.as_tensor(result.train_loss), "epochs_used": torch.as_tensor(result.epochs_used),
            "best_epoch": torch.as_tensor(result.best_epoch)}


# -- who a process is, and a failure on one rank ----------------------------------------------------------

def start_ticks(pid: int) -> int | None:
    """When process `pid` started (clock ticks since boot, from /proc), or None when it does not run (gone,
    or a zombie that has exited): with its start time a pid names one process, not a later one given the
    same number."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    state, *rest = stat.rpartition(")")[2].split()  # after "pid (command)": state, ppid, ...; starttime is 20th
    return None if state == "Z" else int(rest[18])


def record_process(path: Path, **facts) -> None:
    """Write who this process is to `path`: its rank and world size as torchrun set them, its node's rank
    (GROUP_RANK: which torchrun agent started it), that agent's pid, its own pid and start time."""
    pid = os.getpid()
    record = {"rank": int(os.environ["RANK"]), "world_size": int(os.environ["WORLD_SIZE"]),
              "group_rank": int(os.environ["GROUP_RANK"]), "agent_pid": os.getppid(), "pid": pid,
              "start_ticks": start_ticks(pid), **facts}
    path.write_text(json.dumps(record))


FAILING_STEP = 5


def fail_on_rank(rank: int, kind: str) -> None:
    """In the process of rank `rank`, make the Trainer raise in its FAILING_STEP-th step, before that step's
    collective: a UserError (kind 'user') or a RuntimeError (kind 'bug'). The other ranks go on into the
    collective and wait there for a peer that will never come."""
    if distributed.rank_from_environment() != rank:
        return
    error = UserError if kind == "user" else RuntimeError
    original = Trainer._step_loss
    steps = itertools.count(1)

    def failing_step_loss(self, *args, **kwargs):
        if next(steps) == FAILING_STEP:
            raise error(f"rank {rank} failed on purpose at step {FAILING_STEP}")
        return original(self, *args, **kwargs)

    Trainer._step_loss = failing_step_loss


def take_part_in_a_failing_job(process_dir: Path, failing_rank: int, kind: str) -> None:
    """What each worker of a job that fails on one rank does first (see the module's docstring)."""
    record_process(process_dir / f"process-rank{os.environ['RANK']}.json")
    fail_on_rank(failing_rank, kind)


def run_cli_failing_on_rank(out: Path, failing_rank: int, kind: str) -> int:
    """`dlc run mlp-classification --quick` through the CLI's own entry point, failing on one rank."""
    from dlconcepts.cli import main

    take_part_in_a_failing_job(out, failing_rank, kind)
    return main(["run", "mlp-classification", "--quick", "--quiet", "--out", str(out / "runs")])


def train_and_save(out: Path, what: str) -> None:
    group = distributed.join(torch.device("cpu"))
    record_process(out.with_name(f"{out.stem}-rank{group.rank}.json"), world_size_of_group=group.world_size)
    trainings = {"study": train_small_study, "batchnorm": train_small_batchnorm_net, "classifier": train_small_classifier}
    result = trainings[what](group)
    if group.is_main:
        torch.save({**result, "world_size": group.world_size}, out)
    distributed.leave(group)


if __name__ == "__main__":
    out, what = Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "classifier"
    if what == "cli-failing-on-rank":
        raise SystemExit(run_cli_failing_on_rank(out, int(sys.argv[3]), sys.argv[4]))
    train_and_save(out, what)
