"""Our PPO against Stable-Baselines3's on CartPole-v1: environment steps and seconds until solved.

"Solved" is the usual criterion on TRAINING episodes: the mean return of the last 20 finished
episodes first reaches 475. For each seed both contenders train from scratch, in turns, in one
process and on one torch thread each (these networks are far too small to gain from more), so
machine noise hits them alike; the order alternates from seed to seed. Each run stops as soon as it
is solved (or at 100k steps). Reported per run: env steps and wall-clock seconds at the episode
that solved it, and env steps per second over the whole run (collection and updates); then the
medians over seeds and the ratios ours/SB3 (below 1: ours needs fewer steps / less time).

The clock starts before the environments and the model are built, after a warm-up that pays the
one-time costs of both libraries (imports, torch's first optimizer) outside the timing.

Contenders:
- ours: `dlconcepts.rl` with the `ppo-cartpole` lab's default config (see `dlc config ppo-cartpole`);
- SB3: `stable_baselines3.PPO` with the RL-Zoo's tuned CartPole-v1 hyperparameters
  (rl-baselines3-zoo, hyperparams/ppo.yml): n_envs 8, n_timesteps 1e5, policy MlpPolicy,
  n_steps 32, batch_size 256, gae_lambda 0.8, gamma 0.98, n_epochs 20, ent_coef 0.0,
  learning_rate lin_1e-3, clip_range lin_0.2 (both linear schedules from these values to 0 over
  1e5 steps); everything else SB3's defaults (separate 64-64 tanh networks, vf_coef 0.5,
  max_grad_norm 0.5, advantages normalized), environments built by `make_vec_env` as the Zoo does.

Run it with `.venv/bin/python benchmarks/ppo_vs_sb3.py [--seeds 3] [--json out.json]` after
`pip install -e ".[bench]"` (stable-baselines3 is a benchmark-only dependency).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
import warnings
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch

from dlconcepts.labs.ppo_cartpole import Config
from dlconcepts.labs._ppo import experiment_from_config
from dlconcepts.rl.evaluate import first_rolling_mean_at_least
from dlconcepts.rl.experiment import run_experiment
from dlconcepts.runtime import seed_everything

ENV_ID = "CartPole-v1"
TARGET = 475.0
WINDOW = 20
BUDGET = 100_000  # the RL-Zoo's n_timesteps for CartPole-v1; also the lab's total_steps

SB3_HYPERPARAMETERS = {  # rl-baselines3-zoo, hyperparams/ppo.yml, CartPole-v1
    "n_envs": 8,
    "n_timesteps": 100_000,
    "policy": "MlpPolicy",
    "n_steps": 32,
    "batch_size": 256,
    "gae_lambda": 0.8,
    "gamma": 0.98,
    "n_epochs": 20,
    "ent_coef": 0.0,
    "learning_rate": "lin_1e-3",
    "clip_range": "lin_0.2",
}


@dataclass
class Outcome:
    contender: str
    seed: int
    steps_to_solve: int | None  # env steps when the rolling mean of 20 training returns first reached 475
    seconds_to_solve: float | None
    steps_run: int
    seconds_run: float

    @property
    def steps_per_second(self) -> float:
        return self.steps_run / self.seconds_run


def run_ours(seed: int, budget: int = BUDGET) -> Outcome:
    cfg = replace(Config(), total_steps=budget, eval_every=0)
    start = time.perf_counter()
    seed_everything(seed)
    exp = experiment_from_config(cfg, ENV_ID, seed)

    def stop_when_solved(stats, episodes) -> bool:
        return first_rolling_mean_at_least(episodes.returns[-(WINDOW + stats.episodes):], WINDOW, TARGET) is not None

    result = run_experiment(exp, on_update=stop_when_solved, evaluate_at_end=False)
    seconds_run = time.perf_counter() - start
    train = result.train
    index = first_rolling_mean_at_least(train.episodes.returns, WINDOW, TARGET)
    offset = train.started_at - start  # building envs and networks, before collection began
    return Outcome(
        "ours", seed,
        train.episodes.steps[index] if index is not None else None,
        offset + train.episodes.seconds[index] if index is not None else None,
        train.env_steps, seconds_run,
    )


def run_sb3(seed: int, budget: int = BUDGET) -> Outcome:
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    def linear(initial: float):
        return lambda progress_remaining: progress_remaining * initial  # the Zoo's lin_<value>

    class StopWhenSolved(BaseCallback):
        def __init__(self, start: float):
            super().__init__()
            self.start = start
            self.returns: list[float] = []
            self.solved: tuple[int, float] | None = None

        def _on_step(self) -> bool:
            for info in self.locals["infos"]:
                if "episode" in info:  # written by the Monitor wrapper at each episode end
                    self.returns.append(float(info["episode"]["r"]))
                    if len(self.returns) >= WINDOW and np.mean(self.returns[-WINDOW:]) >= TARGET and self.solved is None:
                        self.solved = (self.num_timesteps, time.perf_counter() - self.start)
            return self.solved is None

    hp = SB3_HYPERPARAMETERS
    start = time.perf_counter()
    env = make_vec_env(ENV_ID, n_envs=hp["n_envs"], seed=seed)
    model = PPO(
        hp["policy"], env, n_steps=hp["n_steps"], batch_size=hp["batch_size"], gae_lambda=hp["gae_lambda"],
        gamma=hp["gamma"], n_epochs=hp["n_epochs"], ent_coef=hp["ent_coef"], learning_rate=linear(1e-3),
        clip_range=linear(0.2), seed=seed, device="cpu", verbose=0,
    )
    callback = StopWhenSolved(start)
    model.learn(total_timesteps=min(budget, hp["n_timesteps"]), callback=callback)
    seconds_run = time.perf_counter() - start
    env.close()
    steps, seconds = callback.solved if callback.solved else (None, None)
    return Outcome("sb3", seed, steps, seconds, model.num_timesteps, seconds_run)


def warm_up() -> None:
    """Pay both libraries' one-time costs (lazy imports, torch's first optimizer) before any clock starts."""
    run_ours(seed=12345, budget=2_048)
    run_sb3(seed=12345, budget=2_048)


def median_or_none(values: list) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if len(present) == len(values) else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds per contender (default 3)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for both (default 1)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    print(f"PPO on {ENV_ID}: ours vs Stable-Baselines3 (RL-Zoo hyperparameters), {args.seeds} seeds, "
          f"{args.threads} torch thread(s), {os.cpu_count()} cores, {platform.processor() or platform.machine()}")
    warm_up()
    outcomes: list[Outcome] = []
    for seed in range(args.seeds):
        order = (run_ours, run_sb3) if seed % 2 == 0 else (run_sb3, run_ours)
        for contender in order:
            outcome = contender(seed)
            outcomes.append(outcome)
            solved = (f"solved at {outcome.steps_to_solve:>6,} steps, {outcome.seconds_to_solve:6.2f} s"
                      if outcome.steps_to_solve is not None else f"not solved in {outcome.steps_run:,} steps")
            print(f"  seed {seed}  {outcome.contender:<4}  {solved}  ({outcome.steps_per_second:,.0f} env steps/s)", flush=True)

    summary = {}
    for name in ("ours", "sb3"):
        runs = [o for o in outcomes if o.contender == name]
        summary[name] = {
            "median_steps_to_solve": median_or_none([o.steps_to_solve for o in runs]),
            "median_seconds_to_solve": median_or_none([o.seconds_to_solve for o in runs]),
            "median_steps_per_second": statistics.median(o.steps_per_second for o in runs),
        }
    ratios = {}
    for key in ("median_steps_to_solve", "median_seconds_to_solve", "median_steps_per_second"):
        ours, sb3 = summary["ours"][key], summary["sb3"][key]
        ratios[key] = ours / sb3 if ours is not None and sb3 else None
    print("\n| | ours | SB3 (RL-Zoo) | ours / SB3 |\n|---|---|---|---|")
    for key, label, fmt in (("median_steps_to_solve", "env steps to solve (median)", "{:,.0f}"),
                            ("median_seconds_to_solve", "seconds to solve (median)", "{:.2f}"),
                            ("median_steps_per_second", "env steps/s (median)", "{:,.0f}")):
        ours, sb3, ratio = summary["ours"][key], summary["sb3"][key], ratios[key]
        show = (lambda v: fmt.format(v) if v is not None else "not solved")
        print(f"| {label} | {show(ours)} | {show(sb3)} | {f'{ratio:.2f}' if ratio is not None else '–'} |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"runs": [{**asdict(o), "steps_per_second": o.steps_per_second} for o in outcomes],
                       "summary": summary, "ratios_ours_over_sb3": ratios, "sb3_hyperparameters": SB3_HYPERPARAMETERS,
                       "ours_config": asdict(Config()), "threads": args.threads}, fh, indent=2)


if __name__ == "__main__":
    main()
