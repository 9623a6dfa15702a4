"""Lab `ppo-walker`: PPO actor-critic teaches a two-legged walker to walk (MuJoCo Walker2d-v5, 6 joint torques).

The course's own reinforcement-learning code trains a two-legged Walker with PPO in Unity ML-Agents;
Unity builds cannot run offline on any laptop, MuJoCo's Walker2d can (`pip install "gymnasium[mujoco]"`),
and it is the benchmark the PPO literature reports. The three steps are those of `ppo-pendulum`:
(1) the actor is a diagonal Gaussian π(a|s) = N(μ_θ(s), diag σ²) over the 6 torques, its mean from an
MLP and its log σ a learned vector that does not depend on the state; the critic V(s) beside it;
(2) the clipped surrogate plus the critic's MSE; (3) Adam on minibatches, the learning rate annealed.

The continuous-action pitfall, and its fix. The Gaussian's sample u is unbounded; Walker2d accepts
torques in [−1, 1]. Two correct ways, one common wrong one:
- clip (this lab, as Stable-Baselines3 and CleanRL do): the environment gets clip(u, −1, 1), the rollout
  buffer keeps u itself, and the ratio π_θ/π_old is taken of the Gaussian densities at the stored u.
  Clipping is then part of the environment, not of the policy, and the ratio is exact;
- squash: a = tanh(u). The density of a carries the Jacobian Π(1 − tanh²u_d)⁻¹, but it depends on u
  alone, not on θ, so it cancels in π_θ(a)/π_old(a): the ratio may use the Gaussian log-prob of u — the
  Jacobian matters only for the entropy (SAC's case), and the deterministic action is tanh(μ), not μ;
- wrong: store the clipped action and take the Gaussian log-prob of it. Every sample beyond a bound is
  then scored at the bound, as if the policy had chosen exactly ±1: the ratio of a sample the policy
  pushed further out stays near 1, and the gradient pulls the mean toward the bound instead of away.
The deterministic evaluation sends clip(μ_θ(s), −1, 1).

Observations are normalized with running statistics (frozen in evaluations, saved with the policy),
rewards divided by the running std of the discounted return. Episodes end by falling (a termination:
V = 0 after it) or at the 1000-step time limit (a truncation: bootstrapped with V(final observation)).

The issue's target: a deterministic evaluation mean ≥ 3,500 over 10 episodes at 1M environment steps,
median of 3 seeds — above RL-Zoo's tuned Stable-Baselines3 PPO (3,479 ± 822 on Walker2d at 1M).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from dlconcepts.labs._ppo import (LOSS, MINIMIZER, check_config, eval_table, experiment_from_config, ppo_param,
                                  run_and_report)
from dlconcepts.labs.base import Lab, LabContext, Result

ENV_ID = "Walker2d-v5"
TARGET = 3500.0
RANDOM_POLICY_RETURN = 1.6  # uniform random torques: 1.6 ± 8.2 over 100 episodes of 22 steps on average (seeds 1000–1099)


@dataclass(frozen=True)
class Config:
    total_steps: int = ppo_param("total_steps", 1_000_000, "environment steps of training (the issue's budget)")
    n_envs: int = ppo_param("n_envs", 4)
    async_envs: bool = ppo_param("async_envs", False)
    n_steps: int = ppo_param("n_steps", 512)
    n_epochs: int = ppo_param("n_epochs", 10)
    minibatch_size: int = ppo_param("minibatch_size", 64)
    lr: float = ppo_param("lr", 3e-4)
    anneal_lr: bool = ppo_param("anneal_lr", True)
    gamma: float = ppo_param("gamma", 0.99)
    gae_lambda: float = ppo_param("gae_lambda", 0.95)
    clip_range: float = ppo_param("clip_range", 0.2)
    anneal_clip: bool = ppo_param("anneal_clip", False)
    clip_value: float = ppo_param("clip_value", 0.0)
    vf_coef: float = ppo_param("vf_coef", 0.5)
    ent_coef: float = ppo_param("ent_coef", 0.0)
    max_grad_norm: float = ppo_param("max_grad_norm", 0.5)
    target_kl: float = ppo_param("target_kl", 0.0)
    normalize_advantage: bool = ppo_param("normalize_advantage", True)
    bootstrap_truncation: bool = ppo_param("bootstrap_truncation", True, "bootstrap V(final obs) at the 1000-step time limit (false: the classic fault)")
    normalize_obs: bool = ppo_param("normalize_obs", True)
    scale_rewards: bool = ppo_param("scale_rewards", True)
    log_std_init: float = ppo_param("log_std_init", -1.0, "initial log σ of the Gaussian policy (−1: σ ≈ 0.37, a third of the torque range)")
    hidden: tuple[int, ...] = ppo_param("hidden", (64, 64))
    activation: str = ppo_param("activation", "tanh")
    shared_trunk: bool = ppo_param("shared_trunk", False)
    eval_every: int = ppo_param("eval_every", 50_000)
    eval_episodes: int = ppo_param("eval_episodes", 10)

    def check(self) -> None:
        check_config(self)


def run(cfg: Config, ctx: LabContext) -> Result:
    exp = experiment_from_config(cfg, ENV_ID, ctx.runtime.seed)
    result, metrics = run_and_report(exp, ctx, TARGET)
    final = result.final
    assert final is not None
    first = metrics["first_eval_step_at_target"]
    sigma = result.policy.log_std.detach().exp()
    falls = int((final.lengths < 1000).sum())
    findings = [
        f"After {metrics['env_steps']:,} environment steps the deterministic policy averages {final.mean:.0f} "
        f"(± {final.std:.0f}) over {len(final.returns)} evaluation episodes: the target of {TARGET:g} is "
        f"{'met' if final.mean >= TARGET else 'NOT met'}; uniformly random torques average about "
        f"{RANDOM_POLICY_RETURN:g} (the walker falls within ~22 steps).",
        f"{len(final.returns) - falls} of {len(final.returns)} evaluation episodes walked to the 1000-step time limit; "
        f"{falls} ended in a fall.",
        (f"An evaluation first reached {TARGET:g} at {first:,} steps (evaluations every {cfg.eval_every:,})."
         if first is not None else f"No evaluation reached {TARGET:g}."),
        f"The policy's standard deviations went from {math.exp(cfg.log_std_init):.2f} to "
        f"{float(sigma.min()):.2f}–{float(sigma.max()):.2f} over the 6 joints: exploration narrowed as the gait formed.",
        f"On the first minibatch of every update the ratio π_θ/π_old deviated from 1 by at most "
        f"{metrics['first_ratio_max_deviation']:.1e} (float rounding): the ratio uses the stored, unclipped actions.",
        f"{metrics['env_steps_per_second']:,.0f} environment steps per second, updates included "
        f"({metrics['train_seconds'] / 60:.1f} min of training).",
    ]
    return Result(
        metrics={**metrics, "random_policy_return": RANDOM_POLICY_RETURN, "policy_sigma": sigma.tolist(),
                 "final_eval_falls": falls},
        table=eval_table(result, TARGET),
        findings=findings,
        headline=f"evaluation return {final.mean:.0f} after {metrics['env_steps']:,} steps (target ≥ {TARGET:g})",
    )


LAB = Lab(
    id="ppo-walker",
    title="PPO actor-critic teaches MuJoCo's Walker2d-v5 to walk (6 continuous torques)",
    function="actor π(a∣s): diagonal Gaussian over 6 torques, learned log σ; critic V(s); MLPs 17→{hidden}, {activation}",
    loss=LOSS,
    minimizer=MINIMIZER,
    data="Gymnasium Walker2d-v5 (MuJoCo physics, simulated offline)",
    typical_time="~6 min (quick ~10 s)",
    config=Config,
    run=run,
    quick={"total_steps": 8_192, "eval_every": 0, "eval_episodes": 5},
    prefers_cpu="PPO's MLPs on batches of a few observations are far too small to gain from a GPU",
)
