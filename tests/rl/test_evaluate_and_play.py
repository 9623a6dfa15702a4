"""Deterministic evaluation, the saved policy (weights_only), and `dlc play` with its GIF."""

import numpy as np
import pytest
import torch

from dlconcepts.cli import main
from dlconcepts.errors import UserError
from dlconcepts.nets.actor_critic import ActorCritic, ActorCriticSpec
from dlconcepts.rl.evaluate import evaluate, first_rolling_mean_at_least
from dlconcepts.rl.normalization import ObservationNormalizer
from dlconcepts.rl.policy_io import gif_stride, load_policy, play, policy_checkpoint
from tests.rl.toy_envs import constant_reward_env


def test_first_rolling_mean_at_least_by_hand():
    assert first_rolling_mean_at_least([1, 2, 3, 4, 5], window=2, threshold=3.5) == 3  # (3+4)/2
    assert first_rolling_mean_at_least([5, 5], window=3, threshold=1) is None  # fewer episodes than the window
    assert first_rolling_mean_at_least([9, 1, 1], window=2, threshold=6) is None
    assert first_rolling_mean_at_least([500.0] * 20, window=20, threshold=475) == 19


def test_evaluation_runs_each_episode_to_its_end_once():
    torch.manual_seed(0)
    policy = ActorCritic(ActorCriticSpec(obs_dim=1, action_dim=2, continuous=False, hidden=(4,)))
    result = evaluate(policy, constant_reward_env(7), episodes=5, seed=0)
    assert result.returns.tolist() == [7.0] * 5 and result.lengths.tolist() == [7] * 5


def test_evaluation_is_deterministic_for_its_seeds():
    torch.manual_seed(0)
    policy = ActorCritic(ActorCriticSpec(obs_dim=4, action_dim=2, continuous=False))
    a = evaluate(policy, "CartPole-v1", episodes=4, seed=3)
    b = evaluate(policy, "CartPole-v1", episodes=4, seed=3)
    np.testing.assert_array_equal(a.returns, b.returns)


def saved_run(tmp_path, env_id="CartPole-v1", obs_dim=4, action_dim=2, continuous=False, normalizer=None):
    torch.manual_seed(0)
    policy = ActorCritic(ActorCriticSpec(obs_dim, action_dim, continuous, hidden=(16, 16)))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    torch.save(policy_checkpoint(policy, env_id, normalizer, env_steps=123), run_dir / "model.pt")
    return run_dir, policy


def test_saved_policy_loads_with_weights_only_and_acts_the_same(tmp_path):
    rng = np.random.default_rng(0)
    normalizer = ObservationNormalizer(3)
    normalizer(rng.normal(size=(64, 3)) * 3, update=True)
    run_dir, policy = saved_run(tmp_path, "Pendulum-v1", 3, 1, True, normalizer)
    state = torch.load(run_dir / "model.pt", weights_only=True)  # plain dict: no code is unpickled
    assert state["env_id"] == "Pendulum-v1" and state["env_steps"] == 123
    loaded = load_policy(run_dir)
    assert loaded.env_id == "Pendulum-v1"
    for key, value in policy.state_dict().items():
        torch.testing.assert_close(loaded.policy.state_dict()[key], value, rtol=0, atol=0)
    probe = rng.normal(size=(5, 3))
    np.testing.assert_array_equal(loaded.obs_normalizer(probe), normalizer(probe))
    # play's returns are evaluate's returns for the same seeds
    played = play(run_dir, episodes=2, seed=11)
    expected = evaluate(policy, "Pendulum-v1", episodes=2, seed=11, obs_normalizer=normalizer)
    np.testing.assert_allclose(played.returns, expected.returns, rtol=1e-9)


def test_dlc_play_writes_a_gif_of_the_first_episode(tmp_path, capsys):
    run_dir, _ = saved_run(tmp_path)
    gif = tmp_path / "episode.gif"
    assert main(["play", str(run_dir), "--episodes", "2", "--gif", str(gif), "--seed", "4"]) == 0
    out = capsys.readouterr().out
    assert out.count("episode ") >= 2 and "mean return over 2 episodes" in out and f"gif: {gif}" in out
    from PIL import Image

    with Image.open(gif) as image:
        assert image.format == "GIF" and image.n_frames > 2
    expected = evaluate(load_policy(run_dir).policy, "CartPole-v1", episodes=1, seed=4).returns[0]
    assert f"episode 1: return {expected:.1f}" in out


@pytest.mark.parametrize("fps, stride", [(125, 5), (50, 2), (30, 2), (25, 1), (20, 1), (60, 3)])
def test_the_gif_keeps_every_stride_th_frame_at_most_25_a_second(fps, stride):
    # Walker2d simulates 125 frames a second, CartPole 50, Pendulum 30: only the kept frames are drawn
    assert gif_stride(fps) == stride and fps / stride <= 25


@pytest.mark.parametrize(
    "args, message",
    [
        (["play", "{missing}"], "does not exist"),
        (["play", "{empty}"], "has no model.pt"),
        (["play", "{run}", "--episodes", "0"], "--episodes 0 is impossible"),
        (["play", "{run}", "--gif", "{tmp}/out.png"], "does not end in .gif"),
        (["play", "{run}", "--gif", "{tmp}/no/such/folder/out.gif"], "does not exist"),
        (["play", "{foreign}"], "is not a policy saved by a PPO lab"),
        (["play", "{run}", "--episodes", "two"], "invalid int value"),
    ],
)
def test_bad_input_to_play_is_one_line_and_exit_code_2(tmp_path, capsys, args, message):
    run_dir, _ = saved_run(tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "foreign").mkdir()
    torch.save({"model": {}}, tmp_path / "foreign" / "model.pt")
    paths = {"missing": tmp_path / "missing", "empty": tmp_path / "empty", "run": run_dir, "tmp": tmp_path,
             "foreign": tmp_path / "foreign"}
    assert main([a.format(**paths) for a in args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_play_refuses_zero_episodes_before_loading_anything(tmp_path):
    with pytest.raises(UserError, match="at least 1 episode"):
        play(tmp_path / "nowhere", episodes=0)
