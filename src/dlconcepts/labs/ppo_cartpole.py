"""Lab `ppo-cartpole`: an actor learned by PPO actor-critic balances a pole (Gymnasium CartPole-v1).

The course's reinforcement column: (1) the function is an actor π(a|s) — push the cart left or
right — with a critic V(s) beside it; (2) the loss is PPO's clipped surrogate (a trust region whose
size is watched through an approximate KL divergence) plus the critic's MSE; (3) Adam minimizes it
on minibatches of the latest rollout.

CartPole pays +1 for every step the pole stays up and is cut by a time limit at 500 steps: an
episode that reaches 500 is TRUNCATED, not terminated, and its last value is bootstrapped. The
issue's target: a deterministic evaluation mean of ≥ 475 over 20 episodes within 100k environment
steps. The defaults were tuned for speed to solve: 8 environments, short rollouts of 16 steps, 10
epochs on the whole rollout of 128 transitions, Adam at 2e-3, learning rate and clip range both
annealed linearly to 0 (tuning runs and the comparison with Stable-Baselines3: README,
benchmarks/ppo_vs_sb3.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from dlconcepts.labs._ppo import (LOSS, MINIMIZER, check_config, eval_table, experiment_from_config, ppo_param,
                                  run_and_report)
from dlconcepts.labs.base import Lab, LabContext, Result

ENV_ID = "CartPole-v1"
TARGET = 475.0
RANDOM_POLICY_RETURN = 22.0  # a uniformly random policy's mean episode return on CartPole-v1 (about 22)


@dataclass(frozen=True)
class Config:
    total_steps: int = ppo_param("total_steps", 100_000, "environment steps of training (the issue's budget)")
    n_envs: int = ppo_param("n_envs", 8)
    async_envs: bool = ppo_param("async_envs", False)
    n_steps: int = ppo_param("n_steps", 16)
    n_epochs: int = ppo_param("n_epochs", 10)
    minibatch_size: int = ppo_param("minibatch_size", 128)
    lr: float = ppo_param("lr", 2e-3)
    anneal_lr: bool = ppo_param("anneal_lr", True)
    gamma: float = ppo_param("gamma", 0.98)
    gae_lambda: float = ppo_param("gae_lambda", 0.8)
    clip_range: float = ppo_param("clip_range", 0.2)
    anneal_clip: bool = ppo_param("anneal_clip", True)
    clip_value: float = ppo_param("clip_value", 0.0)
    vf_coef: float = ppo_param("vf_coef", 0.5)
    ent_coef: float = ppo_param("ent_coef", 0.0)
    max_grad_norm: float = ppo_param("max_grad_norm", 0.5)
    target_kl: float = ppo_param("target_kl", 0.0)
    normalize_advantage: bool = ppo_param("normalize_advantage", True)
    bootstrap_truncation: bool = ppo_param("bootstrap_truncation", True, "bootstrap V(final obs) at the 500-step time limit (false: the classic fault)")
    hidden: tuple[int, ...] = ppo_param("hidden", (64, 64))
    activation: str = ppo_param("activation", "tanh")
    shared_trunk: bool = ppo_param("shared_trunk", False)
    eval_every: int = ppo_param("eval_every", 5_000)
    eval_episodes: int = ppo_param("eval_episodes", 20)

    def check(self) -> None:
        check_config(self)


def run(cfg: Config, ctx: LabContext) -> Result:
    exp = experiment_from_config(cfg, ENV_ID, ctx.runtime.seed)
    result, metrics = run_and_report(exp, ctx, TARGET)
    final = result.final
    assert final is not None
    first = metrics["first_eval_step_at_target"]
    solved = metrics["train_rolling20_first_at_target_step"]
    findings = [
        f"After {metrics['env_steps']:,} environment steps the deterministic policy averages {final.mean:.1f} "
        f"(± {final.std:.1f}) over {len(final.returns)} evaluation episodes: the target of {TARGET:g} is "
        f"{'met' if final.mean >= TARGET else 'NOT met'}; a random policy averages about {RANDOM_POLICY_RETURN:g}.",
        (f"An evaluation first reached {TARGET:g} at {first:,} steps (evaluations every {cfg.eval_every:,})."
         if first is not None else f"No evaluation reached {TARGET:g}."),
        (f"The mean of the last 20 training episodes (sampled actions) first reached {TARGET:g} at {solved:,} steps."
         if solved is not None else f"The mean of the last 20 training episodes never reached {TARGET:g}."),
        f"On the first minibatch of every update the ratio π_θ/π_old deviated from 1 by at most "
        f"{metrics['first_ratio_max_deviation']:.1e} (float rounding): the update starts at the old policy, "
        f"on the stored actions.",
        f"{metrics['env_steps_per_second']:,.0f} environment steps per second, updates included "
        f"({metrics['train_seconds']:.1f} s of training).",
    ]
    return Result(
        metrics={**metrics, "random_policy_return": RANDOM_POLICY_RETURN},
        table=eval_table(result, TARGET),
        findings=findings,
        headline=f"evaluation return {final.mean:.1f} after {metrics['env_steps']:,} steps (target ≥ {TARGET:g})",
    )


LAB = Lab(
    id="ppo-cartpole",
    title="PPO actor-critic balances CartPole-v1",
    function="actor π(a∣s): categorical over 2 actions, critic V(s); MLPs 4→{hidden}, {activation}",
    loss=LOSS,
    minimizer=MINIMIZER,
    data="Gymnasium CartPole-v1 (classic control, simulated offline)",
    typical_time="~40 s (quick ~3 s)",
    config=Config,
    run=run,
    quick={"total_steps": 6_144, "eval_every": 0, "eval_episodes": 10},
    prefers_cpu="PPO's MLPs on batches of 8 observations are far too small to gain from a GPU",
)
