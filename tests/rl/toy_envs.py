"""Tiny environments whose right answers are known in closed form."""

import gymnasium as gym
import numpy as np
from gymnasium.wrappers import TimeLimit


class ConstantRewardEnv(gym.Env):
    """Reward 1 at every step, the same observation forever, never terminates: V*(s) = 1/(1 − γ).

    Only a time limit (TimeLimit wrapper) ever ends an episode — a truncation."""

    observation_space = gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.ones(1, dtype=np.float32), {}

    def step(self, action):
        return np.ones(1, dtype=np.float32), 1.0, False, False, {}


def constant_reward_env(time_limit: int):
    return lambda: TimeLimit(ConstantRewardEnv(), max_episode_steps=time_limit)


class CounterEnv(gym.Env):
    """Observation = [steps taken in this episode, episode number]; terminates when the action is 1
    and the counter is even (if `terminate_on_even`), else only the time limit ends it. Rewards 1.

    Every observation is different, so an aliased buffer (every row the same array) shows at once,
    and the final observation of an episode differs from the reset observation of the next."""

    observation_space = gym.spaces.Box(-1e6, 1e6, shape=(2,), dtype=np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, terminate_on_even: bool = True):
        self.terminate_on_even = terminate_on_even
        self.count = 0
        self.episode = -1

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.count = 0
        self.episode += 1
        return np.array([0.0, self.episode], dtype=np.float32), {}

    def step(self, action):
        self.count += 1
        terminated = bool(self.terminate_on_even and action == 1 and self.count % 2 == 0)
        return np.array([self.count, self.episode], dtype=np.float32), 1.0, terminated, False, {}


class RecordingBoxEnv(gym.Env):
    """A 3-dimensional continuous action in [−1, 1]³; remembers every action it was given."""

    observation_space = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, shape=(3,), dtype=np.float32)

    def __init__(self):
        self.received = []

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, dtype=np.float32), {}

    def step(self, action):
        self.received.append(np.array(action, copy=True))
        return np.zeros(2, dtype=np.float32), -float(np.sum(np.square(action))), False, False, {}
