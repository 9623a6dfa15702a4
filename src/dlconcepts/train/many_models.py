"""Many models at once: R independent copies of one MLP trained in a single vectorized computation.

The course's "variance of the prediction error" notebook trains 300 small MLPs one after another.
Each step of such a model is a few tiny matrix products, so the loop spends its time in Python and
in per-call overhead, not in arithmetic. Here the R models are one `StackedMLP` whose parameters
have a leading model axis — W of shape (R, inputs, outputs), b of shape (R, 1, outputs) — and every
layer of every model is one batched matrix product, `baddbmm(b, H, W)`.

Each model still trains exactly as it would alone, because nothing in a step mixes models:
* the objective is the *sum* over models of each model's own mean loss, so ∂objective/∂θ_r is
  model r's own gradient (the other terms do not depend on θ_r);
* a batched product and the activations act on each model's slice separately;
* Adam and SGD (with L2 weight decay) update every number from its own gradient and its own
  state, so one optimizer over the stacked tensors is R optimizers, one per model.
(tests/train/test_many_models.py holds each model of a stack against the same model trained alone,
in float64.) Dropout draws its masks for the whole stack at once: per model they are as random as
alone, but not the same draws, so runs with dropout agree in distribution, not number for number.

Per-model data: `X` of shape (R, n, d) gives every model its own rows (its own random split);
(n, d) shares one table. Memory grows linearly with R, so R is cut into chunks that fit
`memory_budget_mb`, trained one after another.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dlconcepts import distributed
from dlconcepts.checkpoints import Checkpoints
from dlconcepts.nets.mlp import ACTIVATIONS

LOSSES = ("mse", "cross_entropy")
OPTIMIZERS = ("adam", "sgd")


class StackedMLP(nn.Module):
    """R MLPs of the same layer sizes as one module: `forward` maps (R, n, inputs) to (R, n, outputs).

    Layer i holds `weight{i}` of shape (R, inputs, outputs) — the transpose of `nn.Linear.weight`,
    so the forward product needs no transpose — and `bias{i}` of shape (R, 1, outputs).
    """

    def __init__(
        self, layer_sizes: Sequence[int], n_models: int, activation: str = "relu", dropout: float | Sequence[float] = 0.0
    ):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation {activation!r} is not one of {', '.join(ACTIVATIONS)}")
        self.layer_sizes = tuple(int(s) for s in layer_sizes)
        self.n_models = int(n_models)
        self.activation = activation
        n_hidden = len(self.layer_sizes) - 2
        rates = [float(dropout)] * n_hidden if isinstance(dropout, (int, float)) else [float(p) for p in dropout]
        if len(rates) != n_hidden or not all(0 <= p < 1 for p in rates):
            raise ValueError(f"dropout needs one rate in [0, 1) per hidden layer ({n_hidden}); got {dropout}")
        self.dropout: float | tuple[float, ...] = dropout if isinstance(dropout, (int, float)) else tuple(rates)
        self.dropout_rates = tuple(rates)
        self._act = ACTIVATIONS[activation]()
        for i, (fan_in, fan_out) in enumerate(zip(self.layer_sizes[:-1], self.layer_sizes[1:])):
            self.register_parameter(f"weight{i}", nn.Parameter(torch.zeros(n_models, fan_in, fan_out)))
            self.register_parameter(f"bias{i}", nn.Parameter(torch.zeros(n_models, 1, fan_out)))

    @property
    def n_layers(self) -> int:
        return len(self.layer_sizes) - 1

    def layer(self, i: int) -> tuple[nn.Parameter, nn.Parameter]:
        return getattr(self, f"weight{i}"), getattr(self, f"bias{i}")

    def weights(self) -> list[nn.Parameter]:
        return [self.layer(i)[0] for i in range(self.n_layers)]

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        """All models' outputs (R, n, outputs), through autograd; training uses `_gradients` instead."""
        H = self._stack_rows(X)
        for i in range(self.n_layers):
            W, b = self.layer(i)
            H = torch.baddbmm(b, H, W)
            if i < self.n_layers - 1:
                H = self._act(H)
                if self.dropout_rates[i] > 0:
                    H = F.dropout(H, self.dropout_rates[i], self.training)
        return H

    def _stack_rows(self, X: torch.Tensor) -> torch.Tensor:
        return X if X.dim() == 3 else X.unsqueeze(0).expand(self.n_models, *X.shape)

    # -- one training step's gradients, by hand --------------------------------------------------
    # Why not autograd: the weight gradient of the 200×150 layer for 300 models is a fresh 36 MB
    # tensor every step; so large a block is handed back to the OS when freed, and the page faults of
    # getting it again cost as much as the product itself (measured). Here every gradient is written
    # into the same `.grad` buffer each step. The rules are the chain rule of scratch/backprop.py,
    # batched over models; tests hold them against autograd in float64.
    @torch.no_grad()
    def _gradients(self, X: torch.Tensor, target: torch.Tensor, loss: str, l1: float = 0.0,
                   row_weights: torch.Tensor | None = None, l2: torch.Tensor | None = None) -> torch.Tensor:
        """Forward, each model's loss, and backward into every parameter's `.grad`; returns every row's
        loss (R, n) — model r's loss is their mean, or with `row_weights` (R, n) their weighted sum.

        `row_weights` (each model's summing to 1) choose the rows a model learns from; rows of weight 0
        are still predicted, so their losses serve as validation. `l2` (R, 1, 1) adds λ_r·W to the gradient
        of model r's weights (not biases): the gradient of (λ_r / 2)·‖W_r‖², torch's coupled weight decay.

        Every intermediate lives in a buffer kept from step to step (`_workspace`), so a step allocates
        almost nothing: on the CPU, fresh multi-megabyte tensors each step cost page faults and cache
        misses that showed up as a quarter of the step time (measured with the 300-model benchmark).
        """
        H = self._stack_rows(X)
        inputs, outputs, masks = [], [], []
        for i in range(self.n_layers):
            W, b = self.layer(i)
            inputs.append(H)
            Z = self._workspace(f"z{i}", (W.shape[0], H.shape[1], W.shape[2]), W)
            if W.shape[1] == 1:  # one input feature: an outer product, cheaper as a broadcast multiply-add
                torch.addcmul(b, H, W, out=Z)
            elif W.shape[2] <= NARROW:
                _narrow_forward(H, W, b, Z)
            else:
                torch.baddbmm(b, H, W, out=Z)
            if i == self.n_layers - 1:
                H = Z
                break
            A = _activation_in_place(self.activation, Z)
            outputs.append(A)
            p = self.dropout_rates[i]
            if p > 0 and self.training:
                mask = self._workspace(f"mask{i}", A.shape, A).bernoulli_(1 - p).div_(1 - p)  # inverted, as F.dropout
                masks.append(mask)
                H = torch.mul(A, mask, out=self._workspace(f"dropped{i}", A.shape, A))
            else:
                masks.append(None)
                H = A
        row_losses, G = _row_losses_and_gradient(H, target, loss, row_weights)
        for i in reversed(range(self.n_layers)):
            W, b = self.layer(i)
            for param in (W, b):
                if param.grad is None:
                    param.grad = torch.empty_like(param)
            # ∂L/∂W = inputᵀ·∂L/∂Z and ∂L/∂b = Σ_rows ∂L/∂Z, model by model in the batch.
            if W.shape[2] <= NARROW:
                _narrow_weight_gradient(inputs[i], G, W.grad)
            else:
                torch.bmm(inputs[i].transpose(1, 2), G, out=W.grad)
            torch.sum(G, dim=1, keepdim=True, out=b.grad)
            if l1:
                W.grad.add_(torch.sign(W), alpha=l1)
            if l2 is not None:
                W.grad.addcmul_(W, l2)
            if i == 0:
                break
            # ∂L/∂(input of layer i) = ∂L/∂Z·Wᵀ, then back through dropout and the activation below.
            G_in = self._workspace(f"g{i - 1}", outputs[i - 1].shape, W)
            G = _narrow_input_gradient(G, W, G_in) if W.shape[2] <= NARROW else torch.bmm(G, W.transpose(1, 2), out=G_in)
            if masks[i - 1] is not None:
                G.mul_(masks[i - 1])
            _through_activation(self.activation, G, outputs[i - 1])
        return row_losses

    def _workspace(self, name: str, shape: Sequence[int], like: torch.Tensor) -> torch.Tensor:
        """A buffer kept across steps (not a parameter, not in the state_dict), remade when its shape changes."""
        work = self.__dict__.setdefault("_work", {})
        buf = work.get(name)
        if buf is None or buf.shape != tuple(shape) or buf.dtype != like.dtype or buf.device != like.device:
            buf = work[name] = torch.empty(tuple(shape), dtype=like.dtype, device=like.device)
        return buf

    # -- to and from single models -------------------------------------------------------------
    @classmethod
    def from_models(
        cls, models: Sequence[nn.Sequential], activation: str = "relu", dropout: float | Sequence[float] = 0.0
    ) -> "StackedMLP":
        """Stack R models built by `nets.mlp` (same sizes) into one, copying their parameters."""
        linears = [[m for m in model if isinstance(m, nn.Linear)] for model in models]
        sizes = [linears[0][0].in_features] + [lin.out_features for lin in linears[0]]
        first = next(models[0].parameters())
        stacked = cls(sizes, len(models), activation, dropout).to(dtype=first.dtype, device=first.device)
        with torch.no_grad():
            for i in range(stacked.n_layers):
                W, b = stacked.layer(i)
                W.copy_(torch.stack([lin[i].weight.T for lin in linears]))
                b.copy_(torch.stack([lin[i].bias.unsqueeze(0) for lin in linears]))
        return stacked

    def model(self, r: int) -> nn.Sequential:
        """Model r alone, as the `nets.mlp` Sequential it would be (with dropout when one rate serves every layer)."""
        from dlconcepts.nets.mlp import mlp

        rate = self.dropout_rates[0] if self.dropout_rates and len(set(self.dropout_rates)) == 1 else 0.0
        single = mlp(self.layer_sizes, self.activation, rate).to(self.weight0.dtype)
        linears = [m for m in single if isinstance(m, nn.Linear)]
        with torch.no_grad():
            for i, lin in enumerate(linears):
                W, b = self.layer(i)
                lin.weight.copy_(W[r].T)
                lin.bias.copy_(b[r, 0])
        return single

    def select(self, rows: torch.Tensor | slice) -> "StackedMLP":
        """A new stack holding the chosen models (a copy)."""
        out = StackedMLP(self.layer_sizes, 0, self.activation, self.dropout)
        for name, p in self.named_parameters():
            setattr(out, name, nn.Parameter(p.detach()[rows].clone()))
        out.n_models = out.weight0.shape[0]
        return out


def seeded_models(layer_sizes: Sequence[int], seeds: Sequence[int], activation: str = "relu", dropout: float = 0.0,
                  init_std: float | None = None) -> list[nn.Sequential]:
    """One `nets.mlp` per seed, each initialized exactly as `torch.manual_seed(seed); mlp(...)` would be.

    `init_std` replaces PyTorch's default initialization by N(0, init_std²) for weights and biases
    (the course's "small initial weights" uses 0.002), drawn after the seed, model by model.
    """
    from dlconcepts.nets.mlp import mlp

    models = []
    for seed in seeds:
        torch.manual_seed(int(seed))
        model = mlp(layer_sizes, activation, dropout)
        if init_std is not None:
            with torch.no_grad():
                for p in model.parameters():
                    p.normal_(0.0, init_std)
        models.append(model)
    return models


@dataclass(frozen=True)
class ManySettings:
    """How the R models are trained; every model gets the same settings."""

    epochs: int
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0  # L2: the optimizer's weight_decay, added to every parameter's gradient
    l1: float = 0.0  # λ·Σ|w| over the weights (not biases) of each model, added to its loss
    patience: int = 0  # early stopping on each model's validation loss, best weights restored; 0 = off
    loss: str = "mse"
    memory_budget_mb: float = 2048.0  # the most memory the models being trained together may take
    # On the CPU, models are trained in chunks of about this much working memory even when the budget
    # allows more: a chunk whose parameters, gradients and Adam moments stay in the caches from epoch to
    # epoch trains faster (measured, 300 models 1→200→150→1, 2 cores: 17 ms per epoch of all 300 in
    # chunks of ~70 MB, 22–30 ms as one 270 MB stack). GPUs have no such caches: there only the budget cuts.
    cpu_chunk_mb: float = 70.0

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1; got {self.epochs}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer {self.optimizer!r} is not one of {', '.join(OPTIMIZERS)}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss {self.loss!r} is not one of {', '.join(LOSSES)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number; got {self.lr}")
        if self.weight_decay < 0 or self.l1 < 0 or self.patience < 0 or min(self.memory_budget_mb, self.cpu_chunk_mb) <= 0:
            raise ValueError("weight_decay, l1 and patience must be >= 0; memory_budget_mb and cpu_chunk_mb > 0")


@dataclass
class ManyResult:
    """What training R models gave. Loss curves are (epochs run, R), NaN after a model stopped."""

    model: StackedMLP
    train_loss: np.ndarray
    valid_loss: np.ndarray | None
    epochs_used: np.ndarray
    best_epoch: np.ndarray | None
    diverged_at: np.ndarray  # epoch of the first non-finite training loss, 0 if never
    chunks: int

    @property
    def diverged(self) -> np.ndarray:
        return self.diverged_at > 0

    @torch.no_grad()
    def predict(self, X: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Every model's outputs in eval mode (dropout off): (R, n, outputs)."""
        model = self.model.eval()
        X = torch.as_tensor(np.asarray(X) if not isinstance(X, torch.Tensor) else X, dtype=model.weight0.dtype)
        return model(X)


def bytes_per_model(layer_sizes: Sequence[int], n_train: int, n_valid: int, patience: int, dtype_bytes: int = 4) -> int:
    """A generous estimate of the memory one model of the stack needs while training.

    Parameters, gradients and two Adam moments (plus the best weights under early stopping), and
    per training row every layer's pre-activation, activation, dropout mask and their gradients.
    """
    n_params = sum(a * b + b for a, b in zip(layer_sizes[:-1], layer_sizes[1:]))
    widths = sum(layer_sizes[1:])
    floats = n_params * (5 if patience else 4) + 6 * n_train * widths + 2 * n_valid * max(layer_sizes)
    return int(floats * dtype_bytes * 1.25)


def chunk_size(n_models: int, per_model: int, memory_budget_mb: float) -> int:
    """How many models fit the budget at once (at least one)."""
    return max(1, min(n_models, int(memory_budget_mb * 2**20 // max(per_model, 1))))


def _with_model_axis(target: torch.Tensor, pred: torch.Tensor, loss: str) -> torch.Tensor:
    """Shared targets, (n, outputs) or (n,), broadcast to every model of the stack."""
    per_model_dims = pred.dim() if loss == "mse" else pred.dim() - 1
    return target.unsqueeze(0).expand(pred.shape[0], *target.shape) if target.dim() == per_model_dims - 1 else target


def _row_losses(pred: torch.Tensor, target: torch.Tensor, loss: str) -> torch.Tensor:
    """Every row's loss under every model: shape (R, n) (MSE averaged over the outputs)."""
    target = _with_model_axis(target, pred, loss)
    R = pred.shape[0]
    if loss == "mse":
        if pred.shape != target.shape:
            raise ValueError(f"predictions {list(pred.shape)} and targets {list(target.shape)} differ; reshape the targets")
        return ((pred - target) ** 2).mean(dim=2)
    _, n, classes = pred.shape
    return F.cross_entropy(pred.reshape(R * n, classes), target.reshape(R * n), reduction="none").view(R, n)


def _per_model_loss(pred: torch.Tensor, target: torch.Tensor, loss: str, row_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Each model's own loss over its rows: the mean, or the `row_weights`-weighted sum; shape (R,)."""
    return _reduce_rows(_row_losses(pred, target, loss), row_weights)


def _reduce_rows(row_losses: torch.Tensor, row_weights: torch.Tensor | None) -> torch.Tensor:
    return row_losses.mean(dim=1) if row_weights is None else (row_losses * row_weights).sum(dim=1)


# Layers with this many outputs or fewer (a regression's output layer, a binary classifier's) are
# computed one output column at a time with broadcast multiply-adds: batched matrix products with one
# to three columns run at ~2 GFLOP/s on the CPU, and the column-wise form of the forward, weight-gradient
# and input-gradient products took 185 µs instead of 835 µs for 20 models × 400 rows × 32 → 1 (measured).
NARROW = 3


def _narrow_forward(H: torch.Tensor, W: torch.Tensor, b: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """out = H·W + b for a W of few columns: out[..., j] = Σ_a H[..., a]·W[:, a, j] + b[..., j]."""
    for j in range(W.shape[2]):
        out[:, :, j] = torch.sum(H * W[:, :, j].unsqueeze(1), dim=2)
    return out.add_(b)


def _narrow_weight_gradient(H: torch.Tensor, G: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """out = Hᵀ·G for a G of few columns: out[:, a, j] = Σ_rows H[:, row, a]·G[:, row, j]."""
    for j in range(G.shape[2]):
        out[:, :, j] = torch.sum(H * G[:, :, j : j + 1], dim=1)
    return out


def _narrow_input_gradient(G: torch.Tensor, W: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """out = G·Wᵀ for a W of few columns: a sum of outer products, one per column."""
    torch.mul(G[:, :, 0:1], W[:, :, 0].unsqueeze(1), out=out)
    for j in range(1, W.shape[2]):
        out.addcmul_(G[:, :, j : j + 1], W[:, :, j].unsqueeze(1))
    return out


def _activation_in_place(activation: str, Z: torch.Tensor) -> torch.Tensor:
    """a = f(z), written over z (the backward pass needs only a)."""
    if activation == "relu":
        return Z.relu_()
    if activation == "tanh":
        return Z.tanh_()
    if activation == "sigmoid":
        return Z.sigmoid_()
    return Z


def _through_activation(activation: str, G: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
    """∂L/∂z = ∂L/∂a · f'(z), in place in G, with f'(z) written from a = f(z) (slides: σ' = σ(1 − σ))."""
    if activation == "relu":
        # G where a > 0, else 0: one pass, no mask tensor.
        return torch.ops.aten.threshold_backward.grad_input(G, A, 0.0, grad_input=G)
    if activation == "tanh":
        return G.mul_(1 - A * A)
    if activation == "sigmoid":
        return G.mul_(A * (1 - A))
    return G


def _row_losses_and_gradient(pred: torch.Tensor, target: torch.Tensor, loss: str,
                             row_weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Every row's loss (R, n) and the gradient of each model's loss with respect to its predictions
    (R, n, outputs); the model's loss is the mean of its rows, or their `row_weights`-weighted sum."""
    target = _with_model_axis(target, pred, loss)
    row_losses = _row_losses(pred, target, loss)
    R, n, outputs = pred.shape
    weights = (1.0 / n) if row_weights is None else row_weights.unsqueeze(2)
    if loss == "mse":
        return row_losses, (pred - target).mul_(2.0 / outputs).mul_(weights)  # d/dŷ of Σ w·mean (ŷ − y)²
    grad = torch.softmax(pred, dim=2)  # d/dlogits of the weighted cross-entropy: (softmax − one-hot)·w
    grad.scatter_add_(2, target.unsqueeze(2), torch.full((R, n, 1), -1.0, dtype=pred.dtype, device=pred.device))
    return row_losses, grad.mul_(weights)


def _make_optimizer(model: StackedMLP, settings: ManySettings) -> torch.optim.Optimizer:
    params = list(model.parameters())
    if settings.optimizer == "adam":
        return torch.optim.Adam(params, lr=settings.lr, weight_decay=settings.weight_decay, fused=True)
    return torch.optim.SGD(params, lr=settings.lr, weight_decay=settings.weight_decay, fused=True)


def _as_stack(data: torch.Tensor | np.ndarray, rows: slice, dtype: torch.dtype, device: torch.device, target: bool) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(data) if not isinstance(data, torch.Tensor) else data)
    t = t.to(device=device, dtype=torch.long if target and not t.is_floating_point() else dtype)
    per_model = t.dim() == (2 if target and not t.is_floating_point() else 3)
    return t[rows] if per_model else t


class _EarlyStopping:
    """Each model's early stopping: its best validation loss, the epoch and the weights it had then,
    and the epoch it stopped at after `patience` epochs without improvement (NaN never improves)."""

    def __init__(self, model: StackedMLP, patience: int):
        R = model.n_models
        self.patience = patience
        self.best = torch.full((R,), math.inf, dtype=torch.float64)
        self.best_epoch = torch.zeros(R, dtype=torch.long)
        self.wait = torch.zeros(R, dtype=torch.long)
        self.stopped_at = torch.zeros(R, dtype=torch.long)
        self.best_state = [p.detach().clone() for p in model.parameters()]

    def observe(self, epoch: int, valid: torch.Tensor, model: StackedMLP, index: torch.Tensor | None = None) -> None:
        """`valid` is the validation loss of the weights `model` holds now, after `epoch` steps; `index`
        says which of the models being tracked each model of `model` is (all of them, in order, by default)."""
        if index is None:
            index = torch.arange(len(self.best))
        active = self.stopped_at[index] == 0
        improved = active & torch.isfinite(valid) & (valid < self.best[index])
        chosen = index[improved]
        self.best[chosen] = valid[improved]
        self.best_epoch[chosen] = epoch
        self.wait[index[active]] += 1
        self.wait[chosen] = 0
        if improved.any():
            local = improved.nonzero().squeeze(1).to(model.weight0.device)
            with torch.no_grad():
                for saved, p in zip(self.best_state, model.parameters()):
                    saved[chosen.to(saved.device)] = p[local]
        done = index[active & (self.wait[index] >= self.patience)]
        self.stopped_at[done] = epoch

    @property
    def all_stopped(self) -> bool:
        return bool((self.stopped_at > 0).all())

    def restore(self, model: StackedMLP) -> None:
        with torch.no_grad():
            for saved, p in zip(self.best_state, model.parameters()):
                p.copy_(saved)


def _progress_bar(progress: bool, total: int, desc: str):
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False, unit="epoch")


def _loop_start(model: StackedMLP, settings: ManySettings, validating: bool, progress: bool, desc: str):
    """What every training loop starts with: the optimizer, the divergence record, early stopping, a progress bar."""
    stopping = _EarlyStopping(model, settings.patience) if settings.patience and validating else None
    return (_make_optimizer(model, settings), torch.zeros(model.n_models, dtype=torch.long), stopping,
            _progress_bar(progress, settings.epochs, desc))


def _train_chunk(model: StackedMLP, X, y, Xv, yv, l2, settings: ManySettings, progress: bool, desc: str):
    """The loop for one chunk of models; returns per-epoch losses and per-model bookkeeping."""
    optimizer, diverged_at, stopping, bar = _loop_start(model, settings, Xv is not None, progress, desc)
    train_rows, valid_rows = [], []
    model.train()
    for epoch in range(1, settings.epochs + 1):
        # The objective is Σ_r (L_r + l1·Σ|W_r|): each model's gradient is its own (module docstring).
        losses = model._gradients(X, y, settings.loss, settings.l1, l2=l2).mean(dim=1)
        optimizer.step()
        train = losses.to(torch.float64).cpu()
        diverged_at[(~torch.isfinite(train)) & (diverged_at == 0)] = epoch
        train_rows.append(train)
        if Xv is not None:
            model.eval()
            with torch.no_grad():
                valid = _per_model_loss(model(Xv), yv, settings.loss).to(torch.float64).cpu()
            model.train()
            valid_rows.append(valid)
            if stopping is not None:
                stopping.observe(epoch, valid, model)
        if bar is not None:
            bar.update(1)
        if stopping is not None and stopping.all_stopped:
            break
    if bar is not None:
        bar.close()
    return _chunk_outcome(model, train_rows, valid_rows, stopping, diverged_at)


def _train_chunk_on_masks(model: StackedMLP, X, y, train_weights, valid_weights, l2, settings: ManySettings,
                          progress: bool, desc: str):
    """The loop for one chunk of models that share one table and differ in the rows they learn from.

    One forward pass over all rows per epoch serves both: the training rows' losses (weighted by
    `train_weights`) drive the step, and the other rows' losses (`valid_weights`) are the validation
    loss of the weights *before* the step — so the validation of epoch e is read in the forward pass
    of epoch e + 1, and the last epoch's in one more forward pass after the loop. That saves the
    separate validation pass, a third of the work, and is exact because nothing in the forward pass
    is random (no dropout here).

    Models that have stopped leave the stack (`_without_stopped`) once a quarter of it has stopped:
    in a search over weight decays the strongly regularized models stop after tens of epochs and the
    weakly regularized ones after hundreds, so carrying the stopped ones along would waste ~40 % of
    the work (measured on a 400-row table). `index` maps the working stack's models to the chunk's.
    """
    R = model.n_models
    optimizer, diverged_at, stopping, bar = _loop_start(model, settings, valid_weights is not None, progress, desc)
    train_rows, valid_rows = [], []
    work, index = model.train(), torch.arange(R)

    def full(values: torch.Tensor) -> torch.Tensor:  # one value per model of the chunk, NaN for those gone
        out = torch.full((R,), math.nan, dtype=torch.float64)
        out[index] = values.to(torch.float64).cpu()
        return out

    stopped_early = False
    for epoch in range(1, settings.epochs + 1):
        row_losses = work._gradients(X, y, settings.loss, settings.l1, train_weights, l2)  # weights after epoch − 1
        if epoch > 1 and valid_weights is not None:
            valid = _reduce_rows(row_losses, valid_weights).to(torch.float64).cpu()
            valid_rows.append(full(valid))
            if stopping is not None:
                stopping.observe(epoch - 1, valid, work, index)
                if stopping.all_stopped:
                    stopped_early = True
                    break
        optimizer.step()
        train = _reduce_rows(row_losses, train_weights).to(torch.float64).cpu()
        newly = ~torch.isfinite(train) & (diverged_at[index] == 0)
        diverged_at[index[newly]] = epoch
        train_rows.append(full(train))
        if bar is not None:
            bar.update(1)
        if stopping is not None:
            running = (stopping.stopped_at[index] == 0).nonzero().squeeze(1)
            if len(running) <= 0.75 * len(index):
                work, optimizer = _without_stopped(work, optimizer, running, settings)
                keep = running.to(train_weights.device)
                index, train_weights, valid_weights = index[running], train_weights[keep], valid_weights[keep]
                l2 = None if l2 is None else l2[keep]
    if valid_weights is not None and not stopped_early:
        work.eval()
        with torch.no_grad():
            valid = _reduce_rows(_row_losses(work(X), y, settings.loss), valid_weights).to(torch.float64).cpu()
        valid_rows.append(full(valid))
        if stopping is not None:
            stopping.observe(len(train_rows), valid, work, index)
    if bar is not None:
        bar.close()
    if work is not model:  # the models that never stopped: their last weights, before the best are put back
        with torch.no_grad():
            for p, q in zip(model.parameters(), work.parameters()):
                p[index.to(p.device)] = q
    return _chunk_outcome(model, train_rows, valid_rows, stopping, diverged_at)


def _without_stopped(stack: StackedMLP, optimizer: torch.optim.Optimizer, keep: torch.Tensor, settings: ManySettings):
    """A smaller stack of the models `keep`, and an optimizer that goes on exactly where theirs was."""
    smaller = stack.select(keep.to(stack.weight0.device)).train()
    new_optimizer = _make_optimizer(smaller, settings)
    for old, new in zip(stack.parameters(), smaller.parameters()):
        state = optimizer.state.get(old, {})
        new_optimizer.state[new] = {
            key: (value[keep.to(value.device)].clone() if torch.is_tensor(value) and value.dim() > 0 else
                  value.clone() if torch.is_tensor(value) else value)
            for key, value in state.items()
        }
    return smaller, new_optimizer


def _chunk_outcome(model: StackedMLP, train_rows, valid_rows, stopping: _EarlyStopping | None, diverged_at):
    """Best weights put back; curves as (epochs, R) arrays with NaN after each model's stop."""
    epochs_run = len(train_rows)
    stopped_at = stopping.stopped_at if stopping is not None else torch.zeros_like(diverged_at)
    epochs_used = torch.where(stopped_at > 0, stopped_at, torch.full_like(stopped_at, epochs_run))
    if stopping is not None:
        stopping.restore(model)
    train_loss = torch.stack(train_rows).numpy()
    valid_loss = torch.stack(valid_rows).numpy() if valid_rows else None
    # A stopped model trained on in the batch, but its numbers after its stop are not its own.
    steps = np.arange(1, epochs_run + 1)[:, None]
    after_stop = steps > epochs_used.numpy()[None, :]
    train_loss[after_stop] = np.nan
    if valid_loss is not None:
        valid_loss[after_stop] = np.nan
    best_epoch = stopping.best_epoch.numpy() if stopping is not None else None
    return train_loss, valid_loss, epochs_used.numpy(), best_epoch, diverged_at.numpy()


@dataclass(frozen=True)
class RowMasks:
    """Which rows of one shared table each model learns from, and which validate it: (R, n) booleans.

    Model r minimizes the mean loss over the rows where `train[r]` is true; with `valid`, its
    validation loss is the mean over the rows where `valid[r]` is true (early stopping with
    `ManySettings.patience`). This is how the folds of a cross-validation train as one stack: every
    model sees the same table, and its fold decides which rows count.
    """

    train: np.ndarray
    valid: np.ndarray | None = None

    def __post_init__(self) -> None:
        for name, mask in (("train", self.train), ("valid", self.valid)):
            if mask is not None and (np.ndim(mask) != 2 or not np.asarray(mask).any(axis=1).all()):
                raise ValueError(f"RowMasks.{name} must be (models, rows) booleans with at least one row per model")

    def weights(self, rows: slice, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Each chosen model's masks as weights that sum to 1, so a weighted sum is the mean over its rows."""
        def normalized(mask: np.ndarray) -> torch.Tensor:
            m = torch.as_tensor(np.asarray(mask, dtype=np.float64)[rows])
            return (m / m.sum(dim=1, keepdim=True)).to(device=device, dtype=dtype)

        return normalized(self.train), None if self.valid is None else normalized(self.valid)


def train_many(
    initial: StackedMLP,
    X: torch.Tensor | np.ndarray,
    y: torch.Tensor | np.ndarray,
    settings: ManySettings,
    valid: tuple[torch.Tensor | np.ndarray, torch.Tensor | np.ndarray] | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    progress: bool = False,
    rows: RowMasks | None = None,
    l2: Sequence[float] | np.ndarray | None = None,
    group: distributed.Group | None = None,
    checkpoints: Checkpoints | None = None,
) -> ManyResult:
    """Train the R models of `initial` at once (a trained copy is returned; `initial` is left as it was),
    full batch, each on its own rows: X (R, n, d) or shared (n, d).

    Targets: (R, n, outputs) floats for "mse" (or shared (n, outputs)); (R, n) or (n,) class
    indices for "cross_entropy". `valid` has the same layout; with `settings.patience` each model
    stops on its own validation loss and gets its best weights back.

    `rows` (a shared table only) gives each model its own training and validation rows of that one
    table, in place of `valid`; `l2` gives each model its own L2 strength on its weights (not biases),
    on top of `settings.weight_decay`. Both are what a cross-validated search over weight decays needs.

    Under torchrun (`group`, by default the one this process joined) the R models are shared out: each
    rank trains its slice of them, and every rank gets all R back, in order, as one process would. A
    stack with dropout is not: its masks are drawn for the whole stack at once, so a slice would draw
    other masks than one process (and two ranks' slices the same ones); every rank trains it whole.

    With the run's `checkpoints`, the whole study is one stage of them, saved when it ends: a resumed run
    gets its trained models back instead of training them again. (Not at epoch ends: the models of a
    chunk stop on epochs of their own, and a study is seconds to a minute; a run stopped in one repeats it.)
    """
    stage = (checkpoints or Checkpoints.disabled()).stage("study", f"{initial.n_models} models")
    if stage.saved is not None:
        stage.restore_rng()
        return _result_from_state(stage.saved.state, initial)
    result = _train_many(initial, X, y, settings, valid, device, dtype, progress, rows, l2, group)
    stage.finish(int(result.epochs_used.max(initial=0)), _result_state(result))
    return result


def _result_state(result: ManyResult) -> dict:
    def tensor(a: np.ndarray | None):
        return None if a is None else torch.from_numpy(np.ascontiguousarray(a))

    return {"model": result.model.state_dict(), "train_loss": tensor(result.train_loss),
            "valid_loss": tensor(result.valid_loss), "epochs_used": tensor(result.epochs_used),
            "best_epoch": tensor(result.best_epoch), "diverged_at": tensor(result.diverged_at), "chunks": result.chunks}


def _result_from_state(state: dict, like: StackedMLP) -> ManyResult:
    model = StackedMLP(like.layer_sizes, 0, like.activation, like.dropout)
    for name, value in state["model"].items():
        setattr(model, name, nn.Parameter(value.clone()))
    model.n_models = model.weight0.shape[0]

    def array(t: torch.Tensor | None):
        return None if t is None else t.numpy()

    return ManyResult(model=model, train_loss=array(state["train_loss"]), valid_loss=array(state["valid_loss"]),
                      epochs_used=array(state["epochs_used"]), best_epoch=array(state["best_epoch"]),
                      diverged_at=array(state["diverged_at"]), chunks=state["chunks"])


def _train_many(initial: StackedMLP, X, y, settings: ManySettings, valid, device, dtype, progress: bool,
                rows: RowMasks | None, l2, group: distributed.Group | None) -> ManyResult:
    group = group if group is not None else distributed.current()
    if group.distributed and not any(initial.dropout_rates):
        return _train_slice_and_gather(initial, X, y, settings, valid, device, dtype, progress, rows, l2, group)
    device = torch.device(device)
    stack = initial
    R = stack.n_models
    if rows is not None:
        if valid is not None or np.ndim(X) != 2:
            raise ValueError("rows= selects rows of one shared (n, d) table and replaces valid=; pass one or the other")
        if np.shape(rows.train) != (R, X.shape[0]) or (rows.valid is not None and np.shape(rows.valid) != (R, X.shape[0])):
            raise ValueError(f"rows masks must have shape (models, rows) = ({R}, {X.shape[0]})")
        if any(stack.dropout_rates):
            raise ValueError("rows= reads validation losses from the training forward pass, which needs dropout off")
    if settings.patience and valid is None and (rows is None or rows.valid is None):
        raise ValueError("early stopping (patience > 0) needs validation data: pass valid=(X_valid, y_valid)")
    if l2 is not None and (np.shape(l2) != (R,) or np.min(l2) < 0):
        raise ValueError(f"l2 needs one strength >= 0 per model ({R})")
    n_train = (X.shape[1] if np.ndim(X) == 3 else X.shape[0])
    n_valid = 0 if valid is None else (valid[0].shape[1] if np.ndim(valid[0]) == 3 else valid[0].shape[0])
    dtype_bytes = torch.finfo(dtype).bits // 8
    budget = settings.memory_budget_mb
    if device.type == "cpu":
        budget = min(budget, settings.cpu_chunk_mb)
    per_chunk = chunk_size(R, bytes_per_model(stack.layer_sizes, n_train, n_valid, settings.patience, dtype_bytes), budget)
    pieces = []
    starts = list(range(0, R, per_chunk))
    for start in starts:
        chunk = slice(start, min(start + per_chunk, R))
        model = stack.select(chunk).to(device=device, dtype=dtype)
        Xc = _as_stack(X, chunk, dtype, device, target=False)
        yc = _as_stack(y, chunk, dtype, device, target=True)
        desc = f"{R} models" if len(starts) == 1 else f"models {chunk.start + 1}-{chunk.stop} of {R}"
        l2c = None if l2 is None else torch.as_tensor(np.asarray(l2, dtype=np.float64)[chunk]).to(device, dtype).view(-1, 1, 1)
        if rows is not None:
            train_weights, valid_weights = rows.weights(chunk, dtype, device)
            outcome = _train_chunk_on_masks(model, Xc, yc, train_weights, valid_weights, l2c, settings, progress, desc)
        else:
            Xv = yv = None
            if valid is not None:
                Xv = _as_stack(valid[0], chunk, dtype, device, target=False)
                yv = _as_stack(valid[1], chunk, dtype, device, target=True)
            outcome = _train_chunk(model, Xc, yc, Xv, yv, l2c, settings, progress, desc)
        pieces.append((model.cpu(), *outcome))
    return _join(pieces, stack)


def _train_slice_and_gather(initial: StackedMLP, X, y, settings: ManySettings, valid, device, dtype, progress: bool,
                            rows: RowMasks | None, l2, group: distributed.Group) -> ManyResult:
    """This rank's contiguous slice of the models, trained alone; then every rank's, gathered in rank
    order. A model's training never reads another model's numbers, so where it is trained changes nothing
    but the rounding of the stacked products."""
    mine = distributed.slice_of_rank(initial.n_models, group)
    local = None
    if mine.stop > mine.start:
        device = torch.device(device)

        def part(data, target: bool):
            return None if data is None else _as_stack(data, mine, dtype, device, target)

        local = train_many(
            initial.select(mine), part(X, False), part(y, True), settings,
            valid=None if valid is None else (part(valid[0], False), part(valid[1], True)), device=device,
            dtype=dtype, progress=progress and group.is_main,
            rows=None if rows is None else RowMasks(np.asarray(rows.train)[mine],
                                                     None if rows.valid is None else np.asarray(rows.valid)[mine]),
            l2=None if l2 is None else np.asarray(l2)[mine], group=distributed.SINGLE,
        )
        local.model = local.model.cpu()
    parts = [r for r in distributed.gather_objects(local, group) if r is not None]
    pieces = [(r.model, r.train_loss, r.valid_loss, r.epochs_used, r.best_epoch, r.diverged_at) for r in parts]
    joined = _join(pieces, initial)
    joined.chunks = sum(r.chunks for r in parts)
    return joined


def _join(pieces, like: StackedMLP) -> ManyResult:
    """Concatenate the chunks' models and histories along the model axis (curves padded with NaN)."""
    longest = max(p[1].shape[0] for p in pieces)

    def pad(a: np.ndarray) -> np.ndarray:
        return np.vstack([a, np.full((longest - a.shape[0], a.shape[1]), np.nan)]) if a.shape[0] < longest else a

    model = StackedMLP(like.layer_sizes, 0, like.activation, like.dropout)
    for name, _ in like.named_parameters():
        setattr(model, name, nn.Parameter(torch.cat([getattr(p[0], name).detach() for p in pieces])))
    model.n_models = model.weight0.shape[0]
    has_valid = pieces[0][2] is not None
    has_best = pieces[0][4] is not None
    return ManyResult(
        model=model,
        train_loss=np.hstack([pad(p[1]) for p in pieces]),
        valid_loss=np.hstack([pad(p[2]) for p in pieces]) if has_valid else None,
        epochs_used=np.concatenate([p[3] for p in pieces]),
        best_epoch=np.concatenate([p[4] for p in pieces]) if has_best else None,
        diverged_at=np.concatenate([p[5] for p in pieces]),
        chunks=len(pieces),
    )
