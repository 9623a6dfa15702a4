"""Synchronous or asynchronous vector environments? Measured, for each PPO lab's environment.

`SyncVectorEnv` steps the N copies one after another in this process; `AsyncVectorEnv` gives each copy
a process of its own and pays for it with two pipe messages (pickled actions, observations and infos)
per copy per step. Which is faster depends on how long one step of the physics takes next to that
messaging, and on how many cores there are to step copies in parallel.

For each environment the script collects rollouts exactly as PPO does (`RolloutCollector`: the policy's
batched forward pass, the environments' step, normalizers, the buffer writes) with the lab's own
n_envs, network and normalization, once with synchronous and once with asynchronous copies, and prints
environment steps per second (collection only, no updates; median of --repeats, alternating the order).

    .venv/bin/python benchmarks/vector_env_modes.py [--steps 20000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch
from common import load_average, positive_int

from dlconcepts.labs import get_lab
from dlconcepts.nets.actor_critic import ActorCritic, ActorCriticSpec
from dlconcepts.rl.envs import make_vector_env, space_info
from dlconcepts.rl.normalization import ObservationNormalizer, RewardScaler
from dlconcepts.rl.rollout import RolloutBuffer, RolloutCollector

LABS = {"ppo-cartpole": "CartPole-v1", "ppo-pendulum": "Pendulum-v1", "ppo-walker": "Walker2d-v5"}


def steps_per_second(lab_id: str, env_id: str, asynchronous: bool, steps: int) -> float:
    cfg = get_lab(lab_id).config()
    envs = make_vector_env(env_id, cfg.n_envs, asynchronous=asynchronous)
    try:
        space = space_info(envs.single_observation_space, envs.single_action_space)
        policy = ActorCritic(ActorCriticSpec(space.obs_dim, space.action_dim, space.continuous, tuple(cfg.hidden),
                                             cfg.activation, cfg.shared_trunk, getattr(cfg, "log_std_init", 0.0)))
        normalize = getattr(cfg, "normalize_obs", False)
        collector = RolloutCollector(envs, policy, space, 0, ObservationNormalizer(space.obs_dim) if normalize else None,
                                     RewardScaler(cfg.n_envs, cfg.gamma) if getattr(cfg, "scale_rewards", False) else None)
        buffer = RolloutBuffer(cfg.n_steps, cfg.n_envs, space)
        collector.collect(buffer)  # warm-up: first calls, worker start-up
        rollouts = max(1, steps // buffer.size)
        start = time.perf_counter()
        for _ in range(rollouts):
            collector.collect(buffer)
        return rollouts * buffer.size / (time.perf_counter() - start)
    finally:
        envs.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=positive_int, default=20_000, help="environment steps timed per measurement")
    parser.add_argument("--repeats", type=positive_int, default=3, help="measurements per mode (median)")
    parser.add_argument("--labs", nargs="+", default=list(LABS), choices=list(LABS))
    args = parser.parse_args()
    torch.set_num_threads(1)  # as the labs run (prefers_cpu: one thread)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load {load_average()}, "
          f"torch {torch.__version__}, {args.steps:,} steps per measurement, median of {args.repeats}")
    print(f"{'lab':<14} {'env':<14} {'n_envs':>6} {'sync steps/s':>13} {'async steps/s':>14} {'async/sync':>11}")
    for lab_id in args.labs:
        env_id = LABS[lab_id]
        sync, asyn = [], []
        for repeat in range(args.repeats):
            for asynchronous in ((False, True) if repeat % 2 == 0 else (True, False)):
                (asyn if asynchronous else sync).append(steps_per_second(lab_id, env_id, asynchronous, args.steps))
        s, a = statistics.median(sync), statistics.median(asyn)
        n_envs = get_lab(lab_id).config().n_envs
        print(f"{lab_id:<14} {env_id:<14} {n_envs:>6} {s:>13,.0f} {a:>14,.0f} {a / s:>10.2f}×")


if __name__ == "__main__":
    main()
