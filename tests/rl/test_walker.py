"""The PPO pitfalls that hold for CartPole and Pendulum, held again on MuJoCo's Walker2d-v5 (6 torques,
17 observations, falls and a 1000-step time limit), and the continuous-action pitfall worked by hand."""

import math

import numpy as np
import pytest
import torch

from dlconcepts.nets.actor_critic import ActorCritic, ActorCriticSpec
from dlconcepts.rl.envs import make_env, make_vector_env, space_info
from dlconcepts.rl.normalization import ObservationNormalizer
from dlconcepts.rl.ppo import PPOConfig, train_ppo
from dlconcepts.rl.rollout import RolloutBuffer, RolloutCollector

ENV_ID = "Walker2d-v5"


def walker_policy(log_std_init: float = 0.0) -> ActorCritic:
    return ActorCritic(ActorCriticSpec(17, 6, True, (32, 32), "tanh", False, log_std_init))


def test_the_spaces_are_the_ones_the_lab_documents():
    env = make_env(ENV_ID)
    try:
        space = space_info(env.observation_space, env.action_space)
        assert (space.obs_dim, space.action_dim, space.continuous) == (17, 6, True)
        np.testing.assert_array_equal(space.action_low, -np.ones(6)) and np.testing.assert_array_equal(space.action_high, np.ones(6))
        assert env.spec.max_episode_steps == 1000
    finally:
        env.close()


def test_log_prob_entropy_and_value_have_shape_batch_for_the_6_dimensional_action():
    torch.manual_seed(0)
    net = walker_policy(log_std_init=-0.5).double()
    obs = torch.randn(32, 17, dtype=torch.float64)
    action, log_prob, value = net.act(obs)
    assert action.shape == (32, 6) and log_prob.shape == (32,) and value.shape == (32,)
    new_log_prob, entropy, new_value = net.evaluate(obs, action)
    assert new_log_prob.shape == entropy.shape == new_value.shape == (32,)
    # The same numbers as torch.distributions' diagonal Gaussian, summed over the 6 coordinates.
    reference = torch.distributions.Normal(net.policy_output(obs), net.log_std.exp())
    torch.testing.assert_close(log_prob, reference.log_prob(action).sum(-1), rtol=0, atol=1e-12)
    torch.testing.assert_close(entropy, reference.entropy().sum(-1), rtol=0, atol=1e-12)


def test_ratio_is_one_on_the_first_minibatch_of_every_update():
    torch.manual_seed(0)
    envs = make_vector_env(ENV_ID, 2)
    try:
        result = train_ppo(envs, walker_policy(), PPOConfig(n_steps=64, n_epochs=3, minibatch_size=32, lr=1e-3),
                           total_steps=4 * 128, seed=0, obs_normalizer=ObservationNormalizer(17))
    finally:
        envs.close()
    assert len(result.history) == 4
    deviations = [h.first_ratio_max_deviation for h in result.history]
    assert all(d <= 1e-5 for d in deviations), deviations
    assert len(result.episodes) > 0  # the untrained walker falls: terminations happened inside the rollouts


def collect_at_the_time_limit(bootstrap: bool):
    """Two walkers put 5 steps before the 1000-step limit (the TimeLimit wrapper's own counter), then a
    rollout of 8 steps: the genuine limit truncates both episodes at row 4."""
    torch.manual_seed(0)
    envs = make_vector_env(ENV_ID, 2)
    space = space_info(envs.single_observation_space, envs.single_action_space)
    policy = walker_policy(log_std_init=-3.0)  # nearly the mean action: no fall within 5 steps
    buffer = RolloutBuffer(8, 2, space)
    collector = RolloutCollector(envs, policy, space, seed=0, bootstrap_truncation=bootstrap)
    envs.set_attr("_elapsed_steps", [995, 995])
    collector.collect(buffer)
    return envs, policy, buffer


def test_truncation_at_the_1000_step_limit_bootstraps_the_value_of_the_final_observation():
    envs, policy, buffer = collect_at_the_time_limit(bootstrap=True)
    try:
        assert buffer.truncated[:, 0].tolist() == [False] * 4 + [True] + [False] * 3
        assert buffer.truncated[4].all() and not buffer.terminated.any()
        # The walker's real last state: the same start and the same (clipped) torques, replayed in a copy.
        replay = make_vector_env(ENV_ID, 2)
        try:
            replay.reset(seed=0)
            for t in range(5):
                final_obs, *_ = replay.step(np.clip(buffer.actions[t].numpy(), -1, 1))
        finally:
            replay.close()
        with torch.no_grad():
            final_value = policy.value(torch.from_numpy(final_obs.astype(np.float32)))
            new_episode_value = policy.value(buffer.obs[5])
        torch.testing.assert_close(buffer.next_values[4], final_value)
        assert (buffer.next_values[4] != new_episode_value).all()  # not the next episode's first state
        assert (buffer.next_values[4] != 0).all()
    finally:
        envs.close()


def test_without_bootstrapping_the_time_limit_reads_as_a_fall():
    envs, _, buffer = collect_at_the_time_limit(bootstrap=False)
    try:
        assert buffer.truncated[4].all() and (buffer.next_values[4] == 0).all()
    finally:
        envs.close()


def test_torques_are_stored_as_sampled_and_sent_clipped():
    torch.manual_seed(0)
    envs = make_vector_env(ENV_ID, 1)
    try:
        space = space_info(envs.single_observation_space, envs.single_action_space)
        buffer = RolloutBuffer(6, 1, space)
        collector = RolloutCollector(envs, walker_policy(log_std_init=0.7), space, seed=0)  # σ ≈ 2
        sent = []
        original_step = envs.step
        envs.step = lambda action: (sent.append(np.array(action)), original_step(action))[1]
        collector.collect(buffer)
    finally:
        envs.close()
    assert buffer.actions.abs().max() > 1.5  # samples beyond the bounds are kept as sampled
    np.testing.assert_array_equal(np.stack(sent)[:, 0], np.clip(buffer.actions[:, 0].numpy(), -1, 1))


# ---- the continuous-action pitfall, worked by hand -----------------------------------------------

def test_squashing_the_jacobian_cancels_in_the_ratio():
    """a = tanh(u): log π(a) = log N(u) − Σ log(1 − tanh²u). The Jacobian term depends on u alone, so
    π_θ(a)/π_old(a) = N_θ(u)/N_old(u): the ratio may use the Gaussian log-prob of the stored u."""
    torch.manual_seed(1)
    u = torch.randn(64, 6, dtype=torch.float64) * 1.5
    old = torch.distributions.Normal(torch.randn(64, 6, dtype=torch.float64) * 0.3, torch.full((6,), 0.8, dtype=torch.float64))
    new = torch.distributions.Normal(old.loc + 0.05, torch.full((6,), 0.7, dtype=torch.float64))
    tanh = torch.distributions.transforms.TanhTransform(cache_size=1)
    squashed_old = torch.distributions.TransformedDistribution(old, [tanh])
    squashed_new = torch.distributions.TransformedDistribution(new, [tanh])
    a = tanh(u)
    ratio_of_squashed = (squashed_new.log_prob(a).sum(-1) - squashed_old.log_prob(a).sum(-1)).exp()
    ratio_of_gaussians = (new.log_prob(u).sum(-1) - old.log_prob(u).sum(-1)).exp()
    torch.testing.assert_close(ratio_of_squashed, ratio_of_gaussians, rtol=1e-9, atol=0)
    # ... while the log-probs themselves differ by the Jacobian (the entropy would need it).
    jacobian = torch.log1p(-a.square()).sum(-1)
    torch.testing.assert_close(squashed_old.log_prob(a).sum(-1), old.log_prob(u).sum(-1) - jacobian, rtol=1e-9, atol=1e-9)


def test_the_log_prob_of_the_clipped_action_pulls_the_mean_the_wrong_way():
    """Hand-worked, σ = 1: the policy's mean μ = 1.5 (beyond the bound 1) sampled u = 2.0 and the advantage
    was positive. The right gradient of log N(u; μ, 1) in μ is (u − μ) = +0.5: make such samples likelier,
    move μ out. Scored at the clipped action a = 1 it is (1 − μ) = −0.5: the update pulls μ back to the bound."""
    mu = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
    log_std = torch.tensor(0.0, dtype=torch.float64)
    u = torch.tensor(2.0, dtype=torch.float64)

    def gaussian_log_prob(x):
        return -0.5 * ((x - mu) / log_std.exp()) ** 2 - log_std - 0.5 * math.log(2 * math.pi)

    (right,) = torch.autograd.grad(gaussian_log_prob(u), mu)
    (wrong,) = torch.autograd.grad(gaussian_log_prob(u.clamp(-1.0, 1.0)), mu)
    assert right.item() == pytest.approx(0.5, abs=1e-15)
    assert wrong.item() == pytest.approx(-0.5, abs=1e-15)
