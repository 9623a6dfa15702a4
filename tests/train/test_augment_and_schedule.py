"""The Trainer's `augment=` touches training batches only; LRScheduler follows the cosine schedule."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from dlconcepts.train import Trainer, accuracy
from dlconcepts.train.callbacks import LRScheduler


class SpyAugment:
    """Records every batch it is given and returns it negated, so its effect is visible in the loss."""

    def __init__(self):
        self.batches: list[torch.Tensor] = []

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.batches.append(x.clone())
        return -x


def _data(n=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 3, generator=g)
    return X, (X[:, 0] > 0).long()


def test_augment_sees_every_training_row_once_per_epoch_and_nothing_else():
    X, y = _data()
    Xv, yv = _data(20, seed=1)
    spy = SpyAugment()
    torch.manual_seed(0)
    trainer = Trainer(nn.Linear(3, 2), nn.CrossEntropyLoss(), "sgd", lr=0.1, batch_size=16,
                      metrics={"accuracy": accuracy}, augment=spy)
    trainer.fit(X, y, epochs=3, valid=(Xv, yv))
    assert [len(b) for b in spy.batches] == [16, 16, 16, 2] * 3
    for epoch in range(3):  # each epoch's batches are a permutation of the training rows, never a validation row
        seen = torch.cat(spy.batches[4 * epoch : 4 * epoch + 4])
        assert sorted(map(tuple, seen.tolist())) == sorted(map(tuple, X.tolist()))
    calls = len(spy.batches)
    logged = trainer.history.epochs[-1]
    direct = trainer.evaluate(Xv, yv, prefix="valid_")  # no warp in evaluation: logged = recomputed on raw rows
    assert logged["valid_loss"] == pytest.approx(direct["valid_loss"])
    trainer.predict(Xv)
    assert len(spy.batches) == calls

    # What the model saw was the augmented batch: against an unaugmented run, training went the other way.
    torch.manual_seed(0)
    plain = Trainer(nn.Linear(3, 2), nn.CrossEntropyLoss(), "sgd", lr=0.1, batch_size=16)
    plain.fit(X, y, epochs=3)
    assert plain.evaluate(X, y)["loss"] < trainer.evaluate(X, y)["loss"]


def test_lr_scheduler_logs_the_cosine_rate_of_each_epoch():
    X, y = _data()
    epochs, lr = 6, 0.2
    trainer = Trainer(nn.Linear(3, 2), nn.CrossEntropyLoss(), "sgd", lr=lr, batch_size=25,
                      callbacks=[LRScheduler(lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs))])
    trainer.fit(X, y, epochs)
    expected = [lr * (1 + math.cos(math.pi * e / epochs)) / 2 for e in range(epochs)]  # η_e = η₀ (1 + cos(π e/T)) / 2
    np.testing.assert_allclose(trainer.history.column("lr"), expected, rtol=1e-6)
