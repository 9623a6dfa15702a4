"""Lab `ppo-gym`: the PPO actor-critic of `ppo-cartpole` and `ppo-pendulum` on any Gymnasium environment.

`dlc rl --env ENV_ID` is this lab (`dlc run ppo-gym --set env=ENV_ID`). The three steps are those of the
two course labs, chosen by the environment's action space:
(1) the actor π(a|s) is categorical over a Discrete action space (CartPole's case) or a diagonal Gaussian
with a learned, state-independent log σ over a flat Box (Pendulum's case), the critic V(s) beside it;
(2) the clipped surrogate plus the critic's MSE, minus an entropy bonus; (3) Adam on minibatches.
Observations must be a flat Box (a vector): an image, a Discrete state (FrozenLake) or a Tuple
(Blackjack) is refused in one line, before any run directory is made.

Defaults chosen by the kind of action space (a layer of the config: defaults → these → quick → TOML →
--set, so any key set explicitly wins; config.json records what was used):
- Discrete actions, the dataclass's own defaults — CleanRL's ppo.py (Huang et al. 2022, "The 37
  implementation details of PPO"): 8 environments × 128 steps, 4 epochs of minibatches of 256, entropy
  bonus 0.01, raw observations and rewards; Adam at 1e-3 annealed rather than CleanRL's 2.5e-4, which left
  one of three Acrobot-v1 seeds at −316 after 200k steps (1e-3: −79 to −81);
- Box actions — CleanRL's ppo_continuous_action.py: 1 environment × 2048 steps, 10 epochs of
  minibatches of 64, Adam 3e-4 annealed, no entropy bonus, observations normalized and rewards scaled by
  running statistics (their scales are unknown in advance for an arbitrary environment). They also solve
  MountainCarContinuous-v0, where plain PPO is known to learn to stand still (the action costs, and only the
  flag pays): σ starts at 1, so a few episodes in a hundred reach the flag by chance, and the reward scaling
  makes those +100s dominate the advantages (seeds 0–4: 93.6–93.9 at 200k steps, threshold 90).
`target` defaults to the environment's own `spec.reward_threshold` — Gymnasium's "solved" level
(Acrobot-v1: −100, MountainCarContinuous-v0: 90) — and to none where it declares none.

Checkpoints: `dlc run --resume` continues a run from its last checkpoint only for environments whose
whole state `dlconcepts.rl.envs` knows how to save; any other environment trains without checkpoints,
and its log says so.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

from dlconcepts.config import param
from dlconcepts.errors import UserError, did_you_mean
from dlconcepts.labs._ppo import (LOSS, MINIMIZER, check_config, eval_table, experiment_from_config, ppo_param,
                                  run_and_report)
from dlconcepts.labs.base import Lab, LabContext, Result
from dlconcepts.rl.envs import why_not_checkpointable

DEFAULT_ENV = "Acrobot-v1"


@dataclass(frozen=True)
class Config:
    env: str = param(DEFAULT_ENV, "Gymnasium environment id: vector observations, Discrete or Box actions")
    target: float | None = param(None, "the evaluation return to reach (default: the environment's reward_threshold; "
                                       "none where it has none)")
    total_steps: int = ppo_param("total_steps", 200_000)
    n_envs: int = ppo_param("n_envs", 8)
    async_envs: bool = ppo_param("async_envs", False)
    n_steps: int = ppo_param("n_steps", 128)
    n_epochs: int = ppo_param("n_epochs", 4)
    minibatch_size: int = ppo_param("minibatch_size", 256)
    lr: float = ppo_param("lr", 1e-3)
    anneal_lr: bool = ppo_param("anneal_lr", True)
    gamma: float = ppo_param("gamma", 0.99)
    gae_lambda: float = ppo_param("gae_lambda", 0.95)
    clip_range: float = ppo_param("clip_range", 0.2)
    anneal_clip: bool = ppo_param("anneal_clip", False)
    clip_value: float = ppo_param("clip_value", 0.0)
    vf_coef: float = ppo_param("vf_coef", 0.5)
    ent_coef: float = ppo_param("ent_coef", 0.01)
    max_grad_norm: float = ppo_param("max_grad_norm", 0.5)
    target_kl: float = ppo_param("target_kl", 0.0)
    normalize_advantage: bool = ppo_param("normalize_advantage", True)
    bootstrap_truncation: bool = ppo_param("bootstrap_truncation", True)
    normalize_obs: bool = ppo_param("normalize_obs", False)
    scale_rewards: bool = ppo_param("scale_rewards", False)
    log_std_init: float = ppo_param("log_std_init", 0.0, "initial log σ of the Gaussian policy (Box actions only)")
    hidden: tuple[int, ...] = ppo_param("hidden", (64, 64))
    activation: str = ppo_param("activation", "tanh")
    shared_trunk: bool = ppo_param("shared_trunk", False)
    eval_every: int = ppo_param("eval_every", 25_000)
    eval_episodes: int = ppo_param("eval_episodes", 20)

    def check(self) -> None:
        inspect_env(self.env)  # a resumed run's environment must still exist (and be installed)
        check_config(self)


DISCRETE_DEFAULTS: dict[str, Any] = {
    "n_envs": 8, "n_steps": 128, "n_epochs": 4, "minibatch_size": 256, "lr": 1e-3, "ent_coef": 0.01,
    "normalize_obs": False, "scale_rewards": False,
}
"""CleanRL ppo.py's settings (its 4 envs × 128 steps doubled to 8, minibatches of a quarter of the rollout;
the learning rate raised, see the module docstring): also the Config dataclass's own defaults, so that
`Config()` is what the default environment runs."""

BOX_DEFAULTS: dict[str, Any] = {
    "n_envs": 1, "n_steps": 2048, "n_epochs": 10, "minibatch_size": 64, "lr": 3e-4, "ent_coef": 0.0,
    "normalize_obs": True, "scale_rewards": True,
}
"""CleanRL ppo_continuous_action.py's settings (the MuJoCo defaults of the PPO paper)."""

ACTION_SPACE_DEFAULTS = {"Discrete actions": DISCRETE_DEFAULTS, "Box actions": BOX_DEFAULTS}


# ==== the environment, checked before anything runs ===============================================

@dataclass(frozen=True)
class EnvFacts:
    """What the lab needs to know about an environment before it trains on it."""

    env_id: str
    continuous: bool  # Box actions (else Discrete)
    observation_space: str
    action_space: str
    reward_threshold: float | None
    max_episode_steps: int | None


@functools.lru_cache(maxsize=16)
def inspect_env(env_id: str) -> EnvFacts:
    """Make the environment once, read its spaces and spec, close it; refuse in one line what cannot run:
    an id Gymnasium does not know (with the closest ids), an environment whose extra is not installed
    (with the pip command), observations that are not a vector, actions neither Discrete nor a flat Box."""
    import gymnasium as gym

    from dlconcepts.rl.envs import space_info

    if ":" not in env_id and env_id not in gym.registry:  # "module:Env-v0" imports its module first
        raise UserError(f"unknown Gymnasium environment '{env_id}'{did_you_mean(env_id, gym.registry, n=3, cutoff=0.7, ignore_case=True)}; "
                        "list the ids with: python -c \"import gymnasium; gymnasium.pprint_registry()\"")
    try:
        env = gym.make(env_id, disable_env_checker=True)
    except gym.error.DependencyNotInstalled as exc:
        raise UserError(f"Gymnasium environment '{env_id}' needs a package that is not installed: "
                        f"{_first_line(exc)}") from None
    except (gym.error.Error, ImportError) as exc:
        raise UserError(f"cannot make Gymnasium environment '{env_id}': {_first_line(exc)}") from None
    try:
        space = space_info(env.observation_space, env.action_space)
        spec = env.spec
        threshold = spec.reward_threshold if spec is not None else None
        return EnvFacts(env_id, space.continuous, _describe(env.observation_space), _describe(env.action_space),
                        float(threshold) if threshold is not None else None,
                        spec.max_episode_steps if spec is not None else None)
    except UserError as exc:
        raise UserError(f"{env_id}: {exc}") from None
    finally:
        env.close()


def _describe(space: Any) -> str:
    """A space in a few words: Discrete(3); Box(-1, 1, (1,)) with equal bounds; Box((6,)) otherwise."""
    import numpy as np

    if hasattr(space, "low") and hasattr(space, "shape"):
        low, high = np.unique(space.low), np.unique(space.high)
        if len(low) == 1 and len(high) == 1:
            return f"Box({low[0]:g}, {high[0]:g}, {space.shape})"
        return f"Box({space.shape})"
    return str(space)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def defaults_for(cfg: Config) -> dict[str, Any]:
    """The layer of defaults chosen by the environment (Lab.defaults_for): PPO's settings by its kind of
    action space, and the target by its declared reward_threshold."""
    facts = inspect_env(cfg.env)
    return {**(BOX_DEFAULTS if facts.continuous else DISCRETE_DEFAULTS), "target": facts.reward_threshold}


# ==== the run =====================================================================================

def run(cfg: Config, ctx: LabContext) -> Result:
    facts = inspect_env(cfg.env)
    kind = "Box actions" if facts.continuous else "Discrete actions"
    threshold = facts.reward_threshold
    ctx.log(f"  {cfg.env}: observations {facts.observation_space}, actions {facts.action_space}; PPO's defaults "
            f"for {kind}" + (f"; reward_threshold {threshold:g}" if threshold is not None else "; no reward_threshold"))
    reason = why_not_checkpointable(cfg.env)
    if reason is not None:  # one line: why, and what it means for this run
        ctx.log(f"  not resumable: {reason.split(';')[0]}; this run saves no checkpoints (stopped, it starts "
                "again from the beginning)")
    exp = experiment_from_config(cfg, cfg.env, ctx.runtime.seed)
    result, metrics = run_and_report(exp, ctx, cfg.target, resumable=reason is None)
    final = result.final
    assert final is not None
    target = cfg.target
    changed = [f"{k}={getattr(cfg, k)}" for k, v in ACTION_SPACE_DEFAULTS[kind].items() if getattr(cfg, k) != v]
    findings = [
        f"After {metrics['env_steps']:,} environment steps the deterministic policy averages {final.mean:.1f} "
        f"(± {final.std:.1f}) on {cfg.env} over {len(final.returns)} evaluation episodes "
        f"(mean length {final.lengths.mean():.0f} steps).",
        _target_sentence(cfg, facts, final.mean, metrics["first_eval_step_at_target"]),
        f"{cfg.env}'s actions are {facts.action_space}: "
        + (f"a diagonal Gaussian policy, whose standard deviation went from {math.exp(cfg.log_std_init):.2f} to "
           f"{float(result.policy.log_std.detach().exp().mean()):.2f} (mean over the action's coordinates)."
           if facts.continuous else
           f"a categorical policy, its entropy {metrics['last_update']['entropy']:.2f} nats at the last update "
           f"(uniform: {math.log(result.policy.spec.action_dim):.2f})."),
        f"PPO's settings: the defaults for {kind}" + (f", changed: {', '.join(changed)}." if changed else "."),
        f"On the first minibatch of every update the ratio π_θ/π_old deviated from 1 by at most "
        f"{metrics['first_ratio_max_deviation']:.1e} (float rounding).",
        f"{metrics['env_steps_per_second']:,.0f} environment steps per second, updates included "
        f"({metrics['train_seconds']:.1f} s of training)"
        + (f"; not resumable: {cfg.env}'s state is not one rl.envs can checkpoint." if reason is not None else "."),
    ]
    sigma = result.policy.log_std.detach().exp().tolist() if facts.continuous else None
    return Result(
        metrics={**metrics, "action_space": facts.action_space, "observation_space": facts.observation_space,
                 "reward_threshold": facts.reward_threshold, "resumable": reason is None,
                 **({"policy_sigma": sigma} if sigma is not None else {})},
        table=eval_table(result, target),
        findings=findings,
        headline=f"{cfg.env}: evaluation return {final.mean:.1f} after {metrics['env_steps']:,} steps"
                 + (f" (target ≥ {target:g})" if target is not None else ""),
    )


def _target_sentence(cfg: Config, facts: EnvFacts, mean: float, first: int | None) -> str:
    if cfg.target is None:
        return (f"{cfg.env} declares no reward_threshold and no target was given (--set target=...), so none is "
                "checked.")
    threshold = facts.reward_threshold
    where = ("its reward_threshold" if cfg.target == threshold else
             f"given explicitly; its reward_threshold is {threshold:g}" if threshold is not None else "given explicitly")
    reached = (f"; an evaluation first reached it at {first:,} steps (evaluations every {cfg.eval_every:,})"
               if first is not None and cfg.eval_every else "")
    return f"The target {cfg.target:g} ({where}) is {'met' if mean >= cfg.target else 'NOT met'}{reached}."


LAB = Lab(
    id="ppo-gym",
    title="PPO actor-critic on any Gymnasium environment (Discrete or Box actions)",
    function="actor π(a∣s) for {env}: categorical (Discrete actions) or diagonal Gaussian, learned log σ "
             "(Box actions); critic V(s); MLPs {hidden}, {activation}",
    loss=LOSS,
    minimizer=MINIMIZER,
    data="any Gymnasium environment with vector observations (default Acrobot-v1), simulated offline",
    typical_time="~20 s (Acrobot-v1) to ~1 min (MountainCarContinuous-v0) (quick ~5 s)",
    config=Config,
    run=run,
    quick={"total_steps": 16_384, "eval_every": 0, "eval_episodes": 5},
    prefers_cpu="PPO's MLPs on batches of a few observations are far too small to gain from a GPU",
    defaults_for=defaults_for,
    variant_defaults=ACTION_SPACE_DEFAULTS,
)
