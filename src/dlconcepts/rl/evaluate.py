"""Deterministic evaluation: the policy's most likely action, on fresh episodes, statistics frozen.

Training returns are measured while the policy still explores (it samples its actions), and while it
changes; the evaluation return measures the policy itself. Each of the n episodes runs in its own
copy of the environment, all stepped together (one batched forward pass per step), each with its
own seed so that repeated evaluations of one run face the same starting states.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dlconcepts.nets.actor_critic import ActorCritic
from dlconcepts.rl.envs import EnvSource, make_vector_env, space_info
from dlconcepts.rl.normalization import ObservationNormalizer


@dataclass(frozen=True)
class Evaluation:
    returns: np.ndarray  # one undiscounted return per episode
    lengths: np.ndarray

    @property
    def mean(self) -> float:
        return float(self.returns.mean())

    @property
    def std(self) -> float:
        return float(self.returns.std())


def policy_action(policy: ActorCritic, obs: np.ndarray, obs_normalizer: ObservationNormalizer | None,
                  low: np.ndarray | None, high: np.ndarray | None) -> np.ndarray:
    """The deterministic action for raw observations (normalized with frozen statistics, clipped to the bounds)."""
    x = obs_normalizer(obs, update=False) if obs_normalizer is not None else np.asarray(obs, dtype=np.float32)
    with torch.no_grad():
        action = policy.deterministic_action(torch.from_numpy(x)).numpy()
    return np.clip(action, low, high) if low is not None else action


def evaluate(
    policy: ActorCritic,
    env: EnvSource,
    episodes: int,
    seed: int,
    obs_normalizer: ObservationNormalizer | None = None,
) -> Evaluation:
    """Run `episodes` deterministic episodes (seeds seed, seed+1, ...) to their end; training mode untouched."""
    envs = make_vector_env(env, episodes)
    try:
        space = space_info(envs.single_observation_space, envs.single_action_space)
        obs, _ = envs.reset(seed=seed)
        returns = np.zeros(episodes)
        lengths = np.zeros(episodes, dtype=np.int64)
        running = np.ones(episodes, dtype=bool)  # still in its first episode
        while running.any():
            action = policy_action(policy, obs, obs_normalizer, space.action_low, space.action_high)
            obs, reward, terminated, truncated, _ = envs.step(action)
            returns += np.where(running, reward, 0.0)
            lengths += running
            running &= ~(terminated | truncated)  # an env that auto-reset keeps stepping, uncounted
    finally:
        envs.close()
    return Evaluation(returns, lengths)


def first_rolling_mean_at_least(returns: list[float] | np.ndarray, window: int, threshold: float) -> int | None:
    """Index of the first episode at which the mean of the last `window` returns is >= threshold, else None.

    The usual "solved" criterion on training episodes (CartPole: 475 over the last 20 or 100)."""
    r = np.asarray(returns, dtype=np.float64)
    if len(r) < window:
        return None
    sums = np.convolve(r, np.ones(window), mode="valid")  # sums[k] = r[k] + ... + r[k + window − 1]
    hits = np.flatnonzero(sums >= threshold * window - 1e-9)
    return int(hits[0]) + window - 1 if len(hits) else None
