"""Step 3 for self-supervised learning — minimizers whose targets are the inputs themselves.

* The autoencoder minimizes the reconstruction error ‖x̂ − x‖² (per-pixel mean): it is the supervised
  `Trainer` with the images as their own targets (`fit_autoencoder`).
* Its linear baseline needs no training: PCA with k components is the best *linear* autoencoder with a
  code of k numbers (Eckart–Young; Baldi & Hornik 1989), so `pca_reconstruction_mse` gives the line a
  nonlinear autoencoder must beat, and a linear one can only approach from above.
* The VAE maximizes the evidence lower bound (Kingma & Welling, "Auto-Encoding Variational Bayes",
  ICLR 2014, eq. 3 and 10):

      log p(x) ≥ ELBO(x) = E_{q(z|x)}[log p(x|z)] − KL(q(z|x) ‖ N(0, I)),

  i.e. it minimizes the negative ELBO = reconstruction (−log p(x|z), summed over pixels, one sample
  z = μ + σ·ε per image) + KLD (closed form, summed over latent dimensions), averaged over the batch.
  The two parts are logged apart: the reconstruction says how well the code describes the image,
  the KLD how far the codes stray from the prior the samples are drawn from. `VAETrainer` optionally
  warms the KLD up, its weight β rising linearly from 1/W to 1 over the first W epochs (Bowman et al.
  2016, "Generating sentences from a continuous space"; Sønderby et al. 2016, "Ladder VAEs"), so the
  decoder first learns to use the code before the KLD pulls the codes together.
* `importance_weighted_nll` estimates −log p(x) with K samples (Burda, Grosse & Salakhutdinov 2016,
  "Importance Weighted Autoencoders", eq. 8): a bound at least as tight as the ELBO, tightening as K grows.

Every random draw (shuffling, ε) comes from a generator seeded by the caller, on the CPU, so a run
repeats exactly for a seed and gives the same draws on a CUDA device.

Under torchrun both loops are data parallel: the autoencoder through the `Trainer`, the VAE as the
Trainer does it — DistributedDataParallel around the model, the same permutation on every rank, each
rank every N-th image of each global batch (`distributed.rows_of_rank`), its mean loss weighted by its
share, the losses logged summed over the ranks. Every rank draws ε for the whole global batch from the
shared generator and keeps the rows of its own images, so N processes use the ε one process uses and
take the same steps (tests/test_distributed_labs.py: equal to 1e-10 in float64).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch
from torch import nn

from dlconcepts import distributed
from dlconcepts.checkpoints import Checkpoints
from dlconcepts.errors import TrainingDiverged
from dlconcepts.losses import (
    bernoulli_nll,
    gaussian_kl_to_standard_normal,
    gaussian_log_density,
    gaussian_nll,
    reconstruction_mse,
)
from dlconcepts.nets.autoencoder import VAE
from dlconcepts.train.callbacks import LRScheduler
from dlconcepts.train.optim import make_optimizer
from dlconcepts.train.trainer import History, Trainer, guarded_step, load_loop_state, local_loop_state, loop_state

LR_SCHEDULES = ("cosine", "constant")


def _cosine(epochs: int) -> LRScheduler:
    # One cosine from lr down to 0 over the run: large steps first, then fine ones that settle the codes.
    return LRScheduler(lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs))


# --- the autoencoder ------------------------------------------------------------------------------


def fit_autoencoder(
    model: nn.Module,
    train_images: Any,
    epochs: int,
    valid_images: Any | None = None,
    *,
    optimizer: str = "adam",
    lr: float = 1e-3,
    batch_size: int | None = 64,
    lr_schedule: str = "cosine",
    callbacks: Sequence[Any] = (),
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    seed: int = 0,
    checkpoints: Checkpoints | None = None,
) -> Trainer:
    """Minimize the per-pixel reconstruction MSE of `model` (images in, images out); returns the Trainer
    (its `history` holds train_loss / valid_loss per epoch, its `predict` the reconstructions)."""
    if lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule {lr_schedule!r} is not one of {', '.join(LR_SCHEDULES)}")
    schedule = [_cosine(epochs)] if lr_schedule == "cosine" else []
    trainer = Trainer(model, reconstruction_mse, optimizer, lr=lr, batch_size=batch_size,
                      callbacks=[*schedule, *callbacks], device=device, dtype=dtype, seed=seed, checkpoints=checkpoints)
    valid = None if valid_images is None else (valid_images, valid_images)
    trainer.fit(train_images, train_images, epochs, valid=valid)  # the targets are the inputs
    return trainer


def _dtype_of(model: nn.Module) -> torch.dtype:
    return next(model.parameters()).dtype


@torch.no_grad()
def encode_images(model: nn.Module, images: Any, device: str | torch.device = "cpu", batch: int = 4096) -> np.ndarray:
    """The codes of `images` in eval mode: z for an autoencoder, the mean μ of q(z|x) for a VAE."""
    was_training = model.training
    model.eval()
    x = torch.as_tensor(np.asarray(images), dtype=_dtype_of(model))
    codes = []
    for chunk in torch.split(x, batch):
        code = model.encode(chunk.to(device))
        codes.append((code[0] if isinstance(code, tuple) else code).cpu())
    model.train(was_training)
    return torch.cat(codes).numpy()


@torch.no_grad()
def decode_codes(model: nn.Module, codes: Any, device: str | torch.device = "cpu") -> np.ndarray:
    """Images for latent codes: the decoder's output, or for a VAE the mean image of p(x|z)."""
    was_training = model.training
    model.eval()
    z = torch.as_tensor(np.asarray(codes), dtype=_dtype_of(model), device=device)
    out = model.decode_mean(z) if isinstance(model, VAE) else model.decode(z)
    model.train(was_training)
    return out.cpu().numpy()


@torch.no_grad()
def reconstruct_images(model: nn.Module, images: Any, device: str | torch.device = "cpu") -> np.ndarray:
    """x̂ for `images` in eval mode: the autoencoder's output, or for a VAE the mean image of p(x|z = μ)."""
    was_training = model.training
    model.eval()
    x = torch.as_tensor(np.asarray(images), dtype=_dtype_of(model), device=device)
    out = model.decode_mean(model.encode(x)[0]) if isinstance(model, VAE) else model(x)
    model.train(was_training)
    return out.cpu().numpy()


@torch.no_grad()
def autoencoder_mse(model: nn.Module, images: Any, device: str | torch.device = "cpu", batch: int = 4096) -> float:
    """Mean over images and pixels of (x̂ − x)², in eval mode (a VAE reconstructs from z = μ)."""
    was_training = model.training
    model.eval()
    x = torch.as_tensor(np.asarray(images), dtype=_dtype_of(model))
    total = 0.0
    for chunk in torch.split(x, batch):
        chunk = chunk.to(device)
        if isinstance(model, VAE):
            recon = model.decode_mean(model.encode(chunk)[0])
        else:
            recon = model(chunk)
        total += reconstruction_mse(recon, chunk, "sum").item()
    model.train(was_training)
    return total / len(x)


# --- PCA, the best linear autoencoder -------------------------------------------------------------


def fit_pca(train_flat: np.ndarray, components: int) -> Any:
    """scikit-learn's PCA with `components` directions, fitted on the training rows only (float64, exact:
    the covariance's eigendecomposition, fast when rows ≫ pixels). `.transform` encodes,
    `.inverse_transform` decodes: x̂ = m + (x − m) V_kᵀ V_k."""
    from sklearn.decomposition import PCA
    from threadpoolctl import threadpool_limits  # installed with scikit-learn

    train = np.asarray(train_flat, dtype=np.float64)
    if components > min(train.shape):
        raise ValueError(f"PCA with {components} components needs at least that many rows and pixels; got {train.shape}")
    # NumPy's BLAS gets as many threads as torch has for this run: measured on a busy 2-core machine, the
    # 784×784 eigendecomposition took 2–5 s with OpenBLAS's 2 spinning threads and 0.1 s with one.
    with threadpool_limits(limits=torch.get_num_threads(), user_api="blas"):
        return PCA(n_components=components, svd_solver="covariance_eigh").fit(train)


def pca_reconstruct(pca: Any, flat: np.ndarray, k: int) -> np.ndarray:
    """x̂ = m + (x − m) V_kᵀ V_k: rows of `flat` rebuilt from their first k principal components (k ≤ the fit's).

    The components are nested, so one fit with the largest k serves every smaller k."""
    if k > pca.n_components_:
        raise ValueError(f"this PCA has {pca.n_components_} components; {k} were asked for")
    basis = pca.components_[:k]
    return pca.mean_ + (np.asarray(flat, dtype=np.float64) - pca.mean_) @ basis.T @ basis


def pca_reconstruction_mse(pca: Any, flat: np.ndarray, components: Sequence[int]) -> dict[int, float]:
    """Per-pixel MSE of the PCA reconstructions of `flat` with k components, for each k in `components`.

    On the rows PCA was fitted to, this is the least any linear encoder–decoder pair with a k-number
    code can reach: (1/D) Σ_{j>k} λ_j, the discarded eigenvalues of the covariance (Eckart–Young).
    """
    flat = np.asarray(flat, dtype=np.float64)
    return {int(k): float(np.mean((pca_reconstruct(pca, flat, k) - flat) ** 2)) for k in components}


# --- the VAE's objective --------------------------------------------------------------------------


@dataclass
class ElboTerms:
    """The two parts of the negative ELBO, one value per image (nats): −log p(x|z) and KL(q(z|x) ‖ p(z))."""

    reconstruction: torch.Tensor
    kl: torch.Tensor

    @property
    def negative_elbo(self) -> torch.Tensor:
        """−ELBO per image = reconstruction + KL (Kingma & Welling 2014, eq. 10 with the KL of appendix B)."""
        return self.reconstruction + self.kl

    def loss(self, kl_weight: float = 1.0) -> torch.Tensor:
        """The minimized objective: mean over the batch of reconstruction + β·KL (β = 1 is the −ELBO)."""
        return (self.reconstruction + kl_weight * self.kl).mean()


def reconstruction_nll(model: VAE, decoded: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """−log p(x|z) per image for the model's decoder: Bernoulli (decoded = logits) or Gaussian (means)."""
    if model.likelihood == "bernoulli":
        return bernoulli_nll(decoded, x, "none")
    return gaussian_nll(decoded, x, model.sigma, "none")


def elbo_terms(model: VAE, x: torch.Tensor, eps: torch.Tensor, forward: nn.Module | None = None) -> ElboTerms:
    """One-sample ELBO parts for images x with the noise ε given: z = μ + σ·ε, −log p(x|z), KL in closed form.

    `forward` is the module to call instead of `model` itself (data parallel: the DistributedDataParallel
    wrapper, whose backward averages the gradients over the ranks); `model` still says the likelihood."""
    out = (model if forward is None else forward)(x, eps)
    return ElboTerms(
        reconstruction=reconstruction_nll(model, out.decoded, x),
        kl=gaussian_kl_to_standard_normal(out.mu, out.log_var, "none"),
    )


def kl_warmup_weight(epoch: int, warmup_epochs: int) -> float:
    """β for 1-based `epoch`: e / W during the first W epochs, then 1; always 1 when W = 0 (no warm-up)."""
    if epoch < 1:
        raise ValueError(f"epochs count from 1; got {epoch}")
    if warmup_epochs <= 0:
        return 1.0
    return min(1.0, epoch / warmup_epochs)


@torch.no_grad()
def importance_weighted_nll(model: VAE, x: torch.Tensor, samples: int, generator: torch.Generator,
                            max_rows: int = 65536) -> torch.Tensor:
    """−log p(x) per image, estimated with K = `samples` draws z_k ~ q(z|x) (Burda et al. 2016, eq. 8):

        log p(x) ≈ log (1/K) Σ_k p(x|z_k) p(z_k) / q(z_k|x)

    computed with logsumexp. Its expectation is a lower bound on log p(x) at least as tight as the
    ELBO (K = 1 is the ELBO with a Monte Carlo KL), and it tends to log p(x) as K grows. At most
    `max_rows` images are decoded at once (images × draws), so memory stays bounded for any K.
    """
    if samples < 1:
        raise ValueError(f"samples must be >= 1; got {samples}")
    was_training = model.training
    model.eval()
    images_per_batch = max(1, min(len(x), max_rows))
    out = []
    for xb in torch.split(x, images_per_batch):
        mu, log_var = model.encode(xb)
        draws_per_chunk = max(1, max_rows // len(xb))
        log_weights = []
        for start in range(0, samples, draws_per_chunk):
            k = min(draws_per_chunk, samples - start)
            eps = torch.randn((k, *mu.shape), generator=generator, dtype=mu.dtype).to(mu.device)
            z = mu + torch.exp(0.5 * log_var) * eps  # [k, n, latent]
            decoded = model.decode(z.reshape(-1, mu.shape[-1]))
            x_rep = xb.unsqueeze(0).expand(k, *xb.shape).reshape(-1, *xb.shape[1:])
            log_px_z = -reconstruction_nll(model, decoded, x_rep).reshape(k, -1)
            log_pz = gaussian_log_density(z, torch.zeros_like(z), torch.zeros_like(z))
            log_qz = gaussian_log_density(z, mu.expand_as(z), log_var.expand_as(z))
            log_weights.append(log_px_z + log_pz - log_qz)
        log_w = torch.cat(log_weights)  # [K, n]
        out.append(-(torch.logsumexp(log_w, dim=0) - math.log(samples)))
    model.train(was_training)
    return torch.cat(out)


# --- the VAE's loop -------------------------------------------------------------------------------


class VAETrainer:
    """Minimize the negative ELBO of a `VAE` by mini-batch gradient descent, its parts logged apart.

    Per epoch the history holds `kl_weight` (β), `train_loss` (the minimized mean of reconstruction +
    β·KL), `train_reconstruction`, `train_kl`, `train_neg_elbo` (β = 1), and with validation images
    `valid_reconstruction`, `valid_kl`, `valid_neg_elbo` and `valid_loss` (= valid_neg_elbo, so
    `EarlyStopping` works as for the Trainer). All values are nats per image, averaged over images.
    Validation uses the same seeded ε every epoch, so its curve moves only when the model does.

    Pitfall: with β < 1 the training loss is not the −ELBO; compare models by `*_neg_elbo`.

    `group`: the process group to train data parallel in (default: the one this process joined under
    torchrun, `distributed.current()`); N processes take the steps one process takes with the same batches.
    """

    def __init__(
        self,
        model: VAE,
        optimizer: str = "adam",
        *,
        lr: float = 1e-3,
        batch_size: int | None = 64,
        warmup_epochs: int = 0,
        lr_schedule: str = "cosine",
        callbacks: Sequence[Any] = (),
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
        seed: int = 0,
        group: distributed.Group | None = None,
        checkpoints: Checkpoints | None = None,
    ):
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 or None for full batch; got {batch_size}")
        if lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule {lr_schedule!r} is not one of {', '.join(LR_SCHEDULES)}")
        if warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be >= 0; got {warmup_epochs}")
        self.device = torch.device(device)
        self.dtype = dtype or torch.get_default_dtype()
        self.model = model.to(device=self.device, dtype=self.dtype)
        self.group = group if group is not None else distributed.current()
        # The module the training steps call; `self.model` stays the plain VAE (evaluation, state_dict).
        self.forward_module: nn.Module = self.model
        if self.group.distributed:
            self.model, self.forward_module = distributed.data_parallel(self.model, self.device, self.group)
        self.optimizer = make_optimizer(optimizer, self.model.parameters(), lr=lr)
        self.batch_size = batch_size
        self.warmup_epochs = warmup_epochs
        self.lr_schedule = lr_schedule
        self.callbacks = list(callbacks)
        self.seed = seed
        self.checkpoints = checkpoints if checkpoints is not None else Checkpoints.disabled()
        self.generator = torch.Generator().manual_seed(seed)  # shuffling and the training ε
        self.history = History()
        self.stop_training = False
        self.steps = 0

    def as_tensor(self, images: Any) -> torch.Tensor:
        t = images if isinstance(images, torch.Tensor) else torch.as_tensor(np.asarray(images))
        return t.to(self.device, self.dtype)

    def _noise(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randn(n, self.model.latent_dim, generator=generator, dtype=self.dtype).to(self.device)

    def fit(self, train_images: Any, epochs: int, valid_images: Any | None = None) -> History:
        """Train for up to `epochs` epochs (callbacks may stop earlier); returns the `History`."""
        if epochs < 1:
            raise ValueError(f"epochs must be >= 1; got {epochs}")
        X = self.as_tensor(train_images)
        Xv = None if valid_images is None else self.as_tensor(valid_images)
        self.history = History()
        self.stop_training = False
        callbacks = ([_cosine(epochs)] if self.lr_schedule == "cosine" else []) + self.callbacks
        params = [p.detach() for p in self.model.parameters()]
        last_good = [p.clone() for p in params]
        for cb in callbacks:
            cb.on_fit_start(self)
        # One stage of the run's checkpoints, saved and resumed as the Trainer's are (ε comes from the
        # shuffling generator, so the loop state holds both streams).
        stage = self.checkpoints.stage("vae", f"VAE, {epochs} epochs")
        first_epoch, finished = 1, False
        if stage.saved is not None:
            first_epoch = load_loop_state(self, stage.saved, last_good, callbacks) + 1
            finished = stage.saved.finished
            stage.restore_rng()
        self.model.train()
        n = len(X)
        full_batch = self.batch_size is None or self.batch_size >= n
        if self.group.distributed and min(n, self.batch_size or n) < self.group.world_size:
            raise ValueError(f"{self.group.world_size} processes need batches of at least {self.group.world_size} images; "
                             f"got {min(n, self.batch_size or n)}")
        epoch = first_epoch - 1
        stage.enter()
        try:
            for epoch in range(first_epoch, 1 + (epochs if not finished else 0)):
                beta = kl_warmup_weight(epoch, self.warmup_epochs)
                order = None if full_batch else torch.randperm(n, generator=self.generator)
                sums = {"loss": 0.0, "reconstruction": 0.0, "kl": 0.0}
                for rows in (None,) if order is None else torch.split(order, self.batch_size):  # type: ignore[arg-type]
                    loss, value, reconstruction, kl = self._step_loss(X, rows, beta)
                    value = guarded_step(loss, self.optimizer, params, last_good, partial(self._diverged, epoch), value)
                    self.steps += 1
                    sums["loss"] += value * (n if rows is None else len(rows))
                    sums["reconstruction"] += reconstruction
                    sums["kl"] += kl
                logs: dict[str, float] = {"epoch": epoch, "kl_weight": beta, "train_loss": sums["loss"] / n,
                                          "train_reconstruction": sums["reconstruction"] / n, "train_kl": sums["kl"] / n}
                logs["train_neg_elbo"] = logs["train_reconstruction"] + logs["train_kl"]
                if Xv is not None:
                    logs.update(self.evaluate(Xv, prefix="valid_"))
                    logs["valid_loss"] = logs["valid_neg_elbo"]
                self.history.epochs.append(logs)
                for cb in callbacks:
                    cb.on_epoch_end(self, epoch, logs)
                if self.stop_training:
                    break
                stage.epoch_end(epoch, partial(loop_state, self, epoch, last_good, callbacks), partial(local_loop_state, None))
        finally:
            stage.leave()
            for cb in callbacks:
                cb.on_fit_end(self)
        if not finished:
            stage.finish(epoch, loop_state(self, epoch, last_good, callbacks))
        return self.history

    def _step_loss(self, X: torch.Tensor, rows: torch.Tensor | None, beta: float):
        """One global batch of images (`rows`; None = every image) as this rank sees it: the loss to
        backpropagate, the global batch's mean loss (None in one process: the loss itself is that), and
        the reconstruction and KL summed over the global batch's images."""
        n_global = len(X) if rows is None else len(rows)
        # ε for the whole global batch, on every rank, from the generator every rank shares: each rank keeps
        # the rows of ε that belong to its images, so N processes use exactly the ε one process uses.
        eps = self._noise(n_global, self.generator)
        if not self.group.distributed:
            terms = elbo_terms(self.model, X if rows is None else X[rows.to(self.device)], eps)
            return (terms.loss(beta), None, terms.reconstruction.detach().sum().item(),
                    terms.kl.detach().sum().item())
        everyone = torch.arange(n_global) if rows is None else rows
        mine = distributed.rows_of_rank(everyone, self.group)
        terms = elbo_terms(self.model, X[mine.to(self.device)], distributed.rows_of_rank(eps, self.group),
                           forward=self.forward_module)
        local = terms.loss(beta)
        # DDP averages the gradients over the ranks; weighting each rank's mean by its share of the global
        # batch makes that average the gradient of the global batch's mean, shares of unequal size included.
        share = len(mine) / n_global
        mine_summed = torch.stack([local.detach() * share, terms.reconstruction.detach().sum(), terms.kl.detach().sum()])
        value, reconstruction, kl = distributed.sum_over_ranks(mine_summed, self.group).tolist()
        return local * (share * self.group.world_size), value, reconstruction, kl

    def _diverged(self, epoch: int, value: float) -> None:
        self.history.stop_reason = f"diverged at epoch {epoch}"
        lr = self.optimizer.param_groups[0]["lr"]
        raise TrainingDiverged(
            f"the negative ELBO became {value} at epoch {epoch} (step {self.steps + 1}); training stopped and the "
            f"last weights with a finite loss were kept. Likely causes: a learning rate too high (lr={lr:g}: try "
            f"10× smaller) or, with a Gaussian decoder, a very small sigma",
            epoch=epoch,
        )

    @torch.no_grad()
    def evaluate(self, images: Any, prefix: str = "", samples: int = 1, seed: int | None = None) -> dict[str, float]:
        """Mean reconstruction, KL and −ELBO per image, in eval mode, averaged over `samples` seeded ε draws
        per image (the KL is exact; only the reconstruction term is a Monte Carlo estimate)."""
        was_training = self.model.training
        self.model.eval()
        X = self.as_tensor(images)
        generator = torch.Generator().manual_seed(self.seed + 1 if seed is None else seed)
        rec = kl = 0.0
        for _ in range(samples):
            terms = elbo_terms(self.model, X, self._noise(len(X), generator))
            rec += terms.reconstruction.sum().item()
            kl += terms.kl.sum().item()
        self.model.train(was_training)
        n = len(X) * samples
        return {f"{prefix}reconstruction": rec / n, f"{prefix}kl": kl / n, f"{prefix}neg_elbo": (rec + kl) / n}


__all__ = [
    "LR_SCHEDULES",
    "ElboTerms",
    "VAETrainer",
    "autoencoder_mse",
    "decode_codes",
    "elbo_terms",
    "encode_images",
    "fit_autoencoder",
    "importance_weighted_nll",
    "kl_warmup_weight",
    "fit_pca",
    "pca_reconstruct",
    "pca_reconstruction_mse",
    "reconstruct_images",
    "reconstruction_nll",
]
