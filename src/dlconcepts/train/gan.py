"""Step 3 for a GAN — the minimizer is a game: alternate a step of D up V(D, G) with a step of G down it.

Goodfellow et al. 2014, Algorithm 1, with one discriminator step per generator step (their k = 1):

    for each mini-batch x of real data:
        z ~ N(0, I);  D step: minimize −V = −E[log D(x)] − E[log(1 − D(G(z)))]      (G held fixed)
                      G step: minimize E[log(1 − D(G(z)))]   (minimax), or
                                        −E[log D(G(z))]      (non-saturating, the default; §3 of the paper)

Both losses are logged every epoch, with the two numbers that tell whether the game is healthy
(the DCGAN reference example prints them too): D(x), the mean probability D gives real data, and
D(G(z)), the one it gives fakes. At the game's equilibrium both are ½ (t/2 when D's target on real
data is smoothed to t; `losses.gan_equilibrium`). D(x) → 1 and D(G(z)) → 0 means D has won and the
minimax generator's gradient has vanished.

A fixed batch of noise, drawn once, is pushed through G at chosen epochs: the same z every time, so
a grid of those samples shows one generator learning rather than new random draws.

Seeding: all noise and the shuffling come from one `torch.Generator` on the CPU seeded with `seed`,
then moved to the device, so CPU and CUDA runs see the same z and the same batches (dropout masks
come from each device's own generator, and the game amplifies rounding: long runs still drift apart).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from dlconcepts.checkpoints import Checkpoints, Saved

from dlconcepts.errors import TrainingDiverged
from dlconcepts.losses import GENERATOR_LOSSES, gan_discriminator_loss, gan_generator_loss, gan_value, r1_penalty

EpochHook = Callable[[int, nn.Module, nn.Module], dict[str, float]]


@dataclass
class GANHistory:
    """Per epoch (means over its steps): d_loss (−V, with label smoothing if any, without the R1
    term), g_loss, value (V(D, G) on the batches), d_real = mean D(x), d_fake = mean D(G(z)), r1 (when
    the penalty is on), plus whatever the epoch hook returned. `snapshots` maps epoch → G(fixed_noise) (epoch 0
    is the untrained generator)."""

    epochs: list[dict[str, float]] = field(default_factory=list)
    snapshots: dict[int, np.ndarray] = field(default_factory=dict)
    fixed_noise: torch.Tensor | None = None
    steps: int = 0
    averaged_generator: nn.Module | None = None

    def final_generator(self, generator: nn.Module) -> nn.Module:
        """The generator to sample from: the weight average when one was kept, else `generator` itself."""
        return self.averaged_generator if self.averaged_generator is not None else generator

    def __len__(self) -> int:
        return len(self.epochs)

    def column(self, name: str) -> list[float]:
        return [row[name] for row in self.epochs]


def sample_noise(n: int, latent_dim: int, generator: torch.Generator, device: torch.device | str = "cpu") -> torch.Tensor:
    """z ~ N(0, I) of shape [n, latent_dim], drawn on the CPU (same numbers on every device), then moved."""
    return torch.randn(n, latent_dim, generator=generator).to(device)


@torch.no_grad()
def generate(generator: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """G(z) in eval mode (batch norm uses its running statistics, so one sample does not depend on the
    others in its batch), on the CPU; the generator's mode is restored afterwards."""
    was_training = generator.training
    generator.eval()
    out = generator(z).cpu()
    generator.train(was_training)
    return out


def train_gan(
    generator: nn.Module,
    discriminator: nn.Module,
    data: np.ndarray | torch.Tensor,
    *,
    latent_dim: int,
    epochs: int,
    batch_size: int = 64,
    lr_d: float = 2e-4,
    lr_g: float = 2e-4,
    betas: tuple[float, float] = (0.5, 0.999),
    generator_loss: str = "non-saturating",
    real_target: float = 1.0,
    r1_weight: float = 0.0,
    average_decay: float = 0.0,
    lr_decay_from: float = 1.0,
    fixed_noise_size: int = 64,
    snapshot_epochs: Sequence[int] = (),
    on_epoch_end: EpochHook | None = None,
    callbacks: Sequence[Any] = (),
    device: torch.device | str = "cpu",
    seed: int = 0,
    checkpoints: Checkpoints | None = None,
    hook_generators: Sequence[torch.Generator] = (),
) -> GANHistory:
    """Train G and D on `data` (real examples along the first axis) for `epochs` passes.

    Args:
        latent_dim: size of z; must match the generator's input.
        batch_size: real examples per step (shuffled, full batches only — a last batch of 1 would
            break batch norm — unless the data are fewer than one batch).
        lr_d, lr_g, betas: Adam for each player; β1 = 0.5 as in DCGAN (Radford et al. 2016, §4: the
            default 0.9 "resulted in training oscillation and instability").
        generator_loss: 'non-saturating' or 'minimax' (see `dlconcepts.losses`).
        real_target: 1.0, or < 1 for one-sided label smoothing of D's real targets.
        r1_weight: γ > 0 adds (γ/2)·E‖∇_x a(x)‖² on real data to D's loss (`losses.r1_penalty`):
            a D that stays flat on the data lets the game converge instead of circling. 0 = off.
        average_decay: β > 0 keeps an exponential moving average of G's weights, θ̄ ← β θ̄ + (1 − β) θ
            after every step (Yazıcı et al. 2019, "The unusual effectiveness of averaging in GAN
            training"): the live G circles around the equilibrium of the game, the average sits
            nearer to it. Snapshots and `on_epoch_end` then see the averaged G. 0 = no average.
        lr_decay_from: after this share of the epochs both learning rates fall linearly towards 0
            (the schedule of Zhu et al. 2017, CycleGAN, §4): with shrinking steps the players stop
            circling and settle. 1.0 = constant rates.
        snapshot_epochs: epochs after which G(fixed_noise) is kept (0 = before training).
        on_epoch_end: f(epoch, G, D) -> {name: value}, merged into that epoch's log (e.g. a JSD estimate).
        callbacks: objects with on_fit_start(trainer), on_epoch_end(trainer, epoch, logs),
            on_fit_end(trainer) — e.g. `ProgressBar`; they receive None as the trainer.
        seed: seeds the noise, the fixed noise and the shuffling (the nets are seeded where built).
        checkpoints: the run's checkpoints: the game is one stage of them — both players, both optimizers,
            the weight average, the noise stream, the history and snapshots are saved at epoch ends, and a
            resumed run plays on from there to the same weights.
        hook_generators: generators `on_epoch_end` draws from (a monitor's noise), saved with the game.
    Raises:
        TrainingDiverged: a loss became NaN or infinite.
    """
    if generator_loss not in GENERATOR_LOSSES:
        raise ValueError(f"generator_loss {generator_loss!r} is not one of {', '.join(GENERATOR_LOSSES)}")
    if epochs < 0 or batch_size < 1:
        raise ValueError(f"need epochs >= 0 and batch_size >= 1; got {epochs} and {batch_size}")
    if not 0.0 <= lr_decay_from <= 1.0:
        raise ValueError(f"lr_decay_from must be in [0, 1]; got {lr_decay_from}")
    if not 0.0 <= average_decay < 1.0:
        raise ValueError(f"average_decay must be in [0, 1); got {average_decay}")
    if r1_weight < 0:
        raise ValueError(f"r1_weight must be >= 0; got {r1_weight}")
    device = torch.device(device)
    real = torch.as_tensor(np.asarray(data) if not isinstance(data, torch.Tensor) else data, dtype=torch.float32).to(device)
    if len(real) == 0:
        raise ValueError("train_gan needs at least one real example")
    generator.to(device).train()
    discriminator.to(device).train()
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=lr_d, betas=betas)
    opt_g = torch.optim.Adam(generator.parameters(), lr=lr_g, betas=betas)

    rng = torch.Generator().manual_seed(seed)
    history = GANHistory()
    if average_decay > 0:
        history.averaged_generator = copy.deepcopy(generator).requires_grad_(False)
    sampler = history.final_generator(generator)
    # The fixed noise has a stream of its own, so changing the batch size or the epochs leaves it unchanged.
    history.fixed_noise = sample_noise(fixed_noise_size, latent_dim, torch.Generator().manual_seed(seed + 7919), "cpu")
    fixed_noise = history.fixed_noise.to(device)
    snapshot_at = set(snapshot_epochs)
    if 0 in snapshot_at:
        history.snapshots[0] = generate(sampler, fixed_noise).numpy()

    def check_finite(value: float, who: str, epoch: int) -> None:
        if not math.isfinite(value):
            raise TrainingDiverged(
                f"the {who} loss became {value} at epoch {epoch} (step {history.steps + 1}), before that step was "
                f"taken; try smaller learning rates (lr_d={lr_d:g}, lr_g={lr_g:g}) or an R1 penalty", epoch=epoch)

    n = len(real)
    per_step = min(batch_size, n)
    n_batches = max(1, n // per_step)
    names = ["d_loss", "g_loss", "value", "d_real", "d_fake"] + (["r1"] if r1_weight > 0 else [])
    players = {"generator": generator, "discriminator": discriminator, "opt_g": opt_g, "opt_d": opt_d,
               "average": history.averaged_generator}

    def state(epoch: int) -> dict[str, Any]:
        return {"epoch": epoch, "noise": rng.get_state(), "hooks": [g.get_state() for g in hook_generators],
                "epochs": history.epochs, "steps": history.steps,
                "snapshots": {k: torch.from_numpy(v) for k, v in history.snapshots.items()},
                **{name: part.state_dict() for name, part in players.items() if part is not None}}

    stage = (checkpoints or Checkpoints.disabled()).stage("gan", f"GAN, {epochs} epochs")
    first_epoch, finished = 1, False
    if stage.saved is not None:
        first_epoch, finished = _load_game(stage.saved, players, rng, hook_generators, history) + 1, stage.saved.finished
        stage.restore_rng()
    epoch = first_epoch - 1
    for cb in callbacks:
        cb.on_fit_start(None)
    stage.enter()
    try:
        for epoch in range(first_epoch, 1 + (epochs if not finished else 0)):
            scale = lr_scale(epoch, epochs, lr_decay_from)
            for opt, lr in ((opt_d, lr_d), (opt_g, lr_g)):
                for group in opt.param_groups:
                    group["lr"] = lr * scale
            order = torch.randperm(n, generator=rng).to(device)
            sums = dict.fromkeys(names, 0.0)
            for b in range(n_batches):
                x = real[order[b * per_step : (b + 1) * per_step]]
                z = sample_noise(len(x), latent_dim, rng, device)

                # -- D step: maximize V(D, G) = minimize −V, with G's samples as constants ----------
                fake = generator(z)
                if r1_weight > 0:
                    x = x.clone().requires_grad_(True)
                real_logits, fake_logits = discriminator(x), discriminator(fake.detach())
                d_loss = gan_discriminator_loss(real_logits, fake_logits, real_target)
                d_objective = d_loss
                if r1_weight > 0:
                    penalty = r1_penalty(real_logits, x)
                    d_objective = d_loss + 0.5 * r1_weight * penalty
                    sums["r1"] += penalty.item()
                d_value = d_objective.item()
                check_finite(d_value, "discriminator", epoch)
                opt_d.zero_grad(set_to_none=True)
                d_objective.backward()
                opt_d.step()

                # -- G step: move G(z) where the updated D calls it real ------------------------------
                g_loss = gan_generator_loss(discriminator(fake), generator_loss)
                g_value = g_loss.item()
                check_finite(g_value, "generator", epoch)
                opt_g.zero_grad(set_to_none=True)
                g_loss.backward()
                opt_g.step()
                history.steps += 1
                if history.averaged_generator is not None:
                    _update_average(history.averaged_generator, generator, average_decay)

                with torch.no_grad():
                    sums["d_loss"] += d_loss.item()
                    sums["g_loss"] += g_value
                    sums["value"] += gan_value(real_logits, fake_logits).item()
                    sums["d_real"] += torch.sigmoid(real_logits).mean().item()
                    sums["d_fake"] += torch.sigmoid(fake_logits).mean().item()
            logs: dict[str, float] = {"epoch": epoch, **{k: v / n_batches for k, v in sums.items()}}
            if on_epoch_end is not None:
                logs.update(on_epoch_end(epoch, sampler, discriminator))
            history.epochs.append(logs)
            if epoch in snapshot_at:
                history.snapshots[epoch] = generate(sampler, fixed_noise).numpy()
            for cb in callbacks:
                cb.on_epoch_end(None, epoch, logs)
            stage.epoch_end(epoch, lambda: state(epoch))
    finally:
        stage.leave()
        for cb in callbacks:
            cb.on_fit_end(None)
    if not finished:
        stage.finish(epoch, state(epoch))
    return history


def _load_game(saved: Saved, players: dict[str, Any], rng: torch.Generator, hook_generators: Sequence[torch.Generator],
               history: GANHistory) -> int:
    """Put a saved game back: players, optimizers, average, noise streams, history; returns its epoch."""
    state = saved.state
    for name, part in players.items():
        if part is not None:
            part.load_state_dict(state[name])
    rng.set_state(state["noise"])
    for g, g_state in zip(hook_generators, state["hooks"]):
        g.set_state(g_state)
    history.epochs = list(state["epochs"])
    history.steps = state["steps"]
    history.snapshots = {int(k): v.numpy() for k, v in state["snapshots"].items()}
    return state["epoch"]


def lr_scale(epoch: int, epochs: int, decay_from: float) -> float:
    """The learning-rate factor of `epoch` (1-based): 1 up to epoch ⌊decay_from·epochs⌋, then linear
    steps down to 1/(epochs − start + 1) in the last epoch."""
    start = int(decay_from * epochs)
    if epoch <= start:
        return 1.0
    return (epochs - epoch + 1) / (epochs - start + 1)


@torch.no_grad()
def _update_average(average: nn.Module, live: nn.Module, decay: float) -> None:
    average_params, live_params = list(average.parameters()), list(live.parameters())
    torch._foreach_lerp_(average_params, live_params, 1.0 - decay)  # θ̄ + (1 − β)(θ − θ̄) = β θ̄ + (1 − β) θ
    # Buffers (batch-norm running statistics) are not averaged: they describe the live G's activations.
    for avg_buffer, live_buffer in zip(average.buffers(), live.buffers()):
        avg_buffer.copy_(live_buffer)


def snapshot_schedule(epochs: int, count: int) -> list[int]:
    """`count` epochs spread over training, geometric (early change is fast), always 0 and the last."""
    if epochs <= 0:
        return [0]
    points = np.unique(np.round(np.geomspace(1, epochs, max(count - 1, 1))).astype(int))
    return [0, *[int(p) for p in points]]
