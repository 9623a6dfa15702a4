"""Generalized Advantage Estimation, GAE(λ) (Schulman et al. 2016, "High-Dimensional Continuous
Control Using Generalized Advantage Estimation"), with episode ends of both kinds.

The advantage A_t says how much better the action a_t turned out than the critic expected in s_t.
From the one-step TD error

    δ_t = r_t + γ · (1 − terminated_t) · V(s_{t+1}) − V(s_t)               (eq. 10)

GAE takes an exponentially weighted sum of the TD errors that follow, within the same episode:

    A_t = δ_t + γλ · (1 − done_t) · A_{t+1},   done_t = terminated_t or truncated_t   (eq. 16)

and the critic's regression target is the λ-return R_t = A_t + V(s_t).

Why two kinds of end. `terminated` means the environment itself ended (the pole fell): there is no
future, V(s_{t+1}) = 0. `truncated` means a time limit cut the episode (CartPole's 500 steps,
Pendulum's 200): the state s_{t+1} still had a future worth V(s_{t+1}), and dropping it teaches the
critic that the world ends at step 500 — which it cannot even see in its input. So on truncation the
TD error keeps γ·V(s_{t+1}) of the episode's real final observation (not the reset observation of
the next episode), and only the chain of advantages is cut. `next_values[t]` is that V(s_{t+1}):
the value of the following rollout step inside an episode, of the final observation at a
truncation (anything at a termination: it is multiplied by 0).

λ trades bias for variance: λ = 0 is the one-step TD advantage δ_t (low variance, biased by the
critic), λ = 1 the Monte-Carlo return minus V(s_t) (unbiased, high variance).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def _as_numpy(x: Tensor | np.ndarray, dtype: type) -> np.ndarray:
    return x.numpy().astype(dtype, copy=False) if isinstance(x, Tensor) else np.asarray(x, dtype=dtype)


def gae(
    rewards: Tensor | np.ndarray,
    values: Tensor | np.ndarray,
    next_values: Tensor | np.ndarray,
    terminated: Tensor | np.ndarray,
    truncated: Tensor | np.ndarray,
    gamma: float,
    lam: float,
) -> tuple[Tensor, Tensor]:
    """Advantages A_t and λ-returns R_t = A_t + V(s_t), both shaped like `rewards`: (T,) or (T, N).

    Time runs along the first axis; further axes are independent environments. The backward loop is
    over T only and runs in NumPy (small arrays: a torch call per step would cost more than the math).
    """
    r = _as_numpy(rewards, np.float64)
    v = _as_numpy(values, np.float64)
    v_next = _as_numpy(next_values, np.float64)
    term = _as_numpy(terminated, np.float64)
    done = np.maximum(term, _as_numpy(truncated, np.float64))
    if not (r.shape == v.shape == v_next.shape == term.shape == done.shape):
        raise ValueError(
            f"rewards {r.shape}, values {v.shape}, next_values {v_next.shape}, terminated {term.shape} and "
            f"truncated {done.shape} must have one shape (T, N); a (T, N, 1) value tensor would broadcast silently"
        )
    delta = r + gamma * (1.0 - term) * v_next - v  # eq. 10, with no future after a termination
    advantages = np.zeros_like(delta)
    running = np.zeros_like(delta[0])
    for t in range(len(delta) - 1, -1, -1):
        running = delta[t] + gamma * lam * (1.0 - done[t]) * running  # eq. 16, cut at every episode end
        advantages[t] = running
    returns = advantages + v
    return torch.from_numpy(advantages.astype(np.float32)), torch.from_numpy(returns.astype(np.float32))
