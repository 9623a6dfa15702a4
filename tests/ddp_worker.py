"""A small float64 classifier trained by `Trainer` with mini-batches, and a small study of many models
trained by `train_many`: run in-process by the tests, and as the script of `torchrun --nproc-per-node N`
(`python ddp_worker.py OUT.pt [classifier|batchnorm|study]`), where rank 0 saves the result.

Not a test module itself; tests/test_distributed.py compares the two.
"""

from __future__ import annotations

import sys

import torch
from torch import nn

from dlconcepts import distributed
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


if __name__ == "__main__":
    group = distributed.join(torch.device("cpu"))
    what = sys.argv[2] if len(sys.argv) > 2 else "classifier"
    trainings = {"study": train_small_study, "batchnorm": train_small_batchnorm_net, "classifier": train_small_classifier}
    result = trainings[what](group)
    if group.is_main:
        torch.save({**result, "world_size": group.world_size}, sys.argv[1])
    distributed.leave(group)
