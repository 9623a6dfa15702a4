"""Our PPO against Stable-Baselines3's on MuJoCo's Walker2d: env steps/s with updates, and 1M-step wall time.

Beside the 1M-step wall time each contender's rate implies: ours' evaluation return against steps, from
finished runs.

The issue's target: our 1M-step wall time ≤ 0.5 × the 1M-step wall time SB3's PPO implies with RL-Zoo's
Walker2d settings, both measured in the same run of this script on the same machine.

Contenders, each trained for the same fixed budget of environment steps (`--budget`, rounded up to whole
rollouts of both), in one process, one after the other:
- ours: the `ppo-walker` lab exactly as `dlc run ppo-walker` builds it — its `Config()` defaults, read when
  this script runs (they are still being tuned; the table printed first shows what was compared), with
  `total_steps` set to the budget and no evaluations during training;
- SB3: `stable_baselines3.PPO` with RL-Zoo's tuned Walker2d hyperparameters (rl-baselines3-zoo,
  hyperparams/ppo.yml, the Walker2d-v3 entry): normalize true (VecNormalize of observations and rewards,
  γ 0.99), n_envs 1, MlpPolicy (separate 64-64 tanh networks, orthogonal init, log σ 0), n_steps 512,
  batch_size 32, n_epochs 20, learning_rate 5.05041e-05, ent_coef 0.000585045, clip_range 0.1,
  gae_lambda 0.95, max_grad_norm 1, vf_coef 0.871923; the environment made by `make_vec_env` (a Monitor
  inside a DummyVecEnv), as the Zoo does. The Zoo tuned them on Walker2d-v3, which needs mujoco-py (no
  longer installable); both contenders here run Walker2d-v5, the same walker on the maintained `mujoco`
  bindings.

What is timed: training only, for both — ours' `TrainResult.seconds` (from the first environment reset
to the end of the last update) and SB3's `model.learn(budget)` (which also starts with the reset).
Building the environments and the networks is outside the clock for both. Both include every rollout
and every update (GAE, epochs of minibatches), neither any evaluation. env steps/s = steps / seconds;
the implied 1M-step wall time = 1e6 / (env steps/s). The cost of a step does not depend on how far
training has got (early episodes are short, so resets are more frequent, which costs both alike), so a
budget of tens of thousands of steps measures the rate a 1M-step run sees.

Both run with `torch.set_num_threads(1)`, as the lab does: networks of 64 units on batches of 1–64 rows
are far too small to split across threads, and a second thread only adds synchronization (and on a busy
machine waits for a core). `--sb3-all-threads` also measures SB3 with torch's default thread count, so no
one can say SB3 was held back; the verdict is then taken against the faster of the two SB3 settings. (On
a machine shared with other work that setting can be ten times slower than one thread, and take as long.)
Before the clock starts, both train one short run untimed (imports, torch's first optimizer step).
The contenders take turns, round after round, starting one place later each round, so machine noise hits
them alike; the table shows the median of `--repeats` rounds, each with the same seed (the same work).

Ours' evaluation return against steps: pass `--runs DIR [DIR ...]`, finished `dlc run ppo-walker --seed S`
run directories (their metrics.json holds every periodic evaluation). Their 1M-step wall time is their own
measured training time scaled to 1M steps, so it includes their periodic evaluations and checkpoint saves,
which this script's budget runs leave out.

Run it with `.venv/bin/python benchmarks/ppo_walker_vs_sb3.py [--budget N] [--repeats N] [--runs DIR ...]
[--sb3-all-threads] [--json PATH]` after `pip install -e ".[bench]"` (stable-baselines3 is a
benchmark-only dependency) and `pip install "gymnasium[mujoco]"`. On a machine shared with other work the
numbers are noisy: compare ratios measured in the same run only. With the defaults it takes 3–5 minutes on
2 cores, nearly all of it SB3's.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import statistics
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from common import load_average, positive_int

ONE_MILLION = 1_000_000
TARGET_RATIO = 0.5  # ours' 1M-step wall time / SB3's, at most
DEFAULT_BUDGET = 20_480  # 40 of SB3's 512-step rollouts
SEED = 0

RL_ZOO_WALKER2D = {  # rl-baselines3-zoo, hyperparams/ppo.yml, Walker2d-v3 (verbatim)
    "normalize": True,
    "n_envs": 1,
    "policy": "MlpPolicy",
    "n_timesteps": 1e6,
    "batch_size": 32,
    "n_steps": 512,
    "gamma": 0.99,
    "learning_rate": 5.05041e-05,
    "ent_coef": 0.000585045,
    "clip_range": 0.1,
    "n_epochs": 20,
    "gae_lambda": 0.95,
    "max_grad_norm": 1,
    "vf_coef": 0.871923,
}
SB3_ROLLOUT = RL_ZOO_WALKER2D["n_steps"] * RL_ZOO_WALKER2D["n_envs"]


# -- what is needed, and the budget ----------------------------------------------------------------------------


def missing_dependency() -> str | None:
    """The error line for a missing stable-baselines3 or MuJoCo, or None if both are there."""
    try:
        import stable_baselines3  # noqa: F401
    except ImportError:
        return 'error: stable-baselines3 is not installed; pip install -e ".[bench]"'
    try:
        import mujoco  # noqa: F401
    except ImportError:
        return 'error: MuJoCo is not installed (Walker2d needs it); pip install "gymnasium[mujoco]"'
    return None


def whole_rollouts(budget: int, *rollouts: int) -> int:
    """The smallest multiple of every rollout size that is ≥ budget: both contenders run exactly that many steps."""
    step = math.lcm(*rollouts)
    return -(-budget // step) * step


def ours_config(budget: int) -> Any:
    """The lab's Config as `dlc run ppo-walker` would use it, trained for `budget` steps without evaluations."""
    from dlconcepts.labs.ppo_walker import Config

    return dataclasses.replace(Config(), total_steps=budget, eval_every=0)


# -- one timed training run of each ----------------------------------------------------------------------------


@dataclass
class Measurement:
    env_steps: int
    seconds: float
    collect_seconds: float | None = None  # SB3 only: time inside collect_rollouts (the rest is its updates)

    @property
    def steps_per_second(self) -> float:
        return self.env_steps / self.seconds


def train_ours(budget: int, seed: int) -> Measurement:
    from dlconcepts.labs._ppo import experiment_from_config
    from dlconcepts.labs.ppo_walker import ENV_ID
    from dlconcepts.rl.experiment import run_experiment
    from dlconcepts.runtime import seed_everything

    seed_everything(seed)
    exp = experiment_from_config(ours_config(budget), ENV_ID, seed)
    train = run_experiment(exp, evaluate_at_end=False).train  # seconds: first reset to end of last update
    return Measurement(train.env_steps, train.seconds)


def train_sb3(budget: int, seed: int) -> Measurement:
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    from dlconcepts.labs.ppo_walker import ENV_ID

    class CollectionClock(BaseCallback):
        """Adds up the time between the start and the end of each rollout: SB3's collection time."""

        def __init__(self) -> None:
            super().__init__()
            self.seconds = 0.0
            self._started = 0.0

        def _on_rollout_start(self) -> None:
            self._started = time.perf_counter()

        def _on_rollout_end(self) -> None:
            self.seconds += time.perf_counter() - self._started

        def _on_step(self) -> bool:
            return True

    zoo = RL_ZOO_WALKER2D
    env = VecNormalize(make_vec_env(ENV_ID, n_envs=zoo["n_envs"], seed=seed), gamma=zoo["gamma"])
    model = PPO(
        zoo["policy"], env, n_steps=zoo["n_steps"], batch_size=zoo["batch_size"], gamma=zoo["gamma"],
        learning_rate=zoo["learning_rate"], ent_coef=zoo["ent_coef"], clip_range=zoo["clip_range"],
        n_epochs=zoo["n_epochs"], gae_lambda=zoo["gae_lambda"], max_grad_norm=zoo["max_grad_norm"],
        vf_coef=zoo["vf_coef"], device="cpu", seed=seed, verbose=0,
    )
    clock = CollectionClock()
    start = time.perf_counter()
    model.learn(total_timesteps=budget, callback=clock)
    seconds = time.perf_counter() - start
    env.close()
    return Measurement(model.num_timesteps, seconds, clock.seconds)


# -- the contenders, in turns ----------------------------------------------------------------------------------


@dataclass
class Contender:
    name: str
    library: str  # "ours" or "sb3"
    threads: int
    measurements: list[Measurement] = field(default_factory=list)

    def train(self, budget: int, seed: int) -> Measurement:
        torch.set_num_threads(self.threads)
        return (train_ours if self.library == "ours" else train_sb3)(budget, seed)

    def rates(self) -> list[float]:
        return [m.steps_per_second for m in self.measurements]

    def median_rate(self) -> float:
        return statistics.median(self.rates())

    def implied_1m_seconds(self) -> float:
        return ONE_MILLION / self.median_rate()

    def collect_fraction(self) -> float | None:
        fractions = [m.collect_seconds / m.seconds for m in self.measurements if m.collect_seconds is not None]
        return statistics.median(fractions) if fractions else None


def lineup(default_threads: int, sb3_all_threads: bool) -> list[Contender]:
    contenders = [Contender("ours (ppo-walker)", "ours", 1), Contender("SB3 (RL-Zoo)", "sb3", 1)]
    if sb3_all_threads:
        contenders.append(Contender("SB3 (RL-Zoo)", "sb3", default_threads))
    return contenders


def warm_up(contenders: list[Contender], ours_rollout: int) -> None:
    """Pay the one-time costs (imports, MuJoCo's first model, torch's first optimizer step) off the clock."""
    for c in contenders:
        c.train(ours_rollout if c.library == "ours" else SB3_ROLLOUT, seed=12345)


def benchmark(contenders: list[Contender], budget: int, repeats: int, seed: int) -> None:
    for r in range(repeats):
        k = r % len(contenders)
        for c in contenders[k:] + contenders[:k]:
            m = c.train(budget, seed)
            if m.env_steps != budget:
                raise RuntimeError(f"{c.name} ran {m.env_steps:,} env steps instead of {budget:,}")
            c.measurements.append(m)
            split = (f"; {m.collect_seconds / m.seconds:.0%} of it collecting rollouts"
                     if m.collect_seconds is not None else "")
            print(f"  round {r + 1}: {c.name}, {plural(c.threads, 'thread')}: "
                  f"{m.steps_per_second:,.0f} env steps/s ({m.env_steps:,} steps in {m.seconds:.1f} s{split})",
                  flush=True)


# -- the report ------------------------------------------------------------------------------------------------


def duration(seconds: float) -> str:
    """Minutes from 2 minutes on, seconds below."""
    return f"{seconds / 60:.1f} min" if seconds >= 120 else f"{seconds:.1f} s"


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def settings_table(cfg: Any) -> str:
    """What each contender does per environment step: the numbers that decide its speed, side by side."""
    zoo = RL_ZOO_WALKER2D
    ours_rollout = cfg.n_envs * cfg.n_steps
    rows = [
        ("environments × steps per rollout",
         f"{cfg.n_envs} × {cfg.n_steps} = {ours_rollout:,}{' (async)' if cfg.async_envs else ''}",
         f"{zoo['n_envs']} × {zoo['n_steps']} = {SB3_ROLLOUT:,}"),
        ("epochs × minibatch size", f"{cfg.n_epochs} × {cfg.minibatch_size}", f"{zoo['n_epochs']} × {zoo['batch_size']}"),
        ("gradient steps per env step", f"{cfg.n_epochs / cfg.minibatch_size:.3f}",
         f"{zoo['n_epochs'] / zoo['batch_size']:.3f}"),
        ("networks", f"{'-'.join(map(str, cfg.hidden))} {cfg.activation}, {'shared trunk' if cfg.shared_trunk else 'separate'}",
         "64-64 tanh, separate"),
        ("learning rate", f"{cfg.lr:g}{', annealed to 0' if cfg.anneal_lr else ''}", f"{zoo['learning_rate']:g}"),
        ("clip ε, vf coef, ent coef, max grad norm",
         f"{cfg.clip_range:g}, {cfg.vf_coef:g}, {cfg.ent_coef:g}, {cfg.max_grad_norm:g}",
         f"{zoo['clip_range']:g}, {zoo['vf_coef']:g}, {zoo['ent_coef']:g}, {zoo['max_grad_norm']:g}"),
        ("γ, λ", f"{cfg.gamma:g}, {cfg.gae_lambda:g}", f"{zoo['gamma']:g}, {zoo['gae_lambda']:g}"),
        ("normalized observations, scaled rewards", f"{cfg.normalize_obs}, {cfg.scale_rewards}", "True, True (VecNormalize)"),
    ]
    header = ("", "ours: ppo-walker Config()", "SB3: RL-Zoo Walker2d")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(3)]
    lines = ["  ".join(f"{cell:<{w}}" for cell, w in zip(header, widths)).rstrip(), "-" * (sum(widths) + 4)]
    lines += ["  ".join(f"{cell:<{w}}" for cell, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines)


def results_table(contenders: list[Contender]) -> str:
    header = (f"{'contender':<20} {'threads':>7} {'env steps/s':>12} {'min-max':>13} {'1M-step wall time':>18} "
              f"{'time collecting':>16}")
    lines = [header, "-" * len(header)]
    for c in contenders:
        rates = c.rates()
        fraction = c.collect_fraction()
        lines.append(f"{c.name:<20} {c.threads:>7} {c.median_rate():>12,.0f} {f'{min(rates):,.0f}-{max(rates):,.0f}':>13} "
                     f"{duration(c.implied_1m_seconds()):>18} {f'{fraction:.0%}' if fraction is not None else '–':>16}")
    return "\n".join(lines)


def fastest_sb3(contenders: list[Contender]) -> Contender:
    """The SB3 setting the target is judged against: the faster one, where both thread counts were timed."""
    return min((c for c in contenders if c.library == "sb3"), key=lambda c: c.implied_1m_seconds())


def verdict(contenders: list[Contender]) -> tuple[list[str], float]:
    """The ratios ours / SB3 in words, and the one the target is judged on."""
    ours = next(c for c in contenders if c.library == "ours")
    lines = [f"ours / SB3 with {plural(c.threads, 'thread')}, 1M-step wall time: "
             f"{ours.implied_1m_seconds() / c.implied_1m_seconds():.2f}" for c in contenders if c.library == "sb3"]
    fastest = fastest_sb3(contenders)
    ratio = ours.implied_1m_seconds() / fastest.implied_1m_seconds()
    lines.append(f"target: ours ≤ {TARGET_RATIO} × SB3 ({duration(ours.implied_1m_seconds())} against "
                 f"{TARGET_RATIO} × {duration(fastest.implied_1m_seconds())}): "
                 f"{'MET' if ratio <= TARGET_RATIO else 'NOT met'} ({ratio:.2f})")
    return lines, ratio


# -- ours' finished runs: evaluation return against steps ------------------------------------------------------


@dataclass
class FinishedRun:
    path: Path
    seed: int
    config: dict[str, Any]
    evaluations: list[dict[str, float]]  # {"env_steps", "mean", "std"}
    env_steps: int
    train_seconds: float
    final_eval_return_mean: float

    @property
    def seconds_per_1m(self) -> float:
        return self.train_seconds * ONE_MILLION / self.env_steps


def load_run(path: Path) -> FinishedRun:
    """A finished `dlc run ppo-walker` directory; otherwise a ValueError that names what is wrong."""
    try:
        metrics = json.loads((path / "metrics.json").read_text(encoding="utf-8"))
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable run directory ({exc})") from None
    if config.get("lab") != "ppo-walker":
        raise ValueError(f"{path}: a run of {config.get('lab')!r}, not of ppo-walker")
    if metrics.get("status", "completed") != "completed" or "evaluations" not in metrics:
        raise ValueError(f"{path}: not finished (status {metrics.get('status')!r}); wait for it or resume it")
    return FinishedRun(path, int(config["runtime"]["seed"]), config["config"], metrics["evaluations"],
                       int(metrics["env_steps"]), float(metrics["train_seconds"]), float(metrics["final_eval_return_mean"]))


def run_labels(runs: list[FinishedRun]) -> list[str]:
    seeds = [r.seed for r in runs]
    if len(set(seeds)) == len(seeds):
        return [f"seed {s}" for s in seeds]
    return [r.path.name for r in runs]  # the same seed twice: tell them apart by directory


def evaluation_table(runs: list[FinishedRun], labels: list[str]) -> str:
    steps = sorted({int(e["env_steps"]) for r in runs for e in r.evaluations})
    by_run = [{int(e["env_steps"]): float(e["mean"]) for e in r.evaluations} for r in runs]
    width = max(10, *(len(label) for label in labels))
    header = f"{'env steps':>10} " + " ".join(f"{label:>{width}}" for label in labels) + f" {'median':>{width}}"
    lines = [header, "-" * len(header)]
    for step in steps:
        values = [returns.get(step) for returns in by_run]
        present = [v for v in values if v is not None]
        median = f"{statistics.median(present):,.0f}" + ("" if len(present) == len(values) else "*")
        lines.append(f"{step:>10,} " + " ".join(f"{f'{v:,.0f}' if v is not None else '–':>{width}}" for v in values)
                     + f" {median:>{width}}")
    if any(len(set(by_run[0]) ^ set(r)) for r in by_run[1:]):
        lines.append("* median of the runs evaluated at that step only")
    return "\n".join(lines)


def config_differences(run: FinishedRun, today: dict[str, Any]) -> list[str]:
    """The run's hyperparameters that differ from today's Config() (run length and evaluation schedule aside)."""
    ignore = {"total_steps", "eval_every", "eval_episodes"}
    return [f"{k} {run.config[k]} (now {today[k]})" for k in today
            if k not in ignore and k in run.config and _plain(run.config[k]) != _plain(today[k])]


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value  # JSON turned the tuples into lists


def runs_report(runs: list[FinishedRun], sb3: Contender) -> list[str]:
    from dlconcepts.labs.ppo_walker import Config

    today = dataclasses.asdict(Config())
    labels = run_labels(runs)
    lines = ["ours: deterministic evaluation return against environment steps (from --runs)",
             evaluation_table(runs, labels), "",
             f"ours' measured 1M-step wall time (training time scaled to 1M steps; it includes the run's periodic "
             f"evaluations and checkpoints) "
             f"against SB3's implied {duration(sb3.implied_1m_seconds())} ({plural(sb3.threads, 'thread')}, this run):"]
    for run, label in zip(runs, labels):
        ratio = run.seconds_per_1m / sb3.implied_1m_seconds()
        lines.append(f"  {label}: {run.env_steps:,} steps in {duration(run.train_seconds)} → {duration(run.seconds_per_1m)} "
                     f"per 1M, {ratio:.2f} × SB3 ({'≤' if ratio <= TARGET_RATIO else '>'} {TARGET_RATIO}); "
                     f"final evaluation {run.final_eval_return_mean:,.0f}  [{run.path}]")
        differences = config_differences(run, today)
        if differences:
            lines.append(f"    run with other settings than today's Config(): {', '.join(differences)}")
    return lines


# -- main ------------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=positive_int, default=DEFAULT_BUDGET,
                        help=f"env steps per timed run, rounded up to whole rollouts of both (default {DEFAULT_BUDGET:,})")
    parser.add_argument("--repeats", type=positive_int, default=3, help="rounds; the median is shown (default 3)")
    parser.add_argument("--seed", type=int, default=SEED, help=f"seed of every timed run (default {SEED})")
    parser.add_argument("--sb3-all-threads", action="store_true",
                        help="also time SB3 with torch's default thread count (on a busy machine many times slower: "
                             "each extra thread waits for a core)")
    parser.add_argument("--runs", type=Path, nargs="+", default=[], metavar="DIR",
                        help="finished `dlc run ppo-walker` run directories: their evaluation returns and wall times")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the results here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    problem = missing_dependency()
    if problem is not None:
        print(problem, file=sys.stderr)
        return 2
    try:
        runs = [load_run(path) for path in args.runs]
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    warnings.filterwarnings("ignore", module=r"(gymnasium|stable_baselines3)\b")
    default_threads = torch.get_num_threads()
    from dlconcepts.labs.ppo_walker import ENV_ID
    import stable_baselines3

    cfg = ours_config(args.budget)
    ours_rollout = cfg.n_envs * cfg.n_steps
    budget = whole_rollouts(args.budget, ours_rollout, SB3_ROLLOUT)
    cfg = ours_config(budget)  # as timed: the budget in whole rollouts
    contenders = lineup(default_threads, args.sb3_all_threads)
    print(f"PPO on {ENV_ID}: ours against Stable-Baselines3 {stable_baselines3.__version__} with RL-Zoo's Walker2d "
          f"hyperparameters\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"1-minute load average {load_average()}; torch {torch.__version__}, Python {platform.python_version()}\n"
          f"{budget:,} env steps per timed run ({plural(budget // ours_rollout, 'rollout')} of ours, "
          f"{budget // SB3_ROLLOUT:,} of SB3's), median of {plural(args.repeats, 'round')}, seed {args.seed}; "
          f"building the environments and networks outside the clock\n")
    print(settings_table(cfg) + "\n", flush=True)

    warm_up(contenders, ours_rollout)
    benchmark(contenders, budget, args.repeats, args.seed)
    print()
    print(results_table(contenders))
    print(f"(1M-step wall time = 1e6 / env steps/s, evaluations excluded; time collecting: SB3's share in "
          f"collect_rollouts, the rest is its updates)\n1-minute load average after: {load_average()}\n")
    lines, ratio = verdict(contenders)
    print("\n".join(lines))

    print()
    if runs:
        print("\n".join(runs_report(runs, fastest_sb3(contenders))))
    else:
        print("ours' evaluation return against steps: pass --runs DIR ... with finished runs of "
              "`dlc run ppo-walker --seed S` (e.g. seeds 0, 1, 2).")

    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "env_id": ENV_ID, "budget": budget, "repeats": args.repeats, "seed": args.seed,
            "machine": {"cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
                        "torch": torch.__version__, "stable_baselines3": stable_baselines3.__version__},
            "ours_config": dataclasses.asdict(cfg), "sb3_hyperparameters": RL_ZOO_WALKER2D,
            "contenders": [{"name": c.name, "threads": c.threads, "env_steps_per_s": c.rates(),
                            "median_env_steps_per_s": c.median_rate(), "implied_1m_seconds": c.implied_1m_seconds(),
                            "collect_fraction": c.collect_fraction()} for c in contenders],
            "ratio_ours_over_fastest_sb3": ratio, "target_ratio": TARGET_RATIO, "target_met": ratio <= TARGET_RATIO,
            "runs": [{"path": str(r.path), "seed": r.seed, "env_steps": r.env_steps, "train_seconds": r.train_seconds,
                      "seconds_per_1m": r.seconds_per_1m, "final_eval_return_mean": r.final_eval_return_mean,
                      "evaluations": r.evaluations} for r in runs],
        }, indent=2) + "\n")
        print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
