"""The actor-critic's distributions against torch.distributions (float64), and its shapes."""

import math

import pytest
import torch

from dlconcepts.nets.actor_critic import (
    ActorCritic,
    ActorCriticSpec,
    categorical_entropy,
    categorical_log_prob,
    gaussian_entropy,
    gaussian_log_prob,
)

def test_gaussian_log_prob_is_one_number_per_sample_for_multidimensional_actions():
    net = ActorCritic(ActorCriticSpec(obs_dim=5, action_dim=3, continuous=True))
    obs = torch.randn(7, 5)
    action, log_prob, value = net.act(obs)
    assert action.shape == (7, 3)
    assert log_prob.shape == (7,)  # summed over the 3 action dimensions, never (7, 3)
    assert value.shape == (7,)
    log_prob2, entropy, value2 = net.evaluate(obs, action)
    assert log_prob2.shape == entropy.shape == value2.shape == (7,)

def test_gaussian_formulas_match_torch_distributions_in_float64():
    g = torch.Generator().manual_seed(0)
    mean = torch.randn(6, 3, generator=g, dtype=torch.float64)
    log_std = torch.randn(3, generator=g, dtype=torch.float64) * 0.5
    actions = torch.randn(6, 3, generator=g, dtype=torch.float64) * 2
    reference = torch.distributions.Normal(mean, log_std.exp())
    torch.testing.assert_close(gaussian_log_prob(mean, log_std, actions), reference.log_prob(actions).sum(-1), rtol=0, atol=1e-12)
    torch.testing.assert_close(gaussian_entropy(log_std, 6), reference.entropy().sum(-1), rtol=0, atol=1e-12)
    # By hand for one coordinate: a = μ, σ = 1 gives −½ log 2π.
    one = gaussian_log_prob(torch.zeros(1, 1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64), torch.zeros(1, 1, dtype=torch.float64))
    assert one.item() == pytest.approx(-0.5 * math.log(2 * math.pi), abs=1e-15)

def test_categorical_formulas_match_torch_distributions_in_float64():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(9, 4, generator=g, dtype=torch.float64) * 3
    actions = torch.randint(0, 4, (9,), generator=g)
    reference = torch.distributions.Categorical(logits=logits)
    torch.testing.assert_close(categorical_log_prob(logits, actions), reference.log_prob(actions), rtol=0, atol=1e-12)
    torch.testing.assert_close(categorical_entropy(logits), reference.entropy(), rtol=0, atol=1e-12)

def test_evaluate_uses_the_given_actions_and_agrees_with_act():
    torch.manual_seed(0)
    for continuous in (False, True):
        net = ActorCritic(ActorCriticSpec(obs_dim=4, action_dim=2, continuous=continuous)).double()
        obs = torch.randn(16, 4, dtype=torch.float64)
        with torch.no_grad():
            action, log_prob, value = net.act(obs)
            log_prob2, _, value2 = net.evaluate(obs, action)
        torch.testing.assert_close(log_prob2, log_prob, rtol=0, atol=1e-12)
        torch.testing.assert_close(value2, value, rtol=0, atol=1e-12)

def test_categorical_sampling_follows_the_policy():
    torch.manual_seed(0)
    net = ActorCritic(ActorCriticSpec(obs_dim=2, action_dim=3, continuous=False))
    with torch.no_grad():
        net.policy_head.bias.copy_(torch.log(torch.tensor([0.2, 0.3, 0.5])))
        net.policy_head.weight.zero_()
        actions, _, _ = net.act(torch.zeros(40_000, 2))
    freq = torch.bincount(actions, minlength=3).double() / len(actions)
    torch.testing.assert_close(freq, torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64), rtol=0, atol=0.01)
    assert net.deterministic_action(torch.zeros(1, 2)).item() == 2

def test_initialization_starts_near_uniform_and_log_std_as_asked():
    torch.manual_seed(0)
    net = ActorCritic(ActorCriticSpec(obs_dim=4, action_dim=2, continuous=False))
    probs = torch.softmax(net.policy_output(torch.randn(100, 4)), -1)
    assert (probs - 0.5).abs().max() < 0.05  # the 0.01 gain on the policy head: no early bias
    cont = ActorCritic(ActorCriticSpec(obs_dim=4, action_dim=2, continuous=True, log_std_init=-0.5))
    assert cont.log_std.tolist() == [-0.5, -0.5]

def test_shared_trunk_has_one_trunk_and_fewer_parameters():
    separate = ActorCritic(ActorCriticSpec(obs_dim=4, action_dim=2, continuous=False, hidden=(8, 8)))
    shared = ActorCritic(ActorCriticSpec(obs_dim=4, action_dim=2, continuous=False, hidden=(8, 8), shared_trunk=True))
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    trunk = 4 * 8 + 8 + 8 * 8 + 8
    heads = 8 * 2 + 2 + 8 + 1
    assert count(separate) == 2 * trunk + heads
    assert count(shared) == trunk + heads
    action, log_prob, value = shared.act(torch.randn(3, 4))
    assert action.shape == log_prob.shape == value.shape == (3,)

def test_spec_round_trips_through_a_plain_dict():
    spec = ActorCriticSpec(obs_dim=3, action_dim=1, continuous=True, hidden=(32, 16), log_std_init=-0.5)
    assert ActorCriticSpec.from_dict(spec.as_dict()) == spec
    assert all(isinstance(v, (int, float, bool, str, list)) for v in spec.as_dict().values())

def test_bad_specs_are_refused():
    with pytest.raises(ValueError, match="at least 2 actions"):
        ActorCritic(ActorCriticSpec(obs_dim=3, action_dim=1, continuous=False))
    with pytest.raises(ValueError, match="activation"):
        ActorCritic(ActorCriticSpec(obs_dim=3, action_dim=2, continuous=False, activation="softmax"))
