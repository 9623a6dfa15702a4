"""Lab `ppo-pendulum`: PPO actor-critic swings a pendulum up and holds it (Gymnasium Pendulum-v1, continuous).

The same three steps as `ppo-cartpole`, with a continuous action — a torque in [−2, 2]:
(1) the actor is a diagonal Gaussian π(a|s) = N(μ_θ(s), σ²), its mean from an MLP and its log σ a
learned vector that does not depend on the state; the critic V(s) beside it; (2) the clipped
surrogate plus the critic's MSE; (3) Adam on minibatches.

What continuous control adds, each a known pitfall:
- the sampled action is clipped to [−2, 2] only when it is sent to the environment; the buffer keeps
  the unclipped sample, whose log-probability is the one the Gaussian assigns;
- observations are normalized with running statistics (saved with the policy), and rewards are
  scaled by the running standard deviation of the discounted return (−16…0 per step otherwise);
- every Pendulum episode ends by the 200-step time limit — a truncation, never a termination — so
  without bootstrapping V(final observation) the critic would learn values that depend on a clock
  it cannot see;
- γ = 0.9: the pendulum's reward is immediate (angle, speed and torque now), so a short horizon
  learns faster than the usual 0.99.

The issue's target: a deterministic evaluation mean of ≥ −250 over 20 episodes within 300k
environment steps (median of 3 seeds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from dlconcepts.config import param
from dlconcepts.labs._ppo import check_config, eval_table, experiment_from_config, run_and_report
from dlconcepts.labs.base import Lab, LabContext, Result
from dlconcepts.nets import ACTIVATIONS

ENV_ID = "Pendulum-v1"
TARGET = -250.0
RANDOM_POLICY_RETURN = -1200.0  # a uniformly random torque averages about −1200 per 200-step episode


@dataclass(frozen=True)
class Config:
    total_steps: int = param(300_000, "environment steps of training (the issue's budget)", positive=True)
    n_envs: int = param(8, "environments stepped together (gymnasium.vector)", positive=True)
    async_envs: bool = param(False, "one process per environment (AsyncVectorEnv) instead of stepping them in turn")
    n_steps: int = param(256, "steps per environment per rollout (T)", positive=True)
    n_epochs: int = param(10, "passes over each rollout", positive=True)
    minibatch_size: int = param(256, "transitions per gradient step; must divide n_steps × n_envs", positive=True)
    lr: float = param(1e-3, "Adam's learning rate at the start", positive=True)
    anneal_lr: bool = param(True, "decrease the learning rate linearly to 0")
    gamma: float = param(0.9, "discount factor γ", minimum=0.0, maximum=1.0)
    gae_lambda: float = param(0.95, "GAE's λ (0: one-step TD, 1: Monte Carlo)", minimum=0.0, maximum=1.0)
    clip_range: float = param(0.2, "PPO's ε: the ratio is clipped to [1 − ε, 1 + ε]", positive=True)
    anneal_clip: bool = param(False, "decrease ε linearly to 0 with the learning rate")
    clip_value: float = param(0.0, "clip V to old V ± this before the MSE (0 = off)", minimum=0.0)
    vf_coef: float = param(0.5, "weight of the critic's MSE", minimum=0.0)
    ent_coef: float = param(0.0, "weight of the entropy bonus", minimum=0.0)
    max_grad_norm: float = param(0.5, "clip the gradient norm to this (0 = off)", minimum=0.0)
    target_kl: float = param(0.0, "stop an update once approx KL exceeds this (0 = never)", minimum=0.0)
    normalize_advantage: bool = param(True, "standardize advantages per minibatch")
    bootstrap_truncation: bool = param(True, "bootstrap V(final obs) at the 200-step time limit (false: the classic fault)")
    normalize_obs: bool = param(True, "normalize observations with running mean and std (saved with the policy)")
    scale_rewards: bool = param(True, "divide rewards by the running std of the discounted return")
    log_std_init: float = param(0.0, "initial log σ of the Gaussian policy")
    hidden: tuple[int, ...] = param((64, 64), "hidden widths of actor and critic", positive=True)
    activation: str = param("tanh", "activation of the hidden layers", choices=tuple(ACTIVATIONS))
    shared_trunk: bool = param(False, "one trunk with two heads instead of two networks")
    eval_every: int = param(20_000, "evaluate the deterministic policy every this many env steps (0: only at the end)", minimum=0)
    eval_episodes: int = param(20, "episodes per evaluation", positive=True)

    def check(self) -> None:
        check_config(self)


def run(cfg: Config, ctx: LabContext) -> Result:
    exp = experiment_from_config(cfg, ENV_ID, ctx.runtime.seed)
    result, metrics = run_and_report(exp, ctx, TARGET)
    final = result.final
    assert final is not None
    first = metrics["first_eval_step_at_target"]
    sigma = float(result.policy.log_std.detach().exp().mean())
    findings = [
        f"After {metrics['env_steps']:,} environment steps the deterministic policy averages {final.mean:.1f} "
        f"(± {final.std:.1f}) over {len(final.returns)} evaluation episodes: the target of {TARGET:g} is "
        f"{'met' if final.mean >= TARGET else 'NOT met'}; a random policy averages about {RANDOM_POLICY_RETURN:g}.",
        (f"An evaluation first reached {TARGET:g} at {first:,} steps (evaluations every {cfg.eval_every:,})."
         if first is not None else f"No evaluation reached {TARGET:g}."),
        f"The policy's standard deviation went from {math.exp(cfg.log_std_init):.2f} "
        f"to {sigma:.2f}: exploration narrowed as the mean action became good.",
        f"On the first minibatch of every update the ratio π_θ/π_old deviated from 1 by at most "
        f"{metrics['first_ratio_max_deviation']:.1e} (float rounding).",
        f"{metrics['env_steps_per_second']:,.0f} environment steps per second, updates included "
        f"({metrics['train_seconds']:.1f} s of training).",
    ]
    return Result(
        metrics={**metrics, "random_policy_return": RANDOM_POLICY_RETURN, "policy_sigma": sigma},
        table=eval_table(result, TARGET),
        findings=findings,
        headline=f"evaluation return {final.mean:.1f} after {metrics['env_steps']:,} steps (target ≥ {TARGET:g})",
    )


LAB = Lab(
    id="ppo-pendulum",
    title="PPO actor-critic swings up Pendulum-v1 (continuous torque)",
    function="actor π(a∣s): diagonal Gaussian, learned log σ; critic V(s); MLPs 3→{hidden}, {activation}",
    loss="clipped surrogate (ε={clip_range}, KL watched) + {vf_coef}·MSE(V, λ-return) − {ent_coef}·entropy",
    minimizer="Adam lr {lr}, {n_epochs} epochs × minibatches of {minibatch_size}, GAE(γ={gamma}, λ={gae_lambda})",
    data="Gymnasium Pendulum-v1 (classic control, simulated offline)",
    typical_time="~2 min (quick ~3 s)",
    config=Config,
    run=run,
    quick={"total_steps": 4_096, "eval_every": 0, "eval_episodes": 5},
    prefers_cpu="PPO's MLPs on batches of 8 observations are far too small to gain from a GPU",
)
