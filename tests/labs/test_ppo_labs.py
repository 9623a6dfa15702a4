"""The PPO labs in quick mode through the real CLI: CartPole learns beyond a random policy; the
saved policies load with weights_only and play back."""

import json

import numpy as np
import pytest
import torch

from dlconcepts.cli import main
from dlconcepts.labs.ppo_cartpole import RANDOM_POLICY_RETURN


@pytest.fixture(autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)  # the lab's runtime sets 1 thread (prefers_cpu); give the others theirs back


def run_quick(lab_id, tmp_path, seed=7):
    assert main(["run", lab_id, "--quick", "--seed", str(seed), "--out", str(tmp_path), "--quiet"]) == 0
    (run_dir,) = tmp_path.iterdir()
    return run_dir, json.loads((run_dir / "metrics.json").read_text())


def test_ppo_cartpole_quick_learns_beyond_the_random_policy(tmp_path):
    run_dir, metrics = run_quick("ppo-cartpole", tmp_path)
    assert metrics["env_steps"] == 6144
    # A random policy keeps the pole up for about 22 steps; a few thousand steps of PPO do far better.
    assert metrics["final_eval_return_mean"] >= 2 * RANDOM_POLICY_RETURN, metrics["final_eval_return_mean"]
    episodes = metrics["training_episodes"]
    assert episodes > 40
    assert metrics["first_ratio_max_deviation"] <= 1e-5
    for key in ("approx_kl", "clip_fraction", "explained_variance", "entropy", "policy_loss", "value_loss"):
        assert np.isfinite(metrics["last_update"][key]), key
    assert {p.name for p in (run_dir / "figures").iterdir()} == {"returns.png", "diagnostics.png"}
    state = torch.load(run_dir / "model.pt", weights_only=True)
    assert state["env_id"] == "CartPole-v1" and state["obs_normalizer"] is None and state["spec"]["hidden"] == [64, 64]
    report = (run_dir / "report.md").read_text()
    assert "clipped surrogate" in report and "evaluation return" in report


def test_training_returns_rise_during_the_quick_run(tmp_path):
    from dlconcepts.labs.ppo_cartpole import LAB, Config  # noqa: F401  (the quick settings are the lab's own)
    from dlconcepts.labs._ppo import experiment_from_config
    from dlconcepts.rl.experiment import run_experiment
    from dlconcepts.runtime import seed_everything
    from dataclasses import replace

    torch.set_num_threads(1)
    seed_everything(7)
    result = run_experiment(experiment_from_config(replace(Config(), **LAB.quick), "CartPole-v1", 7))
    returns = result.train.episodes.returns
    assert np.mean(returns[-20:]) > np.mean(returns[:20]) + 20, (np.mean(returns[:20]), np.mean(returns[-20:]))


def test_ppo_pendulum_quick_runs_and_saves_its_normalizer(tmp_path, capsys):
    run_dir, metrics = run_quick("ppo-pendulum", tmp_path)
    assert metrics["env_steps"] == 4096 and np.isfinite(metrics["final_eval_return_mean"])
    state = torch.load(run_dir / "model.pt", weights_only=True)
    assert state["spec"]["continuous"] is True and state["obs_normalizer"]["mean"].shape == (3,)
    assert main(["play", str(run_dir), "--episodes", "1"]) == 0
    assert "episode 1: return" in capsys.readouterr().out


def test_a_minibatch_that_does_not_divide_the_rollout_is_refused_before_the_run(tmp_path, capsys):
    code = main(["run", "ppo-cartpole", "--quick", "--set", "minibatch_size=100", "--out", str(tmp_path), "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert "does not divide the rollout" in err and err.count("\n") == 1
    assert not any(tmp_path.iterdir())  # refused while resolving the config: no run directory made


def test_a_seed_reproduces_the_run_exactly():
    from dataclasses import replace

    from dlconcepts.labs._ppo import experiment_from_config
    from dlconcepts.labs.ppo_pendulum import LAB, Config
    from dlconcepts.rl.experiment import run_experiment
    from dlconcepts.runtime import seed_everything

    torch.set_num_threads(1)
    runs = []
    for _ in range(2):
        seed_everything(3)
        result = run_experiment(experiment_from_config(replace(Config(), **LAB.quick), "Pendulum-v1", 3))
        runs.append((result.train.episodes.returns, result.final.returns.tolist(),
                     [h.value_loss for h in result.train.history]))
    assert runs[0] == runs[1]


def test_ppo_walker_quick_learns_beyond_the_random_and_the_untrained_policy(tmp_path, capsys):
    from dlconcepts.labs.ppo_walker import RANDOM_POLICY_RETURN as WALKER_RANDOM
    from dlconcepts.nets.actor_critic import ActorCritic, ActorCriticSpec
    from dlconcepts.rl.evaluate import evaluate
    from dlconcepts.rl.experiment import EVAL_SEED_OFFSET

    run_dir, metrics = run_quick("ppo-walker", tmp_path)
    assert metrics["env_id"] == "Walker2d-v5" and metrics["env_steps"] == 8192 and metrics["eval_episodes"] == 5
    assert metrics["first_ratio_max_deviation"] <= 1e-5
    # Random torques fall within ~22 steps (return 1.6); the untrained policy (mean torque ≈ 0) stands
    # until it tips over, 50–80 over seeds 0, 1, 7; a few thousand steps of PPO keep it up 2–3× as long.
    torch.manual_seed(7)
    untrained = evaluate(ActorCritic(ActorCriticSpec(17, 6, True, (64, 64))), "Walker2d-v5", 5, 7 + EVAL_SEED_OFFSET)
    assert metrics["final_eval_return_mean"] >= max(100 * WALKER_RANDOM, 2 * untrained.mean), \
        (metrics["final_eval_return_mean"], untrained.mean)
    state = torch.load(run_dir / "model.pt", weights_only=True)
    assert state["spec"]["action_dim"] == 6 and state["obs_normalizer"]["mean"].shape == (17,)
    assert main(["play", str(run_dir), "--episodes", "2"]) == 0
    assert "mean return over 2 episodes" in capsys.readouterr().out
