"""The issue's targets for the PPO labs, each over 3 seeds of the FULL lab (several minutes in all).

Skipped unless DLC_RL_TARGETS=1, so that the default suite stays fast:

    DLC_RL_TARGETS=1 .venv/bin/python -m pytest -q tests/labs/test_ppo_targets.py
"""

import os
import statistics

import pytest
import torch

from dlconcepts.labs import get_lab
from dlconcepts.labs.runner import RunSettings, resolve_config, run_lab

SEEDS = range(3)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("DLC_RL_TARGETS") != "1",
                       reason="full PPO runs take minutes; run them with DLC_RL_TARGETS=1"),
]


def full_runs(lab_id, tmp_path):
    lab = get_lab(lab_id)
    config = resolve_config(lab, quick=False, file_values={}, set_pairs=[])
    before = torch.get_num_threads()
    try:
        return [run_lab(lab, config, RunSettings(device="cpu", seed=s, quiet=True, out=str(tmp_path)))[1].metrics
                for s in SEEDS]
    finally:
        torch.set_num_threads(before)


def test_ppo_cartpole_every_seed_evaluates_at_least_475_within_100k_steps(tmp_path):
    results = full_runs("ppo-cartpole", tmp_path)
    for r in results:
        assert r["env_steps"] <= 100_000
        assert r["eval_episodes"] == 20
        assert r["final_eval_return_mean"] >= 475, [x["final_eval_return_mean"] for x in results]


def test_ppo_pendulum_median_of_three_seeds_evaluates_at_least_minus_250_within_300k_steps(tmp_path):
    results = full_runs("ppo-pendulum", tmp_path)
    assert all(r["env_steps"] <= 300_000 and r["eval_episodes"] == 20 for r in results)
    returns = [r["final_eval_return_mean"] for r in results]
    assert statistics.median(returns) >= -250, returns


def test_ppo_walker_median_of_three_seeds_evaluates_at_least_3500_at_1m_steps(tmp_path):
    # ~5 minutes a seed on the 2-core machine; DLC_RL_TARGETS=1 pytest -k walker runs this one alone.
    # Whole rollouts only: 1M steps are 488 rollouts of 4 × 512 = 999,424 steps, never more than 1M.
    results = full_runs("ppo-walker", tmp_path)
    assert all(1_000_000 - 2048 < r["env_steps"] <= 1_000_000 and r["eval_episodes"] == 10 for r in results), \
        [(r["env_steps"], r["eval_episodes"]) for r in results]
    returns = [r["final_eval_return_mean"] for r in results]
    assert statistics.median(returns) >= 3500, returns
