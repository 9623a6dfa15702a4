"""Rollout collection: distinct storage, stored log-probs, the two kinds of episode end, clipped actions."""

import gymnasium as gym
import numpy as np
import torch
from gymnasium.wrappers import TimeLimit

from dlconcepts.nets.actor_critic import ActorCritic, ActorCriticSpec
from dlconcepts.rl.envs import make_vector_env, space_info
from dlconcepts.rl.rollout import RolloutBuffer, RolloutCollector
from tests.rl.toy_envs import CounterEnv, RecordingBoxEnv


def collect(factory, num_envs=2, n_steps=7, spec=None, bootstrap=True):
    torch.manual_seed(0)
    envs = make_vector_env(factory, num_envs)
    space = space_info(envs.single_observation_space, envs.single_action_space)
    policy = ActorCritic(spec or ActorCriticSpec(space.obs_dim, space.action_dim, space.continuous, hidden=(8,)))
    buffer = RolloutBuffer(n_steps, num_envs, space)
    collector = RolloutCollector(envs, policy, space, seed=0, bootstrap_truncation=bootstrap)
    collector.collect(buffer)
    return envs, policy, buffer, collector


def test_every_field_has_its_own_storage_and_every_step_its_own_row():
    envs, _, buffer, _ = collect(lambda: TimeLimit(CounterEnv(terminate_on_even=False), 100), n_steps=5)
    pointers = [t.untyped_storage().data_ptr() for t in buffer.fields().values()]
    assert len(set(pointers)) == len(pointers)  # no two fields share memory
    # The counter is the step number: a buffer that aliased the env's observation array would hold 4s everywhere.
    assert buffer.obs[:, 0, 0].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    envs.close()


def test_stored_log_probs_and_values_are_the_policys_on_the_stored_actions():
    envs, policy, buffer, _ = collect(lambda: TimeLimit(CounterEnv(), 100), n_steps=6)
    with torch.no_grad():
        log_prob, _, value = policy.evaluate(buffer.obs.reshape(-1, 2), buffer.actions.reshape(-1))
    torch.testing.assert_close(log_prob, buffer.log_probs.reshape(-1), rtol=0, atol=1e-5)
    torch.testing.assert_close(value, buffer.values.reshape(-1), rtol=0, atol=1e-5)
    assert not buffer.log_probs.requires_grad and not buffer.values.requires_grad
    envs.close()


def test_truncation_bootstraps_the_value_of_the_real_final_observation():
    # Episodes of exactly 3 steps, cut by the time limit: rows 2 and 5 are truncations.
    envs, policy, buffer, collector = collect(lambda: TimeLimit(CounterEnv(terminate_on_even=False), 3), n_steps=7)
    assert buffer.truncated[:, 0].tolist() == [False, False, True, False, False, True, False]
    assert not buffer.terminated.any()
    with torch.no_grad():
        final_obs_value = policy.value(torch.tensor([[3.0, 0.0], [3.0, 1.0]]))  # counter 3 of episodes 0 and 1
        reset_obs_value = policy.value(torch.tensor([[0.0, 1.0], [0.0, 2.0]]))
    torch.testing.assert_close(buffer.next_values[2, 0], final_obs_value[0])
    torch.testing.assert_close(buffer.next_values[5, 0], final_obs_value[1])
    assert buffer.next_values[2, 0] != reset_obs_value[0]  # not the next episode's first observation
    # Inside an episode V(s_{t+1}) is the next row's value; after the last row, V of the current obs.
    torch.testing.assert_close(buffer.next_values[:2, 0], buffer.values[1:3, 0])
    with torch.no_grad():
        torch.testing.assert_close(buffer.next_values[6], policy.value(torch.from_numpy(collector.obs)))
    envs.close()


def test_without_bootstrapping_a_truncation_is_valued_zero():
    envs, _, buffer, _ = collect(lambda: TimeLimit(CounterEnv(terminate_on_even=False), 3), n_steps=7, bootstrap=False)
    assert buffer.next_values[2, 0].item() == 0.0 and buffer.next_values[5, 0].item() == 0.0
    envs.close()


def test_termination_has_no_future_value_and_episodes_are_logged():
    envs, _, buffer, collector = collect(lambda: TimeLimit(CounterEnv(terminate_on_even=True), 4), num_envs=4, n_steps=12)
    assert buffer.terminated.any() and buffer.truncated.any()
    assert (buffer.next_values[buffer.terminated] == 0).all()
    ended = int((buffer.terminated | buffer.truncated).sum())
    log = collector.episodes
    assert len(log) == ended
    assert log.returns == [float(n) for n in log.lengths]  # reward 1 per step
    assert all(n in (2, 4) for n in log.lengths)  # terminations happen on even counts; the limit is 4
    assert collector.global_step == 4 * 12
    envs.close()


def test_continuous_actions_are_stored_unclipped_and_sent_clipped():
    spec = ActorCriticSpec(obs_dim=2, action_dim=3, continuous=True, hidden=(8,), log_std_init=1.0)  # σ ≈ 2.7
    envs, _, buffer, _ = collect(RecordingBoxEnv, num_envs=2, n_steps=50, spec=spec)
    assert buffer.actions.shape == (50, 2, 3)
    assert buffer.actions.abs().max() > 1.5  # samples beyond the bounds are kept as sampled
    received = np.stack(envs.envs[0].received)
    np.testing.assert_array_equal(received, np.clip(buffer.actions[:, 0].numpy(), -1, 1))
    assert buffer.log_probs.shape == (50, 2)
    envs.close()


def test_unsupported_spaces_are_refused_with_the_reason():
    import pytest

    from dlconcepts.errors import UserError

    with pytest.raises(UserError, match="not supported"):
        space_info(gym.spaces.Box(-1, 1, (2,)), gym.spaces.MultiDiscrete([2, 3]))
    with pytest.raises(UserError, match="flat Box"):
        space_info(gym.spaces.Box(0, 1, (4, 4)), gym.spaces.Discrete(2))


def test_async_environments_collect_the_same_rollout_as_sync_ones():
    from gymnasium.wrappers import TimeLimit as Limit

    def rollout(asynchronous):
        torch.manual_seed(0)
        envs = make_vector_env(lambda: Limit(gym.make("CartPole-v1"), 15), 3, asynchronous=asynchronous)
        space = space_info(envs.single_observation_space, envs.single_action_space)
        policy = ActorCritic(ActorCriticSpec(space.obs_dim, space.action_dim, space.continuous, hidden=(8,)))
        buffer = RolloutBuffer(40, 3, space)
        RolloutCollector(envs, policy, space, seed=5).collect(buffer)
        envs.close()
        return buffer

    sync, other = rollout(False), rollout(True)
    assert sync.truncated.any()  # the 15-step limit cut some episodes inside the rollout
    for name, tensor in sync.fields().items():
        torch.testing.assert_close(other.fields()[name], tensor, rtol=0, atol=0, msg=name)
