"""Gymnasium environments, vectorized, and what the actor-critic needs to know about their spaces.

PPO collects experience from N copies of an environment at once (`gymnasium.vector`): one batched
forward pass of the policy serves all N, so the per-step Python overhead is paid once, not N times.
`SyncVectorEnv` steps the copies one after another in this process (fastest for cheap classic-control
physics); `AsyncVectorEnv` puts each copy in its own process (worth it only when one step is costly).

Auto-reset: when a copy's episode ends, the vector env resets it by itself. We use Gymnasium's
SAME_STEP mode: `step` returns the first observation of the NEW episode, and the last observation of
the old one — the state s_{t+1} that the bootstrapped value V(s_{t+1}) of a truncated episode needs —
in `info["final_obs"]`. (The default NEXT_STEP mode instead spends one extra step, with no reward and
the action ignored, on the reset; a collector that does not know it learns from fake transitions.)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv, VectorEnv

from dlconcepts.errors import UserError

EnvSource = str | Callable[[], gym.Env]
"""An environment id such as "CartPole-v1", or a function that builds one environment."""


def make_env(source: EnvSource, render_mode: str | None = None) -> gym.Env:
    """One environment from an id (offline, classic control needs nothing downloaded) or a factory."""
    if callable(source):
        return source()
    try:
        # The passive checker re-validates every step; it is for developing a new env, not for training.
        return gym.make(source, render_mode=render_mode, disable_env_checker=True)
    except gym.error.Error as exc:
        raise UserError(f"cannot make environment {source!r}: {exc}; use a Gymnasium id such as CartPole-v1") from None


def make_vector_env(source: EnvSource, num_envs: int, asynchronous: bool = False) -> VectorEnv:
    """`num_envs` copies behind one batched step, auto-resetting in SAME_STEP mode (see module docstring)."""
    if num_envs < 1:
        raise UserError(f"num_envs={num_envs} is impossible; use 1 or more environments")
    factories = [lambda: make_env(source) for _ in range(num_envs)]
    if asynchronous:
        return AsyncVectorEnv(factories, autoreset_mode=AutoresetMode.SAME_STEP)
    return SyncVectorEnv(factories, autoreset_mode=AutoresetMode.SAME_STEP)


@dataclass(frozen=True)
class SpaceInfo:
    """The observation and action spaces, reduced to what the actor-critic is built from."""

    obs_dim: int
    action_dim: int  # number of actions (discrete) or of action coordinates (continuous)
    continuous: bool
    action_low: np.ndarray | None  # bounds of a continuous action, to clip to when stepping the env
    action_high: np.ndarray | None


def space_info(observation_space: gym.Space, action_space: gym.Space) -> SpaceInfo:
    """Vector observations and Discrete or Box actions; anything else is refused with the reason."""
    if not isinstance(observation_space, gym.spaces.Box) or len(observation_space.shape) != 1:
        raise UserError(f"observation space {observation_space} is not a flat Box; the MLP actor-critic needs a vector observation")
    obs_dim = int(observation_space.shape[0])
    if isinstance(action_space, gym.spaces.Discrete):
        return SpaceInfo(obs_dim, int(action_space.n), False, None, None)
    if isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1:
        low, high = action_space.low.astype(np.float32), action_space.high.astype(np.float32)
        return SpaceInfo(obs_dim, int(action_space.shape[0]), True, low, high)
    raise UserError(f"action space {action_space} is not supported; use Discrete or a flat Box")
