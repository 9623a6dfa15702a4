"""The generic PPO lab `ppo-gym` (`dlc rl --env ENV_ID`): quick runs on a Discrete and a Box environment that
the course labs do not use, learning beyond doing nothing and played back; its defaults chosen by the action
space, under explicit values; an environment whose state cannot be checkpointed; a stopped run resumed."""

import json
import os
import signal
from dataclasses import replace

import gymnasium as gym
import pytest
import torch
from gymnasium.envs.classic_control import AcrobotEnv

from dlconcepts.cli import main
from dlconcepts.labs.ppo_gym import BOX_DEFAULTS, DISCRETE_DEFAULTS, LAB, Config
from dlconcepts.labs.runner import resolve_config

ACROBOT_RANDOM_RETURN = -500.0  # uniformly random torques almost never swing the tip up within the 500-step limit


def rl_quick(tmp_path, env_id, *extra, seed):
    """`dlc rl --env ENV_ID --quick ...` into tmp_path; returns (run directory, metrics, config)."""
    assert main(["rl", "--env", env_id, "--quick", "--seed", str(seed), "--out", str(tmp_path), "--quiet", *extra]) == 0
    (run_dir,) = [p for p in tmp_path.iterdir() if p.name.endswith("-ppo-gym")]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return run_dir, metrics, json.loads((run_dir / "config.json").read_text())


def play_one(run_dir, capsys):
    capsys.readouterr()
    assert main(["play", str(run_dir), "--episodes", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("episode 1: return ")
    return float(out.split("return ")[1].split()[0])


def test_acrobot_quick_learns_beyond_the_random_policy_and_plays(tmp_path, capsys):
    run_dir, metrics, config = rl_quick(tmp_path, "Acrobot-v1", seed=3)
    assert config["lab"] == "ppo-gym" and config["quick"] is True
    assert {k: config["config"][k] for k in DISCRETE_DEFAULTS} == DISCRETE_DEFAULTS
    assert config["config"]["env"] == "Acrobot-v1" and config["config"]["target"] == -100.0  # its reward_threshold
    assert metrics["status"] == "completed" and metrics["env_steps"] == 16_384 and metrics["resumable"] is True
    # 16k steps: the tip reaches the line in training (episodes shorter than the 500-step limit) and the
    # deterministic policy does so in every evaluation episode; a random policy almost never does.
    assert metrics["training_episodes"] > 16_384 // 500 + 10, metrics["training_episodes"]
    assert metrics["final_eval_return_mean"] > ACROBOT_RANDOM_RETURN / 2, metrics["final_eval_returns"]
    assert metrics["action_space"] == "Discrete(3)" and metrics["reward_threshold"] == -100.0
    assert {p.name for p in (run_dir / "figures").iterdir()} == {"returns.png", "diagnostics.png"}
    state = torch.load(run_dir / "model.pt", weights_only=True)
    assert state["env_id"] == "Acrobot-v1" and state["spec"]["continuous"] is False and state["obs_normalizer"] is None
    report = (run_dir / "report.md").read_text()
    assert "Acrobot-v1" in report and "reward_threshold" in report and "defaults for Discrete actions" in report
    assert play_one(run_dir, capsys) > ACROBOT_RANDOM_RETURN


def test_mountain_car_continuous_quick_uses_the_box_defaults_finds_the_flag_and_plays(tmp_path, capsys):
    run_dir, metrics, config = rl_quick(tmp_path, "MountainCarContinuous-v0", seed=0)
    assert {k: config["config"][k] for k in BOX_DEFAULTS} == BOX_DEFAULTS
    assert config["config"]["target"] == 90.0
    # Standing still scores 0 and random pushes about −30; only reaching the flag (+100) scores above 0.
    assert metrics["final_eval_return_mean"] > 0, metrics["final_eval_returns"]
    assert len(metrics["policy_sigma"]) == 1 and metrics["action_space"] == "Box(-1, 1, (1,))"
    state = torch.load(run_dir / "model.pt", weights_only=True)
    assert state["spec"]["continuous"] is True and tuple(state["obs_normalizer"]["mean"].shape) == (2,)
    assert play_one(run_dir, capsys) > 0


def resolved(*pairs, quick=False, toml=None):
    return resolve_config(LAB, quick, toml or {}, [tuple(p.split("=", 1)) for p in pairs])


def test_the_defaults_follow_the_action_space_and_explicit_values_win():
    assert resolved() == replace(Config(), target=-100.0)  # the dataclass's defaults are the Discrete ones
    box = resolved("env=MountainCarContinuous-v0")
    assert {k: getattr(box, k) for k in BOX_DEFAULTS} == BOX_DEFAULTS and box.target == 90.0
    assert box.total_steps == Config().total_steps  # keys without a per-space default keep the dataclass's
    # quick mode, a TOML file and --set each override the action space's defaults
    assert resolved("env=MountainCarContinuous-v0", quick=True).total_steps == LAB.quick["total_steps"]
    mixed = resolved("env=MountainCarContinuous-v0", "n_envs=4", "minibatch_size=128", toml={"lr": 5e-4, "n_steps": 512})
    assert (mixed.n_envs, mixed.minibatch_size, mixed.lr, mixed.n_steps, mixed.n_epochs) == (4, 128, 5e-4, 512, 10)
    assert resolved("env=MountainCarContinuous-v0", "target=none").target is None
    assert resolved("target=-90").target == -90.0
    assert resolved("env=CartPole-v1", "normalize_obs=true").normalize_obs is True


def test_a_pendulum_has_no_reward_threshold_so_no_target():
    config = resolved("env=Pendulum-v1")
    assert config.target is None and config.n_envs == BOX_DEFAULTS["n_envs"]


class UnsavedAcrobot(AcrobotEnv):
    """Acrobot under another class: rl.envs does not know what it keeps between steps, so it cannot checkpoint it."""


@pytest.fixture
def unsaved_env_id():
    env_id = "DlcTestUnsavedAcrobot-v0"
    gym.register(env_id, entry_point=UnsavedAcrobot, max_episode_steps=500)
    yield env_id
    del gym.registry[env_id]


def test_an_environment_rl_envs_cannot_checkpoint_trains_without_checkpoints_and_says_so(tmp_path, unsaved_env_id):
    run_dir, metrics, config = rl_quick(tmp_path, unsaved_env_id, "--steps", "1024", "--set", "eval_episodes=1",
                                        "--checkpoint-every", "1", seed=0)
    assert metrics["status"] == "completed" and metrics["resumable"] is False and metrics["env_steps"] == 1024
    assert config["config"]["target"] is None  # registered without a reward_threshold
    log = (run_dir / "log.txt").read_text()
    (line,) = [line for line in log.splitlines() if "not resumable" in line]
    assert "UnsavedAcrobot" in line and "saves no checkpoints" in line
    assert "checkpoints:" not in log  # nothing was saved


def test_a_stopped_run_continues_with_dlc_run_resume_and_ends_as_one_never_stopped(tmp_path, monkeypatch):
    from dlconcepts.rl.experiment import EvaluationSchedule

    args = ["rl", "--env", "Acrobot-v1", "--quick", "--steps", "6144", "--seed", "1", "--quiet", "--checkpoint-every", "1"]
    assert main([*args, "--out", str(tmp_path / "reference")]) == 0

    original = EvaluationSchedule.__call__

    def stop_after_update_3(self, stats, episodes):  # what Ctrl-C / SIGTERM does, in this process
        if stats.update == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return original(self, stats, episodes)

    monkeypatch.setattr(EvaluationSchedule, "__call__", stop_after_update_3)
    assert main([*args, "--out", str(tmp_path / "stopped")]) == 128 + signal.SIGTERM
    monkeypatch.setattr(EvaluationSchedule, "__call__", original)
    (run_dir,) = (tmp_path / "stopped").iterdir()
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "interrupted"
    assert main(["run", "--resume", str(run_dir), "--quiet"]) == 0

    (reference,) = (tmp_path / "reference").iterdir()
    resumed, uninterrupted = (json.loads((d / "metrics.json").read_text()) for d in (run_dir, reference))
    assert resumed["resumes"] == 1
    for key in ("final_eval_returns", "training_episodes", "last_update", "env_steps"):
        clock_free = {k: v for k, v in resumed[key].items() if "second" not in k} if key == "last_update" else resumed[key]
        expected = {k: v for k, v in uninterrupted[key].items() if "second" not in k} if key == "last_update" else uninterrupted[key]
        assert clock_free == expected, key
    a, b = (torch.load(d / "model.pt", weights_only=True)["model"] for d in (run_dir, reference))
    assert all(torch.equal(a[k], b[k]) for k in b)
