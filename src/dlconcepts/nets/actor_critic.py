"""The actor-critic: one network proposes actions (the actor, a policy π(a|s)), one judges states (the critic, V(s)).

This is step 1 of the course's reinforcement column — "actor learned by PPO actor-critic". The
actor outputs the parameters of a probability distribution over actions:

- discrete actions (CartPole: push left or right): a categorical distribution given by logits;
- continuous actions (Pendulum: a torque): a diagonal Gaussian whose mean comes from the network
  and whose log standard deviation is a learned vector that does not depend on the state.

For a d-dimensional continuous action the d coordinates are independent, so the log-probability of
the whole action is the SUM of the d per-coordinate log-probabilities: one number per sample, shape
(batch,). (A classic bug keeps shape (batch, d) and lets PPO's ratio broadcast against the
advantages silently.) The distributions are written out here as plain formulas rather than through
`torch.distributions`: they are short, they are the math a lecture shows, and they skip the
per-call argument checks that dominate the cost of a forward pass this small. The tests hold each
formula against `torch.distributions` in float64.

Actor and critic either share a trunk (one MLP, two heads: fewer parameters, but the value loss
then pushes on the policy's features, so `vf_coef` matters) or are two separate MLPs (the default
of CleanRL and Stable-Baselines3 for classic control).

Initialization follows the PPO implementations studied by Engstrom et al. (2020, "Implementation
Matters in Deep Policy Gradients") and Andrychowicz et al. (2021, "What Matters in On-Policy RL"):
orthogonal weights, gain √2 in hidden layers, 0.01 on the policy head (so the first policy is
nearly uniform / nearly zero-mean, and exploration starts unbiased) and 1 on the value head.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from dlconcepts.nets.mlp import ACTIVATIONS

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


# ---- the two action distributions, as formulas -------------------------------------------------


def categorical_log_prob(logits: Tensor, actions: Tensor) -> Tensor:
    """log π(a|s) = log softmax(logits)[a]; `logits` (batch, n), integer `actions` (batch,) -> (batch,)."""
    return torch.log_softmax(logits, dim=-1).gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)


def categorical_entropy(logits: Tensor) -> Tensor:
    """H = −Σ_a π(a) log π(a), per row: (batch, n) -> (batch,)."""
    log_p = torch.log_softmax(logits, dim=-1)
    return -(log_p.exp() * log_p).sum(-1)


def categorical_sample(logits: Tensor) -> Tensor:
    """One action per row, drawn with probabilities softmax(logits): (batch, n) -> (batch,) int64."""
    return torch.multinomial(torch.softmax(logits, dim=-1), 1).squeeze(-1)


def gaussian_log_prob(mean: Tensor, log_std: Tensor, actions: Tensor) -> Tensor:
    """log N(a; μ, diag σ²) = Σ_d [−½((a_d − μ_d)/σ_d)² − log σ_d − ½ log 2π]: (batch, d) -> (batch,).

    Summed over the action dimensions (independent coordinates multiply, their logs add)."""
    z = (actions - mean) / log_std.exp()
    return (-0.5 * z.square() - log_std - LOG_SQRT_2PI).sum(-1)


def gaussian_entropy(log_std: Tensor, batch: int) -> Tensor:
    """H = Σ_d (½ + ½ log 2π + log σ_d), the same for every state (σ does not depend on s): -> (batch,)."""
    return (0.5 + LOG_SQRT_2PI + log_std).sum(-1).expand(batch)


# ---- the network -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ActorCriticSpec:
    """Everything needed to rebuild an ActorCritic (saved next to its state_dict; primitives only)."""

    obs_dim: int
    """Length of the observation vector (CartPole: 4; Pendulum: 3)."""
    action_dim: int
    """Discrete: the number of actions. Continuous: the number of action coordinates."""
    continuous: bool
    """True: diagonal Gaussian policy. False: categorical policy."""
    hidden: tuple[int, ...] = (64, 64)
    """Hidden layer widths of each trunk."""
    activation: str = "tanh"
    """Activation after every hidden layer; tanh is the usual choice for PPO on classic control."""
    shared_trunk: bool = False
    """One trunk with two heads, or two separate MLPs for actor and critic."""
    log_std_init: float = 0.0
    """Initial log σ of the Gaussian policy (0 → σ = 1). Ignored for discrete actions."""

    def as_dict(self) -> dict:
        return {**asdict(self), "hidden": list(self.hidden)}

    @classmethod
    def from_dict(cls, values: dict) -> "ActorCriticSpec":
        return cls(**{**values, "hidden": tuple(int(h) for h in values["hidden"])})


def _trunk(obs_dim: int, hidden: Sequence[int], activation: str) -> nn.Sequential:
    """Linear → activation for every hidden layer (the heads are added separately)."""
    layers: list[nn.Module] = []
    fan_in = obs_dim
    for width in hidden:
        layers += [nn.Linear(fan_in, width), ACTIVATIONS[activation]()]
        fan_in = width
    return nn.Sequential(*layers)


def _orthogonal(layer: nn.Module, gain: float) -> None:
    if isinstance(layer, nn.Linear):
        nn.init.orthogonal_(layer.weight, gain)
        nn.init.zeros_(layer.bias)


class ActorCritic(nn.Module):
    """π(a|s) and V(s) for PPO. `act` is for collecting rollouts, `evaluate` for the update.

    >>> net = ActorCritic(ActorCriticSpec(obs_dim=4, action_dim=2, continuous=False))
    >>> action, log_prob, value = net.act(torch.zeros(8, 4))      # shapes (8,), (8,), (8,)
    """

    def __init__(self, spec: ActorCriticSpec):
        super().__init__()
        if spec.activation not in ACTIVATIONS:
            raise ValueError(f"activation {spec.activation!r} is not one of {', '.join(ACTIVATIONS)}")
        if spec.obs_dim < 1 or spec.action_dim < 1 or not spec.hidden or min(spec.hidden) < 1:
            raise ValueError(f"obs_dim, action_dim and every hidden width must be >= 1; got {spec}")
        if not spec.continuous and spec.action_dim < 2:
            raise ValueError("a categorical policy needs at least 2 actions")
        self.spec = spec
        width = spec.hidden[-1]
        trunks: list[nn.Sequential]
        if spec.shared_trunk:
            self.trunk = _trunk(spec.obs_dim, spec.hidden, spec.activation)
            trunks = [self.trunk]
        else:
            self.actor_trunk = _trunk(spec.obs_dim, spec.hidden, spec.activation)
            self.critic_trunk = _trunk(spec.obs_dim, spec.hidden, spec.activation)
            trunks = [self.actor_trunk, self.critic_trunk]
        self.policy_head = nn.Linear(width, spec.action_dim)
        self.value_head = nn.Linear(width, 1)
        self.log_std = nn.Parameter(torch.full((spec.action_dim,), float(spec.log_std_init))) if spec.continuous else None
        for trunk in trunks:
            for layer in trunk:
                _orthogonal(layer, math.sqrt(2))
        _orthogonal(self.policy_head, 0.01)
        _orthogonal(self.value_head, 1.0)

    def _heads(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """(policy output, V(s)) in one pass; a shared trunk is computed once for both heads."""
        if self.spec.shared_trunk:
            features = self.trunk(obs)
            return self.policy_head(features), self.value_head(features).squeeze(-1)
        return self.policy_head(self.actor_trunk(obs)), self.value_head(self.critic_trunk(obs)).squeeze(-1)

    # -- the two outputs --

    def policy_output(self, obs: Tensor) -> Tensor:
        """Logits (discrete) or the Gaussian mean (continuous), shape (batch, action_dim)."""
        return self.policy_head((self.trunk if self.spec.shared_trunk else self.actor_trunk)(obs))

    def value(self, obs: Tensor) -> Tensor:
        """V(s), shape (batch,) — squeezed so it never broadcasts against (batch,) returns."""
        return self.value_head((self.trunk if self.spec.shared_trunk else self.critic_trunk)(obs)).squeeze(-1)

    # -- what PPO needs --

    def act(self, obs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Sample a ~ π(·|s); return (action, log π(a|s), V(s)). Call under torch.no_grad at rollout time."""
        out, value = self._heads(obs)
        if self.spec.continuous:
            action = out + self.log_std.exp() * torch.randn_like(out)
            return action, gaussian_log_prob(out, self.log_std, action), value
        action = categorical_sample(out)
        return action, categorical_log_prob(out, action), value

    def evaluate(self, obs: Tensor, actions: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """For STORED actions: (log π(a|s), entropy of π(·|s), V(s)), each (batch,).

        PPO's ratio must use the actions that were taken during the rollout; sampling new ones here
        (the course notebook's fault) compares two unrelated random numbers."""
        out, value = self._heads(obs)
        if self.spec.continuous:
            return gaussian_log_prob(out, self.log_std, actions), gaussian_entropy(self.log_std, len(obs)), value
        log_p = torch.log_softmax(out, dim=-1)
        log_prob = log_p.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
        return log_prob, -(log_p.exp() * log_p).sum(-1), value

    def deterministic_action(self, obs: Tensor) -> Tensor:
        """The most likely action: argmax of the logits, or the Gaussian mean (for evaluation)."""
        out = self.policy_output(obs)
        return out if self.spec.continuous else out.argmax(-1)
