"""What the PPO labs share: config → experiment, the run with its log and progress bar, the
figures, the saved policy and the numbers. Not a lab itself (it is not in LAB_MODULES); the
algorithm lives in `dlconcepts.rl`.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

import numpy as np

from dlconcepts.config import param
from dlconcepts.errors import ConfigError
from dlconcepts.labs.base import LabContext
from dlconcepts.nets import ACTIVATIONS
from dlconcepts.report import rl_figures
from dlconcepts.rl.evaluate import Evaluation, first_rolling_mean_at_least
from dlconcepts.rl.experiment import Experiment, ExperimentResult, run_experiment
from dlconcepts.rl.policy_io import policy_checkpoint
from dlconcepts.rl.ppo import PPOConfig, UpdateStats
from dlconcepts.rl.rollout import EpisodeLog

PPO_KEYS = tuple(PPOConfig.__dataclass_fields__)

# What each key of a PPO lab's Config means and accepts: written once here, so that the labs' Config classes
# (each with the defaults its environment needs) list their keys in one line apiece.
LAB_KEYS: dict[str, tuple[str, dict[str, Any]]] = {
    "total_steps": ("environment steps of training", {"positive": True}),
    "n_envs": ("environments stepped together (gymnasium.vector)", {"positive": True}),
    "async_envs": ("one process per environment (AsyncVectorEnv) instead of stepping them in turn", {}),
    "n_steps": ("steps per environment per rollout (T)", {"positive": True}),
    "n_epochs": ("passes over each rollout", {"positive": True}),
    "minibatch_size": ("transitions per gradient step; must divide n_steps × n_envs", {"positive": True}),
    "lr": ("Adam's learning rate at the start", {"positive": True}),
    "anneal_lr": ("decrease the learning rate linearly to 0", {}),
    "gamma": ("discount factor γ", {"minimum": 0.0, "maximum": 1.0}),
    "gae_lambda": ("GAE's λ (0: one-step TD, 1: Monte Carlo)", {"minimum": 0.0, "maximum": 1.0}),
    "clip_range": ("PPO's ε: the ratio is clipped to [1 − ε, 1 + ε]", {"positive": True}),
    "anneal_clip": ("decrease ε linearly to 0 with the learning rate", {}),
    "clip_value": ("clip V to old V ± this before the MSE (0 = off)", {"minimum": 0.0}),
    "vf_coef": ("weight of the critic's MSE", {"minimum": 0.0}),
    "ent_coef": ("weight of the entropy bonus", {"minimum": 0.0}),
    "max_grad_norm": ("clip the gradient norm to this (0 = off)", {"minimum": 0.0}),
    "target_kl": ("stop an update once approx KL exceeds this (0 = never)", {"minimum": 0.0}),
    "normalize_advantage": ("standardize advantages per minibatch", {}),
    "bootstrap_truncation": ("bootstrap V(final obs) where a time limit cuts an episode (false: the classic fault)", {}),
    "normalize_obs": ("normalize observations with running mean and std (saved with the policy)", {}),
    "scale_rewards": ("divide rewards by the running std of the discounted return", {}),
    "log_std_init": ("initial log σ of the Gaussian policy", {}),
    "hidden": ("hidden widths of actor and critic", {"positive": True}),
    "activation": ("activation of the hidden layers", {"choices": tuple(ACTIVATIONS)}),
    "shared_trunk": ("one trunk with two heads instead of two networks", {}),
    "eval_every": ("evaluate the deterministic policy every this many env steps (0: only at the end)", {"minimum": 0}),
    "eval_episodes": ("episodes per evaluation", {"positive": True}),
}


# Every PPO lab's steps 2 and 3 (templates filled from its config, as every lab's three steps are).
LOSS = "clipped surrogate (ε={clip_range}, KL watched) + {vf_coef}·MSE(V, λ-return) − {ent_coef}·entropy"
MINIMIZER = "Adam lr {lr}, {n_epochs} epochs × minibatches of {minibatch_size}, GAE(γ={gamma}, λ={gae_lambda})"


def ppo_param(key: str, default: Any, help: str | None = None) -> Any:
    """A PPO lab's config field `key` with this lab's default (and, where it says more, its own help)."""
    meaning, limits = LAB_KEYS[key]
    return param(default, help or meaning, **limits)


def ppo_config_from(cfg: Any) -> PPOConfig:
    """The lab Config's keys named like PPOConfig's fields, as a PPOConfig."""
    return PPOConfig(**{k: getattr(cfg, k) for k in PPO_KEYS if hasattr(cfg, k)})


def check_config(cfg: Any) -> None:
    """Refuse a lab config that PPO would refuse, before any run directory is made."""
    ppo_config_from(cfg).check(cfg.n_envs)
    rollout = cfg.n_steps * cfg.n_envs
    if cfg.total_steps < rollout:
        raise ConfigError(f"total_steps={cfg.total_steps} is less than one rollout ({cfg.n_steps} steps × {cfg.n_envs} "
                          f"envs = {rollout}); raise total_steps or shorten the rollout")


def experiment_from_config(cfg: Any, env_id: str, seed: int) -> Experiment:
    """A lab's Config (flat keys) as an `Experiment`; keys named like PPOConfig's fields go to PPO."""
    ppo = ppo_config_from(cfg)
    return Experiment(
        env_id=env_id, n_envs=cfg.n_envs, total_steps=cfg.total_steps, seed=seed, ppo=ppo, hidden=tuple(cfg.hidden),
        activation=cfg.activation, shared_trunk=cfg.shared_trunk, log_std_init=getattr(cfg, "log_std_init", 0.0),
        normalize_obs=getattr(cfg, "normalize_obs", False), scale_rewards=getattr(cfg, "scale_rewards", False),
        async_envs=cfg.async_envs, eval_every=cfg.eval_every, eval_episodes=cfg.eval_episodes,
    )


def run_and_report(exp: Experiment, ctx: LabContext, target: float | None,
                   resumable: bool = True) -> tuple[ExperimentResult, dict[str, Any]]:
    """Train with progress and evaluation lines in the log, save the figures and model.pt, return the numbers.

    `target`: the evaluation return to reach (None: none to check); `resumable=False` trains without the
    run's checkpoints (an environment whose state rl.envs cannot save)."""
    batch = exp.ppo.n_steps * exp.n_envs
    ctx.log(f"  {exp.env_id}: {exp.n_envs} envs × {exp.ppo.n_steps} steps = {batch} transitions per update, "
            f"{exp.total_steps // batch} updates, {exp.ppo.n_epochs} epochs of minibatches of {exp.ppo.minibatch_size}")
    bar = None
    if ctx.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=(exp.total_steps // batch) * batch, desc="env steps", unit="step", leave=False)

    def on_update(stats: UpdateStats, episodes: EpisodeLog) -> None:
        if bar is not None:
            bar.update(stats.env_steps - bar.n)
            recent = episodes.returns[-20:]
            bar.set_postfix(ret=f"{np.mean(recent):.0f}" if recent else "-", kl=f"{stats.approx_kl:.4f}")

    def on_evaluation(step: int, ev: Evaluation) -> None:
        ctx.run.log(f"  step {step:>7,}: evaluation return {ev.mean:8.1f} ± {ev.std:6.1f} ({len(ev.returns)} episodes)",
                    echo=bar is None)

    try:
        result = run_experiment(exp, on_update, on_evaluation, checkpoints=ctx.checkpoints if resumable else None)
    finally:
        if bar is not None:
            bar.close()
    train = result.train
    history = [h.as_dict() for h in train.history]
    episodes = train.episodes
    final = result.final
    assert final is not None
    first_at_target = next((step for step, ev in result.evaluations if target is not None and ev.mean >= target), None)
    solved_index = first_rolling_mean_at_least(episodes.returns, 20, target) if target is not None else None
    deviations = [h["first_ratio_max_deviation"] for h in history]
    ctx.log(f"  {train.env_steps:,} env steps in {train.seconds:.1f} s ({train.env_steps / train.seconds:,.0f} steps/s "
            f"with updates); final evaluation {final.mean:.1f} ± {final.std:.1f}")

    # -- figures
    ctx.run.save_figure(
        rl_figures.return_curves(
            episodes.steps, episodes.returns, [s for s, _ in result.evaluations],
            [ev.mean for _, ev in result.evaluations], [ev.std for _, ev in result.evaluations], target,
            title=f"PPO on {exp.env_id}",
        ),
        "returns",
        f"Training episode returns (sampled actions) and their mean over the last 20 episodes; deterministic evaluations "
        f"over {exp.eval_episodes} episodes (mean ± std)" + (f"; dashed: the target {target:g}." if target is not None else "."),
    )
    ctx.run.save_figure(
        rl_figures.panel_grid(_diagnostic_panels(history, episodes, exp), reference_lines=_reference_lines(exp),
                              log_y=("value loss (MSE)",)),
        "diagnostics",
        "PPO's health per update: approximate KL(π_old‖π_θ) (every minibatch, and its mean per update), the fraction "
        "of samples whose ratio was clipped, the critic's explained variance, the policy's entropy, the policy and value losses, "
        "the learning rate, and the training episodes' lengths (continuous control: the policy's mean log σ). "
        "Once every episode lasts until the time limit, the returns hardly vary, and explained variance — a ratio "
        "of two tiny variances — swings widely without meaning anything is wrong.",
    )
    ctx.run.save_model(policy_checkpoint(
        result.policy, exp.env_id, result.obs_normalizer, env_steps=train.env_steps, ppo=asdict(exp.ppo),
        eval_return_mean=final.mean, eval_return_std=final.std,
    ))

    last = history[-1]
    metrics: dict[str, Any] = {
        "env_id": exp.env_id,
        "env_steps": train.env_steps,
        "train_seconds": train.seconds,
        "env_steps_per_second": train.env_steps / train.seconds,
        "updates": len(history),
        "training_episodes": len(episodes),
        "final_eval_return_mean": final.mean,
        "final_eval_return_std": final.std,
        "final_eval_returns": final.returns,
        "eval_episodes": len(final.returns),
        "target": target,
        "target_met": final.mean >= target if target is not None else None,
        "first_eval_step_at_target": first_at_target,
        "train_rolling20_first_at_target_step": episodes.steps[solved_index] if solved_index is not None else None,
        "evaluations": [{"env_steps": s, "mean": ev.mean, "std": ev.std} for s, ev in result.evaluations],
        "first_ratio_max_deviation": max(deviations),
        "last_update": {k: v for k, v in last.items() if k != "minibatch_kl"},
        "early_stopped_updates": sum(h["early_stopped"] for h in history),
    }
    return result, metrics


def _diagnostic_panels(history: list[dict], episodes: EpisodeLog, exp: Experiment) -> dict:
    steps = [h["env_steps"] for h in history]
    batch = exp.ppo.n_steps * exp.n_envs
    mb_x, mb_kl = [], []
    for h in history:  # spread each update's minibatches over the steps of its rollout
        n = len(h["minibatch_kl"])
        mb_x += list(h["env_steps"] - batch + batch * (np.arange(n) + 1) / max(n, 1))
        mb_kl += h["minibatch_kl"]

    def col(key: str) -> list[float]:
        return [h[key] for h in history]

    panels = {
        "approx KL(π_old ‖ π_θ)": {"per minibatch": (mb_x, mb_kl), "mean per update": (steps, col("approx_kl"))},
        "clip fraction": {"": (steps, col("clip_fraction"))},
        "explained variance of V\n(noise once the returns hardly vary)": {"": (steps, col("explained_variance"))},
        "entropy of π": {"": (steps, col("entropy"))},
        "policy loss (−L^CLIP)": {"": (steps, col("policy_loss"))},
        "value loss (MSE)": {"": (steps, col("value_loss"))},
        "learning rate": {"": (steps, col("lr"))},
    }
    if not math.isnan(history[-1]["log_std_mean"]):
        panels["mean log σ of the policy"] = {"": (steps, col("log_std_mean"))}
    else:
        panels["training episode length"] = {"": (episodes.steps, episodes.lengths)}
    return panels


def _reference_lines(exp: Experiment) -> dict[str, float]:
    return {"approx KL(π_old ‖ π_θ)": exp.ppo.target_kl} if exp.ppo.target_kl > 0 else {}


def eval_table(result: ExperimentResult, target: float | None) -> list[tuple[str, ...]]:
    if target is None:
        return [("env steps", "evaluation return (mean ± std)"),
                *((f"{step:,}", f"{ev.mean:.1f} ± {ev.std:.1f}") for step, ev in result.evaluations)]
    rows: list[tuple[str, ...]] = [("env steps", "evaluation return (mean ± std)", f"≥ {target:g}")]
    for step, ev in result.evaluations:
        rows.append((f"{step:,}", f"{ev.mean:.1f} ± {ev.std:.1f}", "yes" if ev.mean >= target else "no"))
    return rows
