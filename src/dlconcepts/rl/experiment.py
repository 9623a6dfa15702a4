"""One PPO experiment, as the labs and the benchmark run it: build, train, evaluate now and then.

Everything a run needs is in `Experiment` (plain values); `run_experiment` builds the environments,
the actor-critic and the normalizers, trains with `train_ppo`, evaluates the deterministic policy
every `eval_every` environment steps and once more at the end, and returns all of it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from dlconcepts.checkpoints import Checkpoints
from dlconcepts.nets.actor_critic import ActorCritic, ActorCriticSpec
from dlconcepts.rl.envs import make_vector_env, space_info
from dlconcepts.rl.evaluate import Evaluation, evaluate
from dlconcepts.rl.normalization import ObservationNormalizer, RewardScaler
from dlconcepts.rl.ppo import PPOConfig, TrainResult, UpdateStats, train_ppo
from dlconcepts.rl.rollout import EpisodeLog

EVAL_SEED_OFFSET = 1_000_000  # evaluation episodes never start from a training episode's seed


@dataclass(frozen=True)
class Experiment:
    """The environment, the network, the preprocessing and the PPO settings of one run."""

    env_id: str
    n_envs: int
    total_steps: int
    seed: int
    ppo: PPOConfig
    hidden: tuple[int, ...] = (64, 64)
    activation: str = "tanh"
    shared_trunk: bool = False
    log_std_init: float = 0.0
    normalize_obs: bool = False
    scale_rewards: bool = False
    async_envs: bool = False
    eval_every: int = 10_000  # 0: evaluate only at the end
    eval_episodes: int = 20


@dataclass
class ExperimentResult:
    policy: ActorCritic
    obs_normalizer: ObservationNormalizer | None
    train: TrainResult
    evaluations: list[tuple[int, Evaluation]] = field(default_factory=list)  # (env steps, evaluation)

    @property
    def final(self) -> Evaluation | None:
        return self.evaluations[-1][1] if self.evaluations else None


class EvaluationSchedule:
    """`train_ppo`'s callback in an experiment: hands each update on, evaluates every `eval_every` env steps.

    Its state — the evaluations made so far and the step of the next — is saved in the run's checkpoints,
    so a resumed run neither repeats an evaluation nor skips one. (Evaluating draws from no global RNG:
    the actions are the most likely ones and the episodes start from their own seeds.)"""

    def __init__(self, exp: Experiment, policy: ActorCritic, obs_normalizer: ObservationNormalizer | None,
                 on_update: Callable[[UpdateStats, EpisodeLog], bool | None] | None = None,
                 on_evaluation: Callable[[int, Evaluation], None] | None = None):
        self.exp, self.policy, self.obs_normalizer = exp, policy, obs_normalizer
        self.on_update, self.on_evaluation = on_update, on_evaluation
        self.evaluations: list[tuple[int, Evaluation]] = []
        self.next_eval = exp.eval_every

    def evaluate_now(self, step: int) -> None:
        exp = self.exp
        result = evaluate(self.policy, exp.env_id, exp.eval_episodes, exp.seed + EVAL_SEED_OFFSET, self.obs_normalizer)
        self.evaluations.append((step, result))
        if self.on_evaluation is not None:
            self.on_evaluation(step, result)

    def __call__(self, stats: UpdateStats, episodes: EpisodeLog) -> bool:
        stop = bool(self.on_update(stats, episodes)) if self.on_update is not None else False
        if self.exp.eval_every and stats.env_steps >= self.next_eval:
            self.evaluate_now(stats.env_steps)
            while self.next_eval <= stats.env_steps:
                self.next_eval += self.exp.eval_every
        return stop

    def state_dict(self) -> dict:
        return {"next_eval": self.next_eval,
                "evaluations": [{"step": step, "returns": torch.from_numpy(ev.returns.copy()),
                                 "lengths": torch.from_numpy(ev.lengths.copy())} for step, ev in self.evaluations]}

    def load_state_dict(self, state: dict) -> None:
        self.next_eval = int(state["next_eval"])
        self.evaluations = [(int(ev["step"]), Evaluation(ev["returns"].numpy().copy(), ev["lengths"].numpy().copy()))
                            for ev in state["evaluations"]]


def run_experiment(
    exp: Experiment,
    on_update: Callable[[UpdateStats, EpisodeLog], bool | None] | None = None,
    on_evaluation: Callable[[int, Evaluation], None] | None = None,
    evaluate_at_end: bool = True,
    checkpoints: Checkpoints | None = None,
) -> ExperimentResult:
    """Train and evaluate. `on_update` may return True to stop training early.

    Seed torch (runtime.seed_everything) before calling: it draws the initial weights and the actions.
    `checkpoints` (the run's): training is saved after updates and, resumed, continues where it stopped;
    the evaluations made before the stop come back from the checkpoint."""
    envs = make_vector_env(exp.env_id, exp.n_envs, asynchronous=exp.async_envs)
    try:
        space = space_info(envs.single_observation_space, envs.single_action_space)
        spec = ActorCriticSpec(space.obs_dim, space.action_dim, space.continuous, tuple(exp.hidden), exp.activation,
                               exp.shared_trunk, exp.log_std_init)
        policy = ActorCritic(spec)
        obs_normalizer = ObservationNormalizer(space.obs_dim) if exp.normalize_obs else None
        reward_scaler = RewardScaler(exp.n_envs, exp.ppo.gamma) if exp.scale_rewards else None
        schedule = EvaluationSchedule(exp, policy, obs_normalizer, on_update, on_evaluation)
        train = train_ppo(envs, policy, exp.ppo, exp.total_steps, exp.seed, obs_normalizer, reward_scaler, schedule,
                          checkpoints)
    finally:
        envs.close()
    evaluations = schedule.evaluations
    if evaluate_at_end and (not evaluations or evaluations[-1][0] != train.env_steps):
        schedule.evaluate_now(train.env_steps)
    return ExperimentResult(policy, obs_normalizer, train, evaluations)
