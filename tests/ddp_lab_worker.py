"""Small float64 versions of what the mini-batch labs train — the VAE of `vae` (VAETrainer) and the CNN of
`cnn-digits` (Trainer, BatchNorm2d) — run in-process by the tests and as the script of
`torchrun --nproc-per-node N` (`python ddp_lab_worker.py OUT.pt vae|digits_cnn|dropout`), where rank 0
saves the result.

Not a test module itself; tests/test_distributed_labs.py compares two processes with one.
"""

from __future__ import annotations

import sys

import torch
from torch import nn

from dlconcepts import distributed
from dlconcepts.data.digits import load_digits
from dlconcepts.nets.autoencoder import make_vae
from dlconcepts.nets.cnn import DigitsCNN
from dlconcepts.train import Trainer, accuracy
from dlconcepts.train.self_supervised import VAETrainer

# 90 training images in batches of 15: 6 steps an epoch, each split 8 + 7 by two ranks, so the weighting of
# each rank's loss by its share of the batch matters at every step.
TRAIN, VALID, BATCH = 90, 30, 15


def digit_images() -> tuple[torch.Tensor, torch.Tensor]:
    """The first 120 of scikit-learn's 8×8 digits, [n, 1, 8, 8] in [0, 1], float64, and their labels."""
    digits = load_digits()
    n = TRAIN + VALID
    return torch.as_tensor(digits.images[:n], dtype=torch.float64), torch.as_tensor(digits.labels[:n])


def train_small_vae(group: distributed.Group) -> dict:
    """The vae lab's model (MLP encoder/decoder, Bernoulli decoder, 2-D code) with a KL warm-up and the
    cosine schedule: every part of VAETrainer's loop that N processes must reproduce."""
    images, _ = digit_images()
    torch.manual_seed(7)
    model = make_vae("mlp", (1, 8, 8), 2, (32, 16), (16, 32), "elu", "bernoulli", 0.1)
    trainer = VAETrainer(model, "adam", lr=0.005, batch_size=BATCH, warmup_epochs=3, dtype=torch.float64, seed=8,
                         group=group)
    history = trainer.fit(images[:TRAIN], 6, images[TRAIN:])
    return {"state": {k: v.clone() for k, v in model.state_dict().items()}, "epochs": history.epochs,
            "steps": trainer.steps}


def train_small_digits_cnn(group: distributed.Group) -> dict:
    """The cnn-digits lab's CNN (conv–BatchNorm2d–ReLU stages) through the Trainer, without dropout and
    warps, whose draws are per rank by design: with the shuffling alone random, N processes must take the
    steps one process takes."""
    images, labels = digit_images()
    torch.manual_seed(9)
    model = DigitsCNN((4, 8), num_classes=10, in_channels=1, dropout=0.0, pooled_size=2)
    trainer = Trainer(model, nn.CrossEntropyLoss(label_smoothing=0.1), "adamw", lr=0.003, batch_size=BATCH,
                      dtype=torch.float64, metrics={"accuracy": accuracy}, seed=10, group=group)
    history = trainer.fit(images[:TRAIN], labels[:TRAIN], 4, valid=(images[TRAIN:], labels[TRAIN:]))
    return {"state": {k: v.clone() for k, v in model.state_dict().items()}, "epochs": history.epochs,
            "steps": trainer.steps}


def dropout_masks_of_ranks(group: distributed.Group) -> dict:
    """The dropout mask each rank draws first after a lab's `torch.manual_seed(seed)` and the Trainer's
    DDP wrap (every rank gathers them all)."""
    torch.manual_seed(3)
    model = DigitsCNN((4, 8), num_classes=10, in_channels=1, dropout=0.2, pooled_size=2)
    Trainer(model, nn.CrossEntropyLoss(), "adamw", batch_size=BATCH, seed=3, group=group)
    mask = nn.functional.dropout(torch.ones(BATCH // group.world_size, 64), 0.2, training=True)
    return {"masks": distributed.gather_objects(mask, group)}


TRAININGS = {"vae": train_small_vae, "digits_cnn": train_small_digits_cnn, "dropout": dropout_masks_of_ranks}

if __name__ == "__main__":
    group = distributed.join(torch.device("cpu"))
    result = TRAININGS[sys.argv[2]](group)
    if group.is_main:
        torch.save({**result, "world_size": group.world_size}, sys.argv[1])
    distributed.leave(group)
