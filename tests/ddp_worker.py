"""A small float64 classifier trained by `Trainer` with mini-batches: run in-process by the tests, and as
the script of `torchrun --nproc-per-node N` (`python ddp_worker.py OUT.pt`), where rank 0 saves the result.

Not a test module itself; tests/test_distributed.py compares the two.
"""

from __future__ import annotations

import sys

import torch
from torch import nn

from dlconcepts import distributed
from dlconcepts.train import Trainer, accuracy

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


if __name__ == "__main__":
    group = distributed.join(torch.device("cpu"))
    result = train_small_classifier(group)
    if group.is_main:
        torch.save({**result, "world_size": group.world_size}, sys.argv[1])
    distributed.leave(group)
