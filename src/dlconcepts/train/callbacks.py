"""Callbacks for the Trainer: early stopping, checkpoints, a progress bar.

A callback sees the trainer at the start of `fit`, after every epoch (with that epoch's logs) and
at the end of `fit`, even when training stopped on an error. It may set `trainer.stop_training`.
A callback with a state that later epochs depend on gives it as `state_dict()` (tensors, numbers,
containers) and takes it back with `load_state_dict()`, called after `on_fit_start` when a run resumes.
"""

from __future__ import annotations

import copy
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch

from dlconcepts.runs import atomic_torch_save


class Callback:
    def on_fit_start(self, trainer: Any) -> None:
        pass

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, float]) -> None:
        pass

    def on_fit_end(self, trainer: Any) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class EarlyStopping(Callback):
    """Stop when `monitor` has not improved by more than `min_delta` for `patience` epochs.

    A NaN value counts as no improvement. With `restore_best`, the weights of the best epoch are put
    back when training ends — otherwise the model you get is the one `patience` epochs past its best.
    """

    def __init__(self, patience: int = 20, monitor: str = "valid_loss", min_delta: float = 0.0, restore_best: bool = True):
        if patience < 1:
            raise ValueError(f"patience must be >= 1; got {patience}")
        self.patience = patience
        self.monitor = monitor
        self.min_delta = min_delta
        self.restore_best = restore_best

    def on_fit_start(self, trainer: Any) -> None:
        self.best = math.inf
        self.best_epoch: int | None = None
        self.best_state: dict[str, torch.Tensor] | None = None
        self.wait = 0

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, float]) -> None:
        if self.monitor not in logs:
            raise ValueError(
                f"EarlyStopping monitors {self.monitor!r} but the logs have only {sorted(logs)}; "
                "pass validation data to fit(valid=...) or monitor 'train_loss'"
            )
        value = logs[self.monitor]
        if math.isfinite(value) and value < self.best - self.min_delta:
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best:
                self.best_state = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
        else:
            self.wait += 1
            if self.wait >= self.patience:
                trainer.stop_training = True
                trainer.history.stop_reason = (
                    f"early stopping at epoch {epoch}: {self.monitor} did not improve for {self.patience} epochs"
                )
        trainer.history.best_epoch = self.best_epoch

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "best_state": self.best_state, "wait": self.wait}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch, self.wait = state["best"], state["best_epoch"], state["wait"]
        self.best_state = state["best_state"]

    def on_fit_end(self, trainer: Any) -> None:
        if self.restore_best and self.best_state is not None:
            trainer.model.load_state_dict(self.best_state)


class LRScheduler(Callback):
    """Steps a torch learning-rate scheduler once per epoch and logs the rate each epoch used as `lr`.

    `make` builds the scheduler from the trainer's optimizer when `fit` starts, e.g.
    `LRScheduler(lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs))`, so one
    callback object can serve a fresh optimizer. Pitfall: a schedule sized for `epochs` that early
    stopping cuts short never reaches its small final rates; size it for the epochs that will run.
    """

    def __init__(self, make: Any):
        self.make = make
        self.scheduler: Any = None

    def on_fit_start(self, trainer: Any) -> None:
        self.scheduler = self.make(trainer.optimizer)

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, float]) -> None:
        logs["lr"] = trainer.optimizer.param_groups[0]["lr"]
        self.scheduler.step()

    def state_dict(self) -> dict[str, Any]:
        return self.scheduler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scheduler.load_state_dict(state)


class Checkpoint(Callback):
    """Save a resumable checkpoint every `every` epochs (and at the end), atomically.

    The checkpoint is a plain dict of state_dicts and primitives, so `load_checkpoint` can read it
    with `torch.load(..., weights_only=True)`, which cannot run code hidden in a file.
    """

    def __init__(self, path: str | Path, every: int = 1, extra: dict[str, Any] | None = None):
        if every < 1:
            raise ValueError(f"every must be >= 1; got {every}")
        self.path = Path(path)
        self.every = every
        self.extra = dict(extra or {})
        self.epoch = 0

    def _save(self, trainer: Any) -> None:
        losses = [row.get("valid_loss", math.nan) for row in trainer.history.epochs]
        finite = [v for v in losses if math.isfinite(v)]
        atomic_torch_save(
            self.path,
            {
                "model": trainer.model.state_dict(),
                "optimizer": trainer.optimizer.state_dict(),
                "epoch": self.epoch,
                "best_valid_loss": min(finite) if finite else None,
                **copy.deepcopy(self.extra),
            },
        )

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, float]) -> None:
        self.epoch = epoch
        if epoch % self.every == 0:
            self._save(trainer)

    def on_fit_end(self, trainer: Any) -> None:
        if self.epoch and self.epoch % self.every != 0:
            self._save(trainer)


def load_checkpoint(path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None) -> dict:
    """Load a `Checkpoint` file into `model` (and `optimizer`); returns the whole dict."""
    state = torch.load(Path(path), map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    if optimizer is not None:
        optimizer.load_state_dict(state["optimizer"])
    return state


class ProgressBar(Callback):
    """A tqdm bar over epochs (`tqdm.auto`: a widget in notebooks, text in terminals).

    Hidden when `enabled` is False (--quiet) or when stderr is not a terminal, so logs and CI output
    stay clean. The loss shown is refreshed at most ten times a second.
    """

    def __init__(self, total: int, desc: str = "", enabled: bool = True):
        self.total = total
        self.desc = desc
        self.enabled = enabled and sys.stderr.isatty()
        self.bar: Any = None

    def on_fit_start(self, trainer: Any) -> None:
        if self.enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total, desc=self.desc, leave=False, unit="epoch")
        self._shown = 0.0

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, float]) -> None:
        if self.bar is None:
            return
        self.bar.update(1)
        now = time.monotonic()
        if now - self._shown > 0.1:
            self._shown = now
            shown = {k: f"{v:.4g}" for k, v in logs.items() if k != "epoch"}
            self.bar.set_postfix(shown, refresh=False)

    def on_fit_end(self, trainer: Any) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
