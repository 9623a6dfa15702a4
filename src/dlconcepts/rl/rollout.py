"""Rollout collection: run the current policy in N environments for T steps and store what happened.

Storage is allocated once, one tensor per field — never one tensor reused for two fields, and never
a list of references to a buffer that the environment overwrites (the two aliasing faults that make
every stored observation equal to the last one). Each step writes row t of every field.

What is stored at step t, for every environment:
- obs[t]          s_t, as the policy saw it (normalized when observation normalization is on);
- actions[t]      a_t ~ π_old(·|s_t), exactly as sampled (a Gaussian action is stored unclipped:
                  its log-probability belongs to the unclipped value; only the env gets the clip);
- log_probs[t]    log π_old(a_t|s_t), and values[t] = V_old(s_t): computed under torch.no_grad
                  at rollout time — they are constants of the update, the "old" policy of PPO's ratio;
- rewards[t]      r_t (scaled, when reward scaling is on);
- terminated[t], truncated[t]: the two kinds of episode end, kept apart (see gae.py);
- next_values[t]  V(s_{t+1}) of the true successor: V of obs[t+1] inside an episode, V of the
                  episode's final observation on a truncation, 0 on a termination.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from gymnasium.vector import VectorEnv
from torch import Tensor

from dlconcepts.nets.actor_critic import ActorCritic
from dlconcepts.rl.envs import SpaceInfo, env_state, set_env_state
from dlconcepts.rl.normalization import ObservationNormalizer, RewardScaler


class RolloutBuffer:
    """Preallocated (T, N, ...) tensors, one per field. `numpy` views share their memory, for cheap writes."""

    def __init__(self, n_steps: int, num_envs: int, space: SpaceInfo):
        T, N = n_steps, num_envs
        self.n_steps, self.num_envs = T, N
        self.obs = torch.zeros(T, N, space.obs_dim)
        self.actions = torch.zeros(T, N, space.action_dim) if space.continuous else torch.zeros(T, N, dtype=torch.long)
        self.log_probs = torch.zeros(T, N)
        self.values = torch.zeros(T, N)
        self.rewards = torch.zeros(T, N)
        self.terminated = torch.zeros(T, N, dtype=torch.bool)
        self.truncated = torch.zeros(T, N, dtype=torch.bool)
        self.next_values = torch.zeros(T, N)
        self.final_values = torch.zeros(T, N)  # V(final observation), written only where truncated
        # Writable NumPy views of the same memory (not copies): env outputs go straight in.
        self._np = {name: getattr(self, name).numpy() for name in ("obs", "rewards", "terminated", "truncated")}

    @property
    def size(self) -> int:
        return self.n_steps * self.num_envs

    def fields(self) -> dict[str, Tensor]:
        return {name: getattr(self, name) for name in
                ("obs", "actions", "log_probs", "values", "rewards", "terminated", "truncated", "next_values")}


@dataclass
class EpisodeLog:
    """Every finished training episode: undiscounted RAW return, length, env step and clock time at its end."""

    returns: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def add(self, episode_return: float, length: int, step: int, seconds: float) -> None:
        self.returns.append(float(episode_return))
        self.lengths.append(int(length))
        self.steps.append(int(step))
        self.seconds.append(float(seconds))

    def __len__(self) -> int:
        return len(self.returns)

    def state(self) -> dict:
        """As tensors (float64 and int64 hold every Python float and int exactly), for checkpoints."""
        return {"returns": torch.tensor(self.returns, dtype=torch.float64),
                "lengths": torch.tensor(self.lengths, dtype=torch.int64),
                "steps": torch.tensor(self.steps, dtype=torch.int64),
                "seconds": torch.tensor(self.seconds, dtype=torch.float64)}

    @classmethod
    def from_state(cls, state: dict) -> "EpisodeLog":
        return cls(*(state[name].tolist() for name in ("returns", "lengths", "steps", "seconds")))


class RolloutCollector:
    """Steps N environments with the policy; keeps the current observations between rollouts.

    `bootstrap_truncation=False` reproduces the classic fault of treating a time limit like a
    termination (no V(s_{t+1}) after a truncation); it exists for the tests and for teaching.
    """

    def __init__(
        self,
        envs: VectorEnv,
        policy: ActorCritic,
        space: SpaceInfo,
        seed: int,
        obs_normalizer: ObservationNormalizer | None = None,
        reward_scaler: RewardScaler | None = None,
        bootstrap_truncation: bool = True,
    ):
        self.envs, self.policy, self.space = envs, policy, space
        self.num_envs = envs.num_envs
        self.obs_normalizer, self.reward_scaler = obs_normalizer, reward_scaler
        self.bootstrap_truncation = bootstrap_truncation
        self.episodes = EpisodeLog()
        self.global_step = 0
        self.start_time = time.perf_counter()
        raw_obs, _ = envs.reset(seed=seed)  # env i gets seed + i
        self.obs = self._normalize(raw_obs, update=True)
        self._episode_return = np.zeros(self.num_envs)
        self._episode_length = np.zeros(self.num_envs, dtype=np.int64)

    # -- checkpoints: everything the next rollout depends on besides the policy and the global RNGs
    def state(self) -> dict:
        return {
            "global_step": self.global_step,
            "seconds": time.perf_counter() - self.start_time,
            "obs": torch.from_numpy(self.obs.copy()),  # as the policy will see it (normalized then)
            "episode_return": torch.from_numpy(self._episode_return.copy()),
            "episode_length": torch.from_numpy(self._episode_length.copy()),
            "episodes": self.episodes.state(),
            "obs_normalizer": self.obs_normalizer.state() if self.obs_normalizer is not None else None,
            "reward_scaler": self.reward_scaler.state() if self.reward_scaler is not None else None,
            "envs": env_state(self.envs),
        }

    def load_state(self, state: dict) -> None:
        """Continue from a saved state (this collector's envs were reset at construction; that is undone here)."""
        if (state["obs_normalizer"] is None) != (self.obs_normalizer is None) or \
                (state["reward_scaler"] is None) != (self.reward_scaler is None):
            raise ValueError("the saved collector and this one differ in observation normalization or reward scaling")
        self.global_step = int(state["global_step"])
        # The clock goes on from the saved time: episode times and steps/s exclude the time the run was stopped.
        self.start_time = time.perf_counter() - float(state["seconds"])
        self.obs = state["obs"].numpy().copy()
        self._episode_return = state["episode_return"].numpy().copy()
        self._episode_length = state["episode_length"].numpy().copy()
        self.episodes = EpisodeLog.from_state(state["episodes"])
        if self.obs_normalizer is not None:
            self.obs_normalizer.load_state(state["obs_normalizer"])
        if self.reward_scaler is not None:
            self.reward_scaler.load_state(state["reward_scaler"])
        set_env_state(self.envs, state["envs"])

    def _normalize(self, raw_obs: np.ndarray, update: bool) -> np.ndarray:
        if self.obs_normalizer is None:
            return np.asarray(raw_obs, dtype=np.float32)
        return self.obs_normalizer(raw_obs, update=update)

    @torch.no_grad()
    def collect(self, buffer: RolloutBuffer) -> RolloutBuffer:
        """Fill every row of `buffer` with T new steps of all N environments."""
        policy, space, np_views = self.policy, self.space, buffer._np
        for t in range(buffer.n_steps):
            obs = torch.from_numpy(self.obs)
            action, log_prob, value = policy.act(obs)
            np_views["obs"][t] = self.obs
            buffer.actions[t] = action
            buffer.log_probs[t] = log_prob
            buffer.values[t] = value

            env_action = action.numpy()
            if space.continuous:  # the env gets an action within its bounds; the buffer keeps the sample
                env_action = np.clip(env_action, space.action_low, space.action_high)
            raw_obs, reward, terminated, truncated, info = self.envs.step(env_action)
            self.global_step += self.num_envs
            ended = terminated | truncated

            self._episode_return += reward
            self._episode_length += 1
            if ended.any():
                self._finish_episodes(ended)
            np_views["rewards"][t] = reward if self.reward_scaler is None else self.reward_scaler(reward, ended)
            np_views["terminated"][t] = terminated
            np_views["truncated"][t] = truncated
            self.obs = self._normalize(raw_obs, update=True)
            if self.bootstrap_truncation and truncated.any():
                buffer.final_values[t] = self._final_values(info, truncated)

        # V(s_{t+1}): the next stored step's value, V(last obs) after the last step; at an episode end
        # the next row belongs to a new episode, so it is replaced (truncated) or zeroed (terminated).
        last_value = policy.value(torch.from_numpy(self.obs))
        buffer.next_values[:-1] = buffer.values[1:]
        buffer.next_values[-1] = last_value
        if self.bootstrap_truncation:
            buffer.next_values.copy_(torch.where(buffer.truncated, buffer.final_values, buffer.next_values))
            buffer.next_values.masked_fill_(buffer.terminated, 0.0)
        else:  # the fault, on purpose: V(s_{t+1}) = 0 after a time limit, as if the world ended there
            buffer.next_values.masked_fill_(buffer.terminated | buffer.truncated, 0.0)
        return buffer

    def _final_values(self, info: dict, truncated: np.ndarray) -> Tensor:
        """V(final observation) for the environments whose episode was truncated this step (0 elsewhere)."""
        final_obs = np.zeros((self.num_envs, self.space.obs_dim), dtype=np.float32)
        rows = np.flatnonzero(truncated)
        final_obs[rows] = np.stack([info["final_obs"][i] for i in rows])
        values = torch.zeros(self.num_envs)
        # Normalized with the current statistics, not added to them (it is not a new training input).
        values[rows] = self.policy.value(torch.from_numpy(self._normalize(final_obs[rows], update=False)))
        return values

    def _finish_episodes(self, ended: np.ndarray) -> None:
        now = time.perf_counter() - self.start_time
        for i in np.flatnonzero(ended):
            self.episodes.add(self._episode_return[i], self._episode_length[i], self.global_step, now)
        self._episode_return[ended] = 0.0
        self._episode_length[ended] = 0
