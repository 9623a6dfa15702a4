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

from dlconcepts.labs._ppo import (LOSS, MINIMIZER, check_config, eval_table, experiment_from_config, ppo_param,
                                  run_and_report)
from dlconcepts.labs.base import Lab, LabContext, Result

ENV_ID = "Pendulum-v1"
TARGET = -250.0
RANDOM_POLICY_RETURN = -1200.0  # a uniformly random torque averages about −1200 per 200-step episode


@dataclass(frozen=True)
class Config:
    total_steps: int = ppo_param("total_steps", 300_000, "environment steps of training (the issue's budget)")
    n_envs: int = ppo_param("n_envs", 8)
    async_envs: bool = ppo_param("async_envs", False)
    n_steps: int = ppo_param("n_steps", 256)
    n_epochs: int = ppo_param("n_epochs", 10)
    minibatch_size: int = ppo_param("minibatch_size", 256)
    lr: float = ppo_param("lr", 1e-3)
    anneal_lr: bool = ppo_param("anneal_lr", True)
    gamma: float = ppo_param("gamma", 0.9)
    gae_lambda: float = ppo_param("gae_lambda", 0.95)
    clip_range: float = ppo_param("clip_range", 0.2)
    anneal_clip: bool = ppo_param("anneal_clip", False)
    clip_value: float = ppo_param("clip_value", 0.0)
    vf_coef: float = ppo_param("vf_coef", 0.5)
    ent_coef: float = ppo_param("ent_coef", 0.0)
    max_grad_norm: float = ppo_param("max_grad_norm", 0.5)
    target_kl: float = ppo_param("target_kl", 0.0)
    normalize_advantage: bool = ppo_param("normalize_advantage", True)
    bootstrap_truncation: bool = ppo_param("bootstrap_truncation", True, "bootstrap V(final obs) at the 200-step time limit (false: the classic fault)")
    normalize_obs: bool = ppo_param("normalize_obs", True)
    scale_rewards: bool = ppo_param("scale_rewards", True)
    log_std_init: float = ppo_param("log_std_init", 0.0)
    hidden: tuple[int, ...] = ppo_param("hidden", (64, 64))
    activation: str = ppo_param("activation", "tanh")
    shared_trunk: bool = ppo_param("shared_trunk", False)
    eval_every: int = ppo_param("eval_every", 20_000)
    eval_episodes: int = ppo_param("eval_episodes", 20)

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
    loss=LOSS,
    minimizer=MINIMIZER,
    data="Gymnasium Pendulum-v1 (classic control, simulated offline)",
    typical_time="~2 min (quick ~3 s)",
    config=Config,
    run=run,
    quick={"total_steps": 4_096, "eval_every": 0, "eval_episodes": 5},
    prefers_cpu="PPO's MLPs on batches of 8 observations are far too small to gain from a GPU",
)
