"""Running normalization of observations and rewards, for continuous control.

Pendulum's observation mixes cos θ, sin θ ∈ [−1, 1] with an angular velocity up to ±8, and its
rewards run from about −16 to 0: a tanh network learns poorly from either raw. Both are rescaled
with statistics that are updated as data arrive (the data of RL are not known in advance):

- observations: o ← clip((o − μ) / √(σ² + ε), ±clip), with μ, σ² the running mean and variance of
  every observation seen in training. The statistics are frozen for evaluation and saved with the
  policy — a policy trained on normalized inputs is meaningless on raw ones.
- rewards: r ← clip(r / √(Var[G] + ε), ±clip), where G is the running discounted return
  G ← γ·G + r of each environment, reset at every episode end ("reward scaling", Engstrom et al.
  2020, §3). Only the scale changes, never the sign or the mean, so the optimal policy is the same;
  the critic then fits returns of order 1.
"""

from __future__ import annotations

import numpy as np
import torch


class RunningMeanStd:
    """Mean and variance of every row seen so far, updated a batch at a time.

    Batches combine by the parallel algorithm of Chan, Golub & LeVeque (1979): with n, μ, σ² so far
    and a batch of m rows with mean μ_b, variance σ_b²,
        δ = μ_b − μ,  n' = n + m,  μ' = μ + δ·m/n',  M2' = σ²·n + σ_b²·m + δ²·n·m/n',  σ'² = M2'/n'.
    It starts from a tiny pseudo-count at (0, 1) so the first normalization never divides by zero.
    """

    def __init__(self, shape: tuple[int, ...] = (), epsilon: float = 1e-4):
        self.mean = np.zeros(shape, dtype=np.float64)
        self.var = np.ones(shape, dtype=np.float64)
        self.count = float(epsilon)

    def update(self, batch: np.ndarray) -> None:
        batch = np.asarray(batch, dtype=np.float64)
        m = batch.shape[0]
        batch_mean, batch_var = batch.mean(axis=0), batch.var(axis=0)
        delta = batch_mean - self.mean
        total = self.count + m
        self.mean = self.mean + delta * m / total
        m2 = self.var * self.count + batch_var * m + delta**2 * self.count * m / total
        self.var = m2 / total
        self.count = total

    def state(self) -> dict:
        """Tensors and a float: saved inside model.pt and loadable with weights_only=True."""
        # np.array, not .copy(): the statistics of a scalar (reward scaling) become NumPy scalars after an update.
        return {"mean": torch.from_numpy(np.array(self.mean, dtype=np.float64)),
                "var": torch.from_numpy(np.array(self.var, dtype=np.float64)), "count": self.count}

    @classmethod
    def from_state(cls, state: dict) -> "RunningMeanStd":
        rms = cls(tuple(state["mean"].shape))
        rms.load_state(state)
        return rms

    def load_state(self, state: dict) -> None:
        """Put saved statistics back in place (a resumed run's normalizer is shared with its evaluations)."""
        self.mean = state["mean"].numpy().astype(np.float64)
        self.var = state["var"].numpy().astype(np.float64)
        self.count = float(state["count"])


class ObservationNormalizer:
    """(o − μ)/√(σ² + ε), clipped; `update=True` only on training observations."""

    def __init__(self, obs_dim: int, clip: float = 10.0, epsilon: float = 1e-8):
        self.rms = RunningMeanStd((obs_dim,))
        self.clip = float(clip)
        self.epsilon = float(epsilon)

    def __call__(self, obs: np.ndarray, update: bool = False) -> np.ndarray:
        if update:
            self.rms.update(obs)
        scaled = (obs - self.rms.mean) / np.sqrt(self.rms.var + self.epsilon)
        return np.clip(scaled, -self.clip, self.clip).astype(np.float32)

    def state(self) -> dict:
        return {**self.rms.state(), "clip": self.clip, "epsilon": self.epsilon}

    @classmethod
    def from_state(cls, state: dict) -> "ObservationNormalizer":
        norm = cls(int(state["mean"].shape[0]), state["clip"], state["epsilon"])
        norm.load_state(state)
        return norm

    def load_state(self, state: dict) -> None:
        self.rms.load_state(state)
        self.clip, self.epsilon = float(state["clip"]), float(state["epsilon"])


class RewardScaler:
    """r / √(Var[G] + ε), clipped, with G the running discounted return of each environment."""

    def __init__(self, num_envs: int, gamma: float, clip: float = 10.0, epsilon: float = 1e-8):
        self.rms = RunningMeanStd(())
        self.returns = np.zeros(num_envs, dtype=np.float64)
        self.gamma = float(gamma)
        self.clip = float(clip)
        self.epsilon = float(epsilon)

    def __call__(self, rewards: np.ndarray, episode_ended: np.ndarray) -> np.ndarray:
        self.returns = self.returns * self.gamma + rewards
        self.rms.update(self.returns)
        scaled = np.clip(rewards / np.sqrt(self.rms.var + self.epsilon), -self.clip, self.clip)
        self.returns[episode_ended] = 0.0  # a new episode's return starts from nothing
        return scaled.astype(np.float32)

    def state(self) -> dict:
        """The return statistics and each environment's running discounted return, for checkpoints."""
        return {**self.rms.state(), "returns": torch.from_numpy(self.returns.copy())}

    def load_state(self, state: dict) -> None:
        if state["returns"].shape != self.returns.shape:
            raise ValueError(f"saved reward scaler has {state['returns'].shape[0]} environments, not {len(self.returns)}")
        self.rms.load_state(state)
        self.returns = state["returns"].numpy().copy()

    @property
    def scale(self) -> float:
        """The factor rewards are currently divided by."""
        return float(np.sqrt(self.rms.var + self.epsilon))
