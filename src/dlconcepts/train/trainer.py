"""The supervised Trainer: step 3 of the course for any model, loss and optimizer.

One epoch is the course's loop — predict, measure the loss, zero the gradients, backpropagate,
step — over the whole training set at once (the full-batch fast path, no indexing at all) or over
shuffled mini-batches that cover every sample exactly once. Around that loop stand the guards that
users of the big frameworks keep asking for:

* a divergence guard: the first NaN or infinite loss stops training at once, restores the weights
  of the last step whose loss was finite, and raises `TrainingDiverged` naming the epoch and causes;
* a shape guard: predictions of shape [n, 1] against targets of shape [n] would broadcast to
  [n, n] inside MSELoss and train on nonsense without a word; that raises `ShapeMismatchError`;
* a softmax guard: CrossEntropyLoss applies log-softmax itself, so a model that ends in Softmax
  is refused (the fault of the course's own classification notebook).

Under `torchrun` (a process group joined, see `dlconcepts.distributed`) the same loop is data
parallel: the model is wrapped in DistributedDataParallel, every rank draws the same permutation and
takes its share of each global batch, and each rank's loss is weighted so that DDP's average of the
gradients is the gradient of the global batch's mean loss. N processes with batches of B take the
steps one process takes with batches of B (tests/test_distributed.py: equal to 1e-10 in float64).

Given the run's `Checkpoints`, `fit` is one stage of it (see `dlconcepts.checkpoints`): it saves the model,
the optimizer, the shuffling generator, the callbacks' state and the history at epoch ends, and a resumed
run continues from the saved epoch to the same weights as one that never stopped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import torch
from torch import nn

from dlconcepts import distributed
from dlconcepts.checkpoints import Checkpoints, Saved
from dlconcepts.errors import ShapeMismatchError, TrainingDiverged
from dlconcepts.train.optim import make_optimizer

Metric = Callable[[torch.Tensor, torch.Tensor], float]
ArrayLike = Any  # numpy array or torch tensor


@dataclass
class History:
    """One dict per completed epoch: epoch, train_loss, valid_loss (with validation data), metrics."""

    epochs: list[dict[str, float]] = field(default_factory=list)
    stop_reason: str = "completed"
    best_epoch: int | None = None

    def __len__(self) -> int:
        return len(self.epochs)

    def column(self, name: str) -> list[float]:
        return [row[name] for row in self.epochs]

    def as_dict(self) -> dict[str, Any]:
        return {"epochs": self.epochs, "stop_reason": self.stop_reason, "best_epoch": self.best_epoch}


def check_prediction_shape(pred: torch.Tensor, target: torch.Tensor, loss_fn: Callable) -> None:
    """Refuse prediction/target shapes that a loss would broadcast silently; the message names the fix."""
    if isinstance(loss_fn, (nn.CrossEntropyLoss, nn.NLLLoss)) and not target.is_floating_point():
        if pred.ndim != 2 or target.shape != pred.shape[:1]:
            raise ShapeMismatchError(
                f"class targets must have shape [n] against logits [n, classes]; got targets {list(target.shape)} "
                f"and predictions {list(pred.shape)} (flatten the targets with y.reshape(-1))"
            )
        return
    if pred.shape != target.shape:
        try:
            broadcast = list(torch.broadcast_shapes(pred.shape, target.shape))
            what = f"the loss would broadcast them to {broadcast} and compare every prediction with every target"
        except RuntimeError:
            what = "the loss cannot pair them up"
        raise ShapeMismatchError(
            f"predictions have shape {list(pred.shape)} but targets {list(target.shape)}: {what}; "
            f"make them match, e.g. y.reshape(-1, 1) for a single-output regression"
        )


def guarded_step(
    loss: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    params: list[torch.Tensor],
    last_good: list[torch.Tensor],
    on_nonfinite: Callable[[float], None],
    value: float | None = None,
) -> float:
    """One step of the course's loop — zero the gradients, backpropagate, step — behind the divergence guard.

    A NaN or infinite loss puts the weights of the last finite step back (`last_good`, copies of
    `params`) and calls `on_nonfinite(value)`, which raises; a finite loss first records the weights
    that produced it, the ones to fall back on if the next step blows up. Returns the loss as a float.
    `value` is the loss the guard judges when it is not `loss` itself (data parallel: the global
    batch's, so that every rank stops at the same step).
    """
    value = loss.item() if value is None else value
    if not math.isfinite(value):
        torch._foreach_copy_(params, last_good)
        on_nonfinite(value)
    torch._foreach_copy_(last_good, params)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return value


# -- checkpoints: the state of a training loop (the Trainer's, the VAETrainer's) -------------------------

def loop_state(trainer: Any, epoch: int, last_good: list[torch.Tensor], callbacks: Sequence[Any]) -> dict[str, Any]:
    """Everything a trainer's next epoch depends on, the same on every rank: the model, the optimizer, the
    shuffling generator (with the epoch, the position in the data order), the step count, the snapshot the
    divergence guard falls back on, the history and the callbacks' states (schedule, early stopping)."""
    return {
        "epoch": epoch, "steps": trainer.steps, "stop_training": trainer.stop_training,
        "model": trainer.model.state_dict(), "optimizer": trainer.optimizer.state_dict(),
        "generator": trainer.generator.get_state(), "last_good": list(last_good),
        "history": trainer.history.as_dict(),
        "callbacks": [cb.state_dict() if hasattr(cb, "state_dict") else {} for cb in callbacks],
    }


def local_loop_state(augment: Any) -> dict[str, Any]:
    """What differs between ranks besides the RNG streams: the augmentation's own generator."""
    generator = getattr(augment, "generator", None)
    return {"augment": generator.get_state()} if isinstance(generator, torch.Generator) else {}


def load_loop_state(trainer: Any, saved: Saved, last_good: list[torch.Tensor], callbacks: Sequence[Any],
                    augment: Any = None) -> int:
    """Put a saved `loop_state` back into `trainer` (after its callbacks' on_fit_start); returns its epoch."""
    state = saved.state
    trainer.model.load_state_dict(state["model"])
    trainer.optimizer.load_state_dict(state["optimizer"])
    trainer.generator.set_state(state["generator"])
    torch._foreach_copy_(last_good, [t.to(last_good[0].device) for t in state["last_good"]])
    trainer.steps, trainer.stop_training = state["steps"], state["stop_training"]
    history = state["history"]
    trainer.history = History(list(history["epochs"]), history["stop_reason"], history["best_epoch"])
    for cb, cb_state in zip(callbacks, state["callbacks"]):
        if hasattr(cb, "load_state_dict"):
            cb.load_state_dict(cb_state)
    if "augment" in saved.local:
        augment.generator.set_state(saved.local["augment"])
    return state["epoch"]


def _outputs_probabilities(model: nn.Module) -> bool:
    last = None
    for last in model.modules():
        pass
    return isinstance(last, (nn.Softmax, nn.LogSoftmax))


class Trainer:
    """Fit `model` to minimize `loss_fn` with an optimizer.

    Args:
        model: any `nn.Module`; it is moved to `device`.
        loss_fn: e.g. `nn.MSELoss()` (targets shaped like predictions) or `nn.CrossEntropyLoss()`
            (logits [n, classes], integer targets [n]).
        optimizer: a name from `OPTIMIZERS` (built with fused kernels where available — faster, same
            update) or an optimizer instance you made over `model.parameters()`.
        lr, weight_decay: used only when `optimizer` is a name.
        batch_size: None for full batch (every epoch is one step on all samples); otherwise shuffled
            mini-batches, the last one possibly smaller, every sample once per epoch.
        metrics: name -> fn(predictions, targets) -> float, logged as train_<name> and valid_<name>.
        callbacks: EarlyStopping, Checkpoint, ProgressBar, or your own `Callback`.
        seed: seeds the mini-batch shuffling only (the model is seeded where it is built).
        augment: fn(inputs) -> inputs applied to every *training* mini-batch before the model sees it
            (e.g. `dlconcepts.data.augment.RandomAffine`); never to validation data, `predict` or
            `evaluate`. It must keep row k a version of row k, so the targets stay aligned.
        group: the process group to train data parallel in; by default the one this process joined
            under torchrun (`distributed.current()`), a group of one otherwise.
        checkpoints: the run's checkpoints (`LabContext.checkpoints`): each `fit` is a stage of them, saved
            at epoch ends and resumed from them. None: nothing is saved.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        optimizer: str | torch.optim.Optimizer = "adam",
        *,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        batch_size: int | None = None,
        metrics: Mapping[str, Metric] | None = None,
        callbacks: Sequence[Any] = (),
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
        seed: int = 0,
        augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
        group: distributed.Group | None = None,
        checkpoints: Checkpoints | None = None,
    ):
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 or None for full batch; got {batch_size}")
        if lr <= 0 or not math.isfinite(lr):
            raise ValueError(f"lr must be a positive number; got {lr}")
        if isinstance(loss_fn, (nn.CrossEntropyLoss, nn.NLLLoss)) and _outputs_probabilities(model):
            raise ShapeMismatchError(
                "the model ends in Softmax but CrossEntropyLoss applies log-softmax itself; "
                "remove the final Softmax and let the model output logits"
            )
        self.device = torch.device(device)
        self.dtype = dtype or torch.get_default_dtype()
        self.model = model.to(device=self.device, dtype=self.dtype)
        self.group = group if group is not None else distributed.current()
        # The module the training steps call: DDP averages the gradients over the ranks in backward and
        # starts every rank from rank 0's weights. `self.model` stays the plain module (predict, state_dict).
        self.forward_module: nn.Module = self.model
        if self.group.distributed:
            self.model, self.forward_module = distributed.data_parallel(self.model, self.device, self.group)
        self.loss_fn = loss_fn
        if isinstance(optimizer, str):
            optimizer = make_optimizer(optimizer, self.model.parameters(), lr=lr, weight_decay=weight_decay)
        self.optimizer = optimizer
        self.batch_size = batch_size
        self.metrics = dict(metrics or {})
        self.callbacks = list(callbacks)
        self.augment = augment
        self.checkpoints = checkpoints if checkpoints is not None else Checkpoints.disabled()
        self.generator = torch.Generator().manual_seed(seed)
        self.history = History()
        self.stop_training = False
        self.steps = 0

    # -- data -----------------------------------------------------------------------------------
    def as_tensor(self, a: ArrayLike, target: bool = False) -> torch.Tensor:
        t = torch.as_tensor(np.asarray(a) if not isinstance(a, torch.Tensor) else a)
        if target and not t.is_floating_point():
            return t.to(self.device, torch.long)
        return t.to(self.device, self.dtype)

    # -- the loop -------------------------------------------------------------------------------
    def fit(
        self,
        X: ArrayLike,
        y: ArrayLike,
        epochs: int,
        valid: tuple[ArrayLike, ArrayLike] | None = None,
    ) -> History:
        """Train for up to `epochs` epochs (callbacks may stop earlier); returns the `History`."""
        if epochs < 1:
            raise ValueError(f"epochs must be >= 1; got {epochs}")
        X, y = self.as_tensor(X), self.as_tensor(y, target=True)
        if len(X) != len(y):
            raise ShapeMismatchError(f"X has {len(X)} rows but y has {len(y)}; give one target per row")
        Xv = yv = None
        if valid is not None:
            Xv, yv = self.as_tensor(valid[0]), self.as_tensor(valid[1], target=True)
        self.history = History()
        self.stop_training = False
        # Detached views share storage with the parameters; copying between them records no autograd
        # history, so the per-step snapshot needs no no_grad() context (measured: ~1.5% of a step saved).
        params = [p.detach() for p in self.model.parameters()]
        last_good = [p.clone() for p in params]
        with torch.no_grad():  # in eval mode, so batch-norm statistics and dropout are left untouched
            self.model.eval()
            check_prediction_shape(self.model(X[:2]), y[:2], self.loss_fn)

        for cb in self.callbacks:
            cb.on_fit_start(self)
        stage = self.checkpoints.stage("fit", f"{type(self.model).__name__}, {epochs} epochs")
        first_epoch, finished = 1, False
        if stage.saved is not None:
            first_epoch, finished = self._load_state(stage.saved, last_good) + 1, stage.saved.finished
            stage.restore_rng()
        self.model.train()
        n = len(X)
        full_batch = self.batch_size is None or self.batch_size >= n
        if self.group.distributed and min(n, self.batch_size or n) < self.group.world_size:
            raise ValueError(f"{self.group.world_size} processes need batches of at least {self.group.world_size} rows; "
                             f"got {min(n, self.batch_size or n)}")
        keep_outputs = bool(self.metrics)
        epoch = first_epoch - 1
        stage.enter()  # a signal from here on waits for the epoch's end and its checkpoint
        try:
            for epoch in range(first_epoch, 1 + (epochs if not finished else 0)):
                if full_batch:
                    order = None
                    global_batches: Iterable[torch.Tensor | None] = (None,)
                else:
                    order = torch.randperm(n, generator=self.generator).to(self.device)
                    global_batches = torch.split(order, self.batch_size)  # type: ignore[arg-type]
                loss_sum, outputs, targets = 0.0, [], []
                for rows in global_batches:
                    pred, yb, value, loss = self._step_loss(X, y, rows)
                    value = guarded_step(loss, self.optimizer, params, last_good, partial(self._diverged, epoch), value)
                    self.steps += 1
                    loss_sum += value * (n if rows is None else len(rows))
                    if keep_outputs:
                        outputs.append(pred.detach())
                        targets.append(yb)
                logs: dict[str, float] = {"epoch": epoch, "train_loss": loss_sum / n}
                if keep_outputs:
                    train_pred, train_target = self._all_outputs(outputs, targets)
                    for name, fn in self.metrics.items():
                        logs[f"train_{name}"] = fn(train_pred, train_target)
                if Xv is not None:
                    logs.update(self.evaluate(Xv, yv, prefix="valid_"))
                self.history.epochs.append(logs)
                for cb in self.callbacks:
                    cb.on_epoch_end(self, epoch, logs)
                if self.stop_training:
                    break
                stage.epoch_end(epoch, partial(loop_state, self, epoch, last_good, self.callbacks),
                                partial(local_loop_state, self.augment))
        finally:
            stage.leave()
            for cb in self.callbacks:
                cb.on_fit_end(self)
        if not finished:
            stage.finish(epoch, loop_state(self, epoch, last_good, self.callbacks), local_loop_state(self.augment))
        return self.history

    def _load_state(self, saved: Saved, last_good: list[torch.Tensor]) -> int:
        return load_loop_state(self, saved, last_good, self.callbacks, self.augment)

    def _step_loss(self, X: torch.Tensor, y: torch.Tensor, rows: torch.Tensor | None):
        """The predictions for this rank's rows of one global batch (`rows`; None = every row), their
        targets, the global batch's mean loss (the value the guard and the history see; None: the loss
        itself) and the loss to backpropagate."""
        if not self.group.distributed:
            xb, yb = (X, y) if rows is None else (X[rows], y[rows])
            if self.augment is not None:
                xb = self.augment(xb)
            pred = self.forward_module(xb)
            return pred, yb, None, self.loss_fn(pred, yb)
        everyone = torch.arange(len(X), device=self.device) if rows is None else rows
        mine = distributed.rows_of_rank(everyone, self.group)
        xb, yb = X[mine], y[mine]
        if self.augment is not None:
            xb = self.augment(xb)
        pred = self.forward_module(xb)
        local = self.loss_fn(pred, yb) if len(mine) else pred.sum() * 0.0
        # DDP averages gradients over the ranks; weighting each rank's mean by its share of the global
        # batch makes that average the gradient of the global mean, even when the shares differ by a row.
        share = len(mine) / len(everyone)
        value = distributed.sum_over_ranks((local.detach() * share).reshape(1), self.group).item()
        return pred, yb, value, local * (share * self.group.world_size)

    def _all_outputs(self, outputs: list[torch.Tensor], targets: list[torch.Tensor]):
        """The epoch's training outputs and their targets; data parallel, those of every rank (the
        metrics see every row once, in another order than one process would, which a mean ignores)."""
        pred, target = torch.cat(outputs), torch.cat(targets)
        if not self.group.distributed:
            return pred, target
        parts = distributed.gather_objects((pred.cpu(), target.cpu()), self.group)
        return (torch.cat([p for p, _ in parts]).to(self.device), torch.cat([t for _, t in parts]).to(self.device))

    def _diverged(self, epoch: int, value: float) -> None:
        self.history.stop_reason = f"diverged at epoch {epoch}"
        lr = self.optimizer.param_groups[0].get("lr")
        raise TrainingDiverged(
            f"the loss became {value} at epoch {epoch} (step {self.steps + 1}); training stopped and the last "
            f"weights with a finite loss were kept. Likely causes: a learning rate too high (lr={lr:g}: try 10× "
            f"smaller), unscaled inputs or targets (standardize them), or a log/division of zero in the loss",
            epoch=epoch,
        )

    # -- evaluation -----------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, X: ArrayLike) -> torch.Tensor:
        """The model's outputs in eval mode (dropout off), on the CPU."""
        was_training = self.model.training
        self.model.eval()
        out = self.model(self.as_tensor(X))
        self.model.train(was_training)
        return out.cpu()

    @torch.no_grad()
    def evaluate(self, X: ArrayLike, y: ArrayLike, prefix: str = "") -> dict[str, float]:
        """Loss and metrics in eval mode: {prefix+'loss': ..., prefix+name: ...}."""
        was_training = self.model.training
        self.model.eval()
        X, y = self.as_tensor(X), self.as_tensor(y, target=True)
        pred = self.model(X)
        out = {f"{prefix}loss": self.loss_fn(pred, y).item()}
        for name, fn in self.metrics.items():
            out[f"{prefix}{name}"] = fn(pred, y)
        self.model.train(was_training)
        return out
