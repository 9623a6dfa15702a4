"""What does `dlconcepts.train.Trainer.fit` cost over the course's hand-written PyTorch loop?

The workload is the course's full-batch regression: 80 rows of y = 3x² + 25x + 580, inputs and
targets standardized, `mlp((1, 30, 15, 1), "relu")`, MSE, Adam lr=1e-3, one step per epoch,
float32, one CPU thread. The contenders train it side by side in one run:

1. the hand loop, written as the course's notebook writes it;
2. the Trainer given the same default `torch.optim.Adam`: its pure overhead (guards, history,
   NaN check, last-good-weights copy);
3. the Trainer with its own `optimizer="adam"` (fused Adam: the "smarter default");
4. PyTorch Lightning, and 5. skorch, when installed (`pip install -e ".[bench]"`).

Each measurement builds a fresh model from the same seed, warms up on a throwaway model, then
times `--epochs` epochs with `time.perf_counter`, from building the optimizer/trainer to the end
of training (so a framework's per-fit setup is counted). Contenders take turns, round after
round, so machine noise hits them alike; the table shows the median steps/s of `--repeats`
rounds and its ratio to the hand loop. The final losses of the hand loop and of the Trainer with
the same Adam must agree, which shows both time the same computation.

Run it with `make bench`, or `.venv/bin/python benchmarks/trainer_overhead.py [--epochs N]
[--repeats N] [--json results.json]`.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dlconcepts.data import Standardizer, quadratic
from dlconcepts.nets import mlp
from dlconcepts.train import Trainer

from common import positive_int

SEED = 0
LAYERS = (1, 30, 15, 1)
N_ROWS = 80
LR = 1e-3
WARMUP_EPOCHS = 50
# Same seed and data, same update rule: any difference beyond float noise means a different computation.
LOSS_RTOL = 1e-6

# A contender trains a fresh model for `epochs` epochs and returns (seconds timed, final train loss).
Run = Callable[[torch.Tensor, torch.Tensor, int], tuple[float, float]]


@dataclass
class Contender:
    name: str
    run: Run | None  # None: its package is not installed
    seconds: list[float] = field(default_factory=list)
    final_loss: float = math.nan

    def steps_per_s(self, epochs: int) -> list[float]:
        return [epochs / s for s in self.seconds]

    def median_steps_per_s(self, epochs: int) -> float:
        return statistics.median(self.steps_per_s(epochs))


# -- workload -------------------------------------------------------------------------------------
def workload() -> tuple[torch.Tensor, torch.Tensor]:
    """80 standardized rows of the course's quadratic as float32 tensors of shape (80, 1)."""
    data = quadratic()
    rows = np.sort(np.random.default_rng(SEED).permutation(len(data))[:N_ROWS])
    X = Standardizer().fit_transform(data.X[rows])
    y = Standardizer().fit_transform(data.y[rows])
    return torch.tensor(X, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)


def fresh_model() -> nn.Module:
    # Reseeding here gives every contender, and every repeat, the very same initial weights.
    torch.manual_seed(SEED)
    return mlp(LAYERS, "relu")


# -- contenders -----------------------------------------------------------------------------------
def run_hand_loop(X: torch.Tensor, y: torch.Tensor, epochs: int) -> tuple[float, float]:
    model = fresh_model()
    start = time.perf_counter()
    loss_fn = nn.MSELoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    losses = []
    for _ in range(epochs):
        pred = model(X)
        loss = loss_fn(pred, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return time.perf_counter() - start, losses[-1]


def run_trainer_same_adam(X: torch.Tensor, y: torch.Tensor, epochs: int) -> tuple[float, float]:
    model = fresh_model()
    start = time.perf_counter()
    trainer = Trainer(model, nn.MSELoss(), torch.optim.Adam(model.parameters(), lr=LR))
    history = trainer.fit(X, y, epochs)
    return time.perf_counter() - start, history.epochs[-1]["train_loss"]


def run_trainer_default(X: torch.Tensor, y: torch.Tensor, epochs: int) -> tuple[float, float]:
    model = fresh_model()
    start = time.perf_counter()
    trainer = Trainer(model, nn.MSELoss(), "adam", lr=LR)
    history = trainer.fit(X, y, epochs)
    return time.perf_counter() - start, history.epochs[-1]["train_loss"]


def silence_lightning() -> None:
    """Lightning logs its device summary and tips, and warns about DataLoader workers; keep only the table."""
    # Lightning sets its loggers to INFO when imported, so this must run after the import.
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"(lightning|pytorch_lightning|lightning_fabric)(\.|$)")
    # Raised on behalf of the caller's frame, so the module filter above does not catch these.
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")


def make_lightning_run() -> Run | None:
    # No fork-based CUDA probing: this is a CPU benchmark, and the probe only adds start-up noise.
    os.environ.setdefault("PL_DISABLE_FORK", "1")
    try:
        import lightning as L
    except ImportError:
        return None
    from torch.utils.data import DataLoader

    silence_lightning()

    class Regressor(L.LightningModule):
        def __init__(self, net: nn.Module):
            super().__init__()
            self.net = net
            self.loss_fn = nn.MSELoss()
            self.losses: list[float] = []

        def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
            X, y = batch
            loss = self.loss_fn(self.net(X), y)
            self.losses.append(loss.item())  # what the hand loop records, at the same cost
            return loss

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.Adam(self.parameters(), lr=LR)

    def run(X: torch.Tensor, y: torch.Tensor, epochs: int) -> tuple[float, float]:
        module = Regressor(fresh_model())
        # The batch is pre-built (batch_size=None: no per-sample indexing or collation), so the
        # time is Lightning's own loop rather than a DataLoader gathering 80 rows every epoch.
        loader = DataLoader([(X, y)], batch_size=None)
        start = time.perf_counter()
        trainer = L.Trainer(
            max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False, accelerator="cpu", devices=1,
        )
        trainer.fit(module, loader)
        return time.perf_counter() - start, module.losses[-1]

    return run


def make_skorch_run() -> Run | None:
    try:
        from skorch import NeuralNetRegressor
    except ImportError:
        return None

    def run(X: torch.Tensor, y: torch.Tensor, epochs: int) -> tuple[float, float]:
        model = fresh_model()
        Xn, yn = X.numpy(), y.numpy()  # skorch's usual input: numpy arrays, as from scikit-learn
        start = time.perf_counter()
        net = NeuralNetRegressor(
            model, max_epochs=epochs, batch_size=N_ROWS, train_split=None, verbose=0,
            optimizer=torch.optim.Adam, lr=LR,
        )
        net.fit(Xn, yn)
        return time.perf_counter() - start, float(net.history[-1, "train_loss"])

    return run


def contenders() -> list[Contender]:
    return [
        Contender("hand loop (notebook)", run_hand_loop),
        Contender("Trainer, same Adam", run_trainer_same_adam),
        Contender("Trainer, default (fused Adam)", run_trainer_default),
        Contender("PyTorch Lightning", make_lightning_run()),
        Contender("skorch NeuralNetRegressor", make_skorch_run()),
    ]


# -- measurement ----------------------------------------------------------------------------------
def measure(contender: Contender, X: torch.Tensor, y: torch.Tensor, epochs: int) -> None:
    assert contender.run is not None
    # Warm up on a throwaway model: first-call costs (lazy imports, allocator, dispatch caches) stay untimed.
    contender.run(X, y, min(WARMUP_EPOCHS, epochs))
    seconds, final_loss = contender.run(X, y, epochs)
    contender.seconds.append(seconds)
    contender.final_loss = final_loss


def benchmark(lineup: list[Contender], X: torch.Tensor, y: torch.Tensor, epochs: int, repeats: int) -> None:
    runnable = [c for c in lineup if c.run is not None]
    for r in range(repeats):
        # Round-robin, starting one place later each round, so no contender always runs first or
        # always right after the heaviest one.
        k = r % len(runnable)
        for contender in runnable[k:] + runnable[:k]:
            measure(contender, X, y, epochs)


# -- report ---------------------------------------------------------------------------------------
def loss_check(hand: Contender, trainer: Contender) -> tuple[bool, str]:
    a, b = hand.final_loss, trainer.final_loss
    rel = abs(a - b) / max(abs(a), abs(b), 1e-300)
    ok = rel <= LOSS_RTOL
    verdict = "identical" if a == b else f"relative difference {rel:.2e}"
    line = (
        f"final loss  hand loop: {a:.10g}   Trainer, same Adam: {b:.10g}   -> {verdict}"
        f" ({'same computation' if ok else f'MISMATCH, tolerance {LOSS_RTOL:g}'})"
    )
    return ok, line


def table(lineup: list[Contender], epochs: int) -> str:
    hand = lineup[0].median_steps_per_s(epochs)
    header = f"{'contender':<31} {'steps/s':>9} {'min-max':>15} {'x hand':>7} {'final loss':>12}"
    lines = [header, "-" * len(header)]
    for c in lineup:
        if c.run is None:
            lines.append(f"{c.name:<31} {'not installed':>9}")
            continue
        rates = c.steps_per_s(epochs)
        median = c.median_steps_per_s(epochs)
        spread = f"{min(rates):.0f}-{max(rates):.0f}"
        lines.append(f"{c.name:<31} {median:>9.0f} {spread:>15} {median / hand:>7.2f} {c.final_loss:>12.6g}")
    return "\n".join(lines)


def results(lineup: list[Contender], epochs: int, repeats: int, loss_ok: bool) -> dict[str, Any]:
    hand = lineup[0].median_steps_per_s(epochs)
    return {
        "workload": {
            "rows": N_ROWS, "layers": list(LAYERS), "activation": "relu", "loss": "MSELoss", "optimizer": "Adam",
            "lr": LR, "epochs": epochs, "full_batch": True, "dtype": "float32", "threads": torch.get_num_threads(),
        },
        "repeats": repeats,
        "warmup_epochs": min(WARMUP_EPOCHS, epochs),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.platform(),
        "final_loss_agrees": loss_ok,
        "contenders": [
            {
                "name": c.name,
                "installed": c.run is not None,
                "steps_per_s": c.steps_per_s(epochs) if c.run else [],
                "median_steps_per_s": c.median_steps_per_s(epochs) if c.run else None,
                "ratio_to_hand": c.median_steps_per_s(epochs) / hand if c.run else None,
                "final_loss": c.final_loss if c.run else None,
            }
            for c in lineup
        ],
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=positive_int, default=2000, help="timed full-batch epochs (default 2000)")
    parser.add_argument(
        "--repeats", type=positive_int, default=3, help="interleaved rounds; the median is shown (default 3)"
    )
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the results here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # One thread: the course's models are tiny, and thread pools only add noise on a shared machine.
    torch.set_num_threads(1)
    X, y = workload()
    lineup = contenders()
    print(
        f"Trainer overhead: {args.epochs} full-batch epochs of mlp({', '.join(map(str, LAYERS))}) relu, MSE, "
        f"Adam lr={LR:g}, {N_ROWS} rows, float32, {torch.get_num_threads()} thread\n"
        f"torch {torch.__version__}, Python {platform.python_version()}; median of {args.repeats} interleaved "
        f"rounds, each after a {min(WARMUP_EPOCHS, args.epochs)}-epoch warm-up\n",
        flush=True,
    )
    benchmark(lineup, X, y, args.epochs, args.repeats)
    print(table(lineup, args.epochs))
    loss_ok, line = loss_check(lineup[0], lineup[1])
    print()
    print(line)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results(lineup, args.epochs, args.repeats, loss_ok), indent=2) + "\n")
        print(f"results written to {args.json}")
    return 0 if loss_ok else 1


if __name__ == "__main__":
    sys.exit(main())
