"""Proximal Policy Optimization, actor-critic (Schulman et al. 2017, arXiv:1707.06347), top to bottom.

The course's reinforcement column in three steps:
  1. the function: an actor π_θ(a|s) and a critic V_θ(s) (nets/actor_critic.py);
  2. the loss: the clipped surrogate objective (the trust region, measured by a KL divergence) for
     the actor, MSE for the critic, minus an entropy bonus;
  3. the minimizer: Adam on minibatches of the latest rollout, several epochs, gradients clipped.

The loop, in the order a lecture tells it:
  for each update:
    anneal the learning rate
    collect a rollout of T steps in N environments with the current policy   (rollout.py)
    compute advantages A_t by GAE(λ) and returns R_t = A_t + V(s_t)          (gae.py)
    for each epoch: for each minibatch of the shuffled rollout:
        ratio r_t(θ) = π_θ(a_t|s_t) / π_old(a_t|s_t)  — with the STORED a_t and log π_old
        loss = −L^CLIP + vf_coef · MSE(V, R) − ent_coef · entropy
        approximate KL(π_old ‖ π_θ), optional early stop at target_kl
        one Adam step with the gradient norm clipped
    log the diagnostics: approx KL, clip fraction, explained variance, entropy, losses, episodes

Batch names follow CleanRL: `b_` for the flattened rollout, `mb_` for a minibatch.

Given the run's `Checkpoints`, the loop is one stage of it ("ppo", see `dlconcepts.checkpoints`): after
an update it may save the policy, Adam, the update index, the collector (its environments' own state,
the normalizer and reward-scaler statistics, the episodes so far) and the callback's state; a resumed
run continues from that update to the same last bit as a run that never stopped (tests/rl/test_ppo_resume.py).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

import torch
from gymnasium.vector import VectorEnv
from torch import Tensor

from dlconcepts.checkpoints import Checkpoints
from dlconcepts.errors import ConfigError, TrainingDiverged
from dlconcepts.nets.actor_critic import ActorCritic
from dlconcepts.rl.envs import saved_field_names, space_info
from dlconcepts.rl.gae import gae
from dlconcepts.rl.normalization import ObservationNormalizer, RewardScaler
from dlconcepts.rl.rollout import EpisodeLog, RolloutBuffer, RolloutCollector

# ==== the hyperparameters ========================================================================


@dataclass(frozen=True)
class PPOConfig:
    """PPO's hyperparameters. Each docstring gives the meaning, and the pitfall where there is one."""

    n_steps: int = 128
    """Steps per environment per rollout (T); a rollout holds T·N transitions. Too short and GAE
    leans on the critic's guesses; too long and the policy changes rarely."""
    n_epochs: int = 10
    """Passes over each rollout. More epochs reuse data harder; watch approx_kl and clip fraction."""
    minibatch_size: int = 256
    """Transitions per gradient step. Must divide T·N, so that every transition is used equally
    often (a remainder minibatch would be tiny and noisy)."""
    lr: float = 2.5e-4
    """Adam's learning rate at the start."""
    anneal_lr: bool = True
    """Decrease the learning rate linearly to 0 over the run (stabilizes the end of training)."""
    gamma: float = 0.99
    """Discount factor γ: a reward k steps ahead counts γ^k. Horizon ≈ 1/(1 − γ) steps."""
    gae_lambda: float = 0.95
    """GAE's λ: 0 = one-step TD advantage (biased, low variance), 1 = Monte-Carlo (unbiased, noisy)."""
    clip_range: float = 0.2
    """PPO's ε: the ratio is clipped to [1 − ε, 1 + ε] (the trust region)."""
    anneal_clip: bool = False
    """Decrease ε linearly to 0 with the learning rate (as the RL-Zoo does for CartPole)."""
    clip_value: float = 0.0
    """Clip the new value to old ± this before the MSE (0 = off). Only meaningful when returns are
    of order 1 (reward scaling); on raw returns of hundreds it freezes the critic."""
    vf_coef: float = 0.5
    """Weight of the critic's MSE in the total loss (matters most with a shared trunk)."""
    ent_coef: float = 0.0
    """Weight of the entropy bonus, which keeps the policy from collapsing to one action too soon."""
    max_grad_norm: float = 0.5
    """Clip the global gradient norm to this (0 = off)."""
    target_kl: float = 0.0
    """Stop the update's remaining minibatches once approx_kl exceeds this (0 = never stop)."""
    normalize_advantage: bool = True
    """Standardize the advantages within each minibatch (skipped for a minibatch of one sample,
    whose standard deviation is undefined)."""
    bootstrap_truncation: bool = True
    """Add γ·V(final observation) when a time limit cuts an episode. False reproduces the common
    fault of treating a time limit like a termination (kept for tests and teaching)."""
    adam_eps: float = 1e-5
    """Adam's ε; 1e-5 as in the reference PPO implementations (the default 1e-8 is less stable)."""

    def check(self, num_envs: int) -> None:
        """Refuse settings that would fail or mislead silently, naming the fix."""
        rollout = self.n_steps * num_envs
        if self.minibatch_size > rollout:
            raise ConfigError(
                f"minibatch_size={self.minibatch_size} is larger than the rollout ({self.n_steps} steps × {num_envs} "
                f"envs = {rollout}); use a minibatch_size that divides {rollout}"
            )
        if rollout % self.minibatch_size:
            divisors = [d for d in range(1, rollout + 1) if rollout % d == 0 and d >= 8]
            raise ConfigError(
                f"minibatch_size={self.minibatch_size} does not divide the rollout ({self.n_steps} steps × {num_envs} "
                f"envs = {rollout}); some transitions would be used less often than others. Use one of "
                f"{', '.join(map(str, divisors[:12]))}"
            )
        if not 0 < self.gamma <= 1 or not 0 <= self.gae_lambda <= 1:
            raise ConfigError(f"gamma={self.gamma} must be in (0, 1] and gae_lambda={self.gae_lambda} in [0, 1]")
        if self.clip_range <= 0:
            raise ConfigError(f"clip_range={self.clip_range} must be > 0 (PPO's trust region ε, typically 0.1–0.3)")


# ==== the loss, piece by piece ===================================================================


def _same_shape(a: Tensor, b: Tensor, what: str) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"{what}: shapes {tuple(a.shape)} and {tuple(b.shape)} differ and would broadcast silently; "
            "sum a Gaussian log-prob over the action dimensions and squeeze V(s) to shape (batch,)"
        )


def clipped_surrogate_loss(ratio: Tensor, advantages: Tensor, clip_range: float) -> Tensor:
    """−L^CLIP = −mean(min(r·A, clip(r, 1 − ε, 1 + ε)·A))  (PPO paper, eq. 7; negated to be minimized).

    The min makes the objective pessimistic: once the ratio has moved past 1 + ε in the direction the
    advantage rewards (r > 1 + ε with A > 0, or r < 1 − ε with A < 0), the clipped term is the
    smaller one, it is constant in θ, and that sample's gradient is exactly zero — no incentive to
    move the policy further from the one that collected the data."""
    _same_shape(ratio, advantages, "ratio and advantages")
    unclipped = ratio * advantages
    clipped = ratio.clamp(1.0 - clip_range, 1.0 + clip_range) * advantages
    return -torch.min(unclipped, clipped).mean()


def value_loss(values: Tensor, returns: Tensor, old_values: Tensor | None = None, clip_value: float = 0.0) -> Tensor:
    """MSE(V, R); with `clip_value` > 0, the max of it and the MSE of V clipped to old_V ± clip_value
    (the value clipping of the PPO reference implementation; Engstrom et al. 2020 found it rarely helps)."""
    _same_shape(values, returns, "values and returns")
    squared = (values - returns).square()
    if clip_value > 0 and old_values is not None:
        clipped = old_values + (values - old_values).clamp(-clip_value, clip_value)
        squared = torch.max(squared, (clipped - returns).square())
    return squared.mean()


def approx_kl(log_ratio: Tensor) -> Tensor:
    """KL(π_old ‖ π_θ) ≈ mean((r − 1) − log r), r = π_θ/π_old, over samples drawn from π_old.

    The "k3" estimator (J. Schulman, "Approximating KL Divergence", 2020): unbiased, and ≥ 0 for every
    sample, unlike the naive mean(−log r). It measures how far the update has left the trust region."""
    return ((log_ratio.exp() - 1.0) - log_ratio).mean()


def normalize_advantages(advantages: Tensor) -> Tensor:
    """(A − mean)/(std + 1e-8) over the minibatch; a single sample is returned as is (its std is undefined)."""
    if advantages.numel() <= 1:
        return advantages
    return (advantages - advantages.mean()) / (advantages.std() + 1e-8)


def explained_variance(predicted: Tensor, target: Tensor) -> float:
    """1 − Var[R − V]/Var[R]: 1 = the critic predicts the returns perfectly, 0 = no better than their
    mean, < 0 = worse than predicting the mean. NaN when the returns do not vary."""
    var_target = target.var().item()
    return float("nan") if var_target == 0 else 1.0 - (target - predicted).var().item() / var_target


# ==== one update =================================================================================


@dataclass
class UpdateStats:
    """The diagnostics of one update: whether PPO is healthy, in numbers."""

    update: int
    env_steps: int
    seconds: float
    lr: float
    clip_range: float
    policy_loss: float
    value_loss: float
    entropy: float
    approx_kl: float
    clip_fraction: float
    explained_variance: float
    minibatches: int
    early_stopped: bool
    first_ratio_max_deviation: float  # max |r − 1| on the first minibatch of the first epoch: 0 up to rounding
    episodes: int
    episode_return_mean: float
    episode_length_mean: float
    log_std_mean: float
    reward_scale: float
    minibatch_kl: list[float] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def ppo_update(
    policy: ActorCritic,
    optimizer: torch.optim.Optimizer,
    batch: dict[str, Tensor],
    config: PPOConfig,
    clip_range: float,
) -> dict:
    """Several epochs of minibatch steps on one flattened rollout `batch` (b_obs, b_actions, ...)."""
    b_obs, b_actions = batch["obs"], batch["actions"]
    b_log_probs, b_values = batch["log_probs"], batch["values"]
    b_advantages, b_returns = batch["advantages"], batch["returns"]
    batch_size = len(b_obs)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    kls, clip_fractions, policy_losses, value_losses, entropies = [], [], [], [], []
    first_ratio_deviation = float("nan")
    early_stopped = False
    for epoch in range(config.n_epochs):
        order = torch.randperm(batch_size)
        for start in range(0, batch_size, config.minibatch_size):
            mb = order[start:start + config.minibatch_size]
            log_probs, entropy, values = policy.evaluate(b_obs[mb], b_actions[mb])
            log_ratio = log_probs - b_log_probs[mb]
            ratio = log_ratio.exp()  # r_t(θ), PPO eq. 6: the STORED actions under new vs old policy
            with torch.no_grad():
                kl = approx_kl(log_ratio).item()
                if epoch == 0 and start == 0:
                    # θ has not moved yet: π_θ = π_old on the stored actions, so r must be 1 (up to
                    # float rounding, where BLAS sums a minibatch in another order than the rollout's batch).
                    first_ratio_deviation = (ratio - 1.0).abs().max().item()
            kls.append(kl)
            if config.target_kl > 0 and kl > config.target_kl:
                early_stopped = True  # the policy has left the trust region: stop before stepping further
                break
            mb_advantages = b_advantages[mb]
            if config.normalize_advantage:
                mb_advantages = normalize_advantages(mb_advantages)
            pg_loss = clipped_surrogate_loss(ratio, mb_advantages, clip_range)
            v_loss = value_loss(values, b_returns[mb], b_values[mb], config.clip_value)
            entropy_mean = entropy.mean()
            loss = pg_loss + config.vf_coef * v_loss
            if config.ent_coef:  # (when 0, backward need not walk the entropy's graph)
                loss = loss - config.ent_coef * entropy_mean

            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm, foreach=True)
            optimizer.step()

            with torch.no_grad():
                clip_fractions.append(((ratio - 1.0).abs() > clip_range).float().mean().item())
            policy_losses.append(pg_loss.item())
            value_losses.append(v_loss.item())
            entropies.append(entropy_mean.item())
        if early_stopped:
            break

    def mean(values: list[float]) -> float:
        return sum(values) / len(values) if values else float("nan")

    return {
        "policy_loss": mean(policy_losses), "value_loss": mean(value_losses), "entropy": mean(entropies),
        "approx_kl": mean(kls), "clip_fraction": mean(clip_fractions), "minibatches": len(policy_losses),
        "early_stopped": early_stopped, "first_ratio_max_deviation": first_ratio_deviation, "minibatch_kl": kls,
    }


# ==== the training loop ==========================================================================


@dataclass
class TrainResult:
    """What training produced besides the policy's new weights."""

    history: list[UpdateStats]
    episodes: EpisodeLog
    env_steps: int
    seconds: float
    stopped_early: bool
    started_at: float  # time.perf_counter() when collection began; EpisodeLog.seconds count from here


Callback = Callable[[UpdateStats, EpisodeLog], bool]
"""Called after every update with its diagnostics and all finished episodes; return True to stop.
A callback with `state_dict()` and `load_state_dict(state)` methods has its state checkpointed too."""


def train_ppo(
    envs: VectorEnv,
    policy: ActorCritic,
    config: PPOConfig,
    total_steps: int,
    seed: int,
    obs_normalizer: ObservationNormalizer | None = None,
    reward_scaler: RewardScaler | None = None,
    callback: Callback | None = None,
    checkpoints: Checkpoints | None = None,
) -> TrainResult:
    """Train `policy` in place for at most `total_steps` environment steps (whole rollouts only).

    Seed torch before calling (it draws the actions); `seed` seeds the environments. On a CPU, run
    with `torch.set_num_threads(1)` (the labs do): these networks are too small to split across
    threads, and on a busy machine extra threads only wait for a core.

    `checkpoints`: the run's (`LabContext.checkpoints`); the loop saves after updates and, resumed,
    continues where it was saved. Only environments whose state `rl.envs` knows how to save are
    accepted then (refused at once, not at the first save)."""
    space = space_info(envs.single_observation_space, envs.single_action_space)
    config.check(envs.num_envs)
    batch_size = config.n_steps * envs.num_envs
    num_updates = total_steps // batch_size
    if num_updates < 1:
        raise ConfigError(
            f"total_steps={total_steps} is less than one rollout ({config.n_steps} steps × {envs.num_envs} envs "
            f"= {batch_size}); raise total_steps or shorten the rollout"
        )
    optimizer = torch.optim.Adam(policy.parameters(), lr=config.lr, eps=config.adam_eps, fused=True)
    buffer = RolloutBuffer(config.n_steps, envs.num_envs, space)
    collector = RolloutCollector(envs, policy, space, seed, obs_normalizer, reward_scaler, config.bootstrap_truncation)
    history: list[UpdateStats] = []
    stopped = finished = False
    stage = None
    if checkpoints is not None:
        saved_field_names(envs)  # refuse environments that cannot be saved now, not at the first save
        stage = checkpoints.stage("ppo", f"PPO, {num_updates} updates")
        if stage.saved is not None:
            stopped = _load_training_state(stage.saved.state, policy, optimizer, collector, history, callback)
            finished = stage.saved.finished
            stage.restore_rng()  # the action samples and minibatch orders go on as in the run that was stopped
        stage.enter()  # a SIGTERM / SIGINT from here on waits for the update's end and its checkpoint
    state = partial(_training_state, policy, optimizer, collector, history, callback)
    try:
        # len(history) updates are done (a resumed run's history holds the updates before the stop)
        for update in range(len(history), num_updates if not finished else 0):
            # -- linear annealing: the fraction of the run still ahead
            remaining = 1.0 - update / num_updates
            lr = config.lr * remaining if config.anneal_lr else config.lr
            for group in optimizer.param_groups:
                group["lr"] = lr
            clip_range = config.clip_range * remaining if config.anneal_clip else config.clip_range

            # -- rollout with the current (old) policy; log-probs and values stored under no_grad
            episodes_before = len(collector.episodes)
            collector.collect(buffer)

            # -- advantages and returns
            advantages, returns = gae(buffer.rewards, buffer.values, buffer.next_values, buffer.terminated,
                                      buffer.truncated, config.gamma, config.gae_lambda)

            # -- flatten (T, N, ...) to the batch b_ (every transition is one sample)
            batch = {
                "obs": buffer.obs.reshape(batch_size, -1),
                "actions": buffer.actions.reshape(batch_size, *buffer.actions.shape[2:]),
                "log_probs": buffer.log_probs.reshape(-1),
                "values": buffer.values.reshape(-1),
                "advantages": advantages.reshape(-1),
                "returns": returns.reshape(-1),
            }

            # -- the update
            stats = ppo_update(policy, optimizer, batch, config, clip_range)

            # -- diagnostics
            new_returns = collector.episodes.returns[episodes_before:]
            new_lengths = collector.episodes.lengths[episodes_before:]
            record = UpdateStats(
                update=update + 1,
                env_steps=collector.global_step,
                seconds=time.perf_counter() - collector.start_time,
                lr=lr,
                clip_range=clip_range,
                explained_variance=explained_variance(batch["values"], batch["returns"]),
                episodes=len(new_returns),
                episode_return_mean=sum(new_returns) / len(new_returns) if new_returns else math.nan,
                episode_length_mean=sum(new_lengths) / len(new_lengths) if new_lengths else math.nan,
                log_std_mean=policy.log_std.mean().item() if policy.log_std is not None else math.nan,
                reward_scale=reward_scaler.scale if reward_scaler is not None else 1.0,
                **stats,
            )
            history.append(record)
            if not math.isfinite(record.policy_loss) and record.minibatches:
                raise TrainingDiverged(
                    f"PPO diverged at update {update + 1}: the policy loss is {record.policy_loss}; lower lr or "
                    "turn on observation/reward normalization", update + 1)
            if callback is not None and callback(record, collector.episodes):
                stopped = True
                break
            if stage is not None:
                stage.epoch_end(update + 1, partial(state, stopped=False))
    finally:
        if stage is not None:
            stage.leave()
    if stage is not None and not finished:
        stage.finish(len(history), state(stopped=stopped))
    return TrainResult(history, collector.episodes, collector.global_step,
                       time.perf_counter() - collector.start_time, stopped, collector.start_time)


# ==== checkpoints ================================================================================


def _training_state(policy: ActorCritic, optimizer: torch.optim.Optimizer, collector: RolloutCollector,
                    history: list[UpdateStats], callback: Callback | None, stopped: bool) -> dict[str, Any]:
    """Everything the next update depends on besides the global RNG streams (which the stage saves)."""
    return {
        "updates": len(history),
        "stopped": stopped,
        "policy": policy.state_dict(),
        "optimizer": optimizer.state_dict(),
        "collector": collector.state(),
        "history": [record.as_dict() for record in history],
        "callback": callback.state_dict() if hasattr(callback, "state_dict") else None,
    }


def _load_training_state(state: dict[str, Any], policy: ActorCritic, optimizer: torch.optim.Optimizer,
                         collector: RolloutCollector, history: list[UpdateStats], callback: Callback | None) -> bool:
    """Put a saved state back (`history` is filled in place); returns whether the callback had stopped training."""
    policy.load_state_dict(state["policy"])
    optimizer.load_state_dict(state["optimizer"])
    collector.load_state(state["collector"])
    history[:] = [UpdateStats(**record) for record in state["history"]]
    if len(history) != state["updates"]:
        raise ValueError(f"checkpoint holds {len(history)} update records for {state['updates']} updates")
    if hasattr(callback, "load_state_dict"):
        callback.load_state_dict(state["callback"])
    return bool(state["stopped"])
