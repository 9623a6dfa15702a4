"""PPO's loss pieces against hand-worked answers, and the update's invariants."""

import math

import numpy as np
import pytest
import torch

from dlconcepts.errors import ConfigError
from dlconcepts.nets.actor_critic import ActorCritic, ActorCriticSpec
from dlconcepts.rl.envs import make_vector_env
from dlconcepts.rl.ppo import (
    PPOConfig,
    approx_kl,
    clipped_surrogate_loss,
    explained_variance,
    normalize_advantages,
    train_ppo,
    value_loss,
)


# ---- the clipped surrogate objective ------------------------------------------------------------

def test_clipped_objective_gradient_is_zero_exactly_where_the_clip_binds():
    # ε = 0.2. Four ratios for a positive advantage, the same four for a negative one.
    ratio = torch.tensor([0.7, 0.9, 1.1, 1.3, 0.7, 0.9, 1.1, 1.3], dtype=torch.float64, requires_grad=True)
    adv = torch.tensor([1.0, 1.0, 1.0, 1.0, -1.0, -1.0, -1.0, -1.0], dtype=torch.float64)
    loss = clipped_surrogate_loss(ratio, adv, 0.2)
    # By hand, min(r·A, clip(r, 0.8, 1.2)·A) per sample:
    #   A=+1: 0.7 (unclipped is smaller), 0.9, 1.1, 1.2 (r=1.3 clipped: no reward for going further)
    #   A=−1: −0.8 (r=0.7 clipped: no reward for going lower), −0.9, −1.1, −1.3 (unclipped is smaller)
    # loss = −(0.7 + 0.9 + 1.1 + 1.2 − 0.8 − 0.9 − 1.1 − 1.3)/8 = −(−0.2)/8 = 0.025
    assert loss.item() == pytest.approx(0.025, abs=1e-15)
    loss.backward()
    # dloss/dr_i = −A_i/8 where the unclipped term is the min, and exactly 0 where the clip binds
    # (A > 0 with r > 1 + ε; A < 0 with r < 1 − ε).
    expected = [-1 / 8, -1 / 8, -1 / 8, 0.0, 0.0, 1 / 8, 1 / 8, 1 / 8]
    assert ratio.grad.tolist() == expected


def test_clipped_objective_gradient_reaches_the_log_probs_through_the_ratio():
    old = torch.log(torch.tensor([0.5, 0.5, 0.5], dtype=torch.float64))
    new = torch.log(torch.tensor([0.5, 0.7, 0.3], dtype=torch.float64)).requires_grad_()  # r = 1, 1.4, 0.6
    adv = torch.tensor([2.0, 1.0, 1.0], dtype=torch.float64)
    clipped_surrogate_loss((new - old).exp(), adv, 0.2).backward()
    # d/dlogπ = dloss/dr · r: sample 0 (r=1): −2/3·1; sample 1 (r=1.4, A>0): clipped → 0;
    # sample 2 (r=0.6, A>0): unclipped is smaller → −1/3·0.6.
    torch.testing.assert_close(new.grad, torch.tensor([-2 / 3, 0.0, -0.2], dtype=torch.float64), rtol=0, atol=1e-15)


def test_a_log_prob_with_an_action_axis_is_refused_instead_of_broadcast():
    with pytest.raises(ValueError, match="broadcast silently"):
        clipped_surrogate_loss(torch.ones(8, 3), torch.ones(8), 0.2)
    with pytest.raises(ValueError, match="squeeze"):
        value_loss(torch.ones(8, 1), torch.ones(8))


# ---- the critic's loss, the KL estimate, the advantages -----------------------------------------

def test_value_loss_by_hand_with_and_without_clipping():
    v = torch.tensor([1.0, 1.0], dtype=torch.float64, requires_grad=True)
    returns = torch.tensor([2.0, -1.0], dtype=torch.float64)
    old = torch.tensor([0.0, 0.0], dtype=torch.float64)
    assert value_loss(v, returns).item() == pytest.approx(((1 - 2) ** 2 + (1 + 1) ** 2) / 2)
    loss = value_loss(v, returns, old, clip_value=0.2)
    # sample 0: max((1−2)², (0.2−2)²) = 3.24, from the clipped value (constant in v): gradient 0;
    # sample 1: max((1+1)², (0.2+1)²) = 4, from the unclipped value: gradient 2·(1+1)/2 = 2.
    assert loss.item() == pytest.approx((3.24 + 4.0) / 2)
    loss.backward()
    torch.testing.assert_close(v.grad, torch.tensor([0.0, 2.0], dtype=torch.float64))


def test_approx_kl_estimates_the_exact_kl_and_is_never_negative():
    p = torch.tensor([0.6, 0.3, 0.1], dtype=torch.float64)  # π_old, which drew the actions
    q = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)  # π_θ
    exact = float((p * (p / q).log()).sum())
    g = torch.Generator().manual_seed(0)
    actions = torch.multinomial(p, 400_000, replacement=True, generator=g)
    log_ratio = q.log()[actions] - p.log()[actions]
    assert approx_kl(log_ratio).item() == pytest.approx(exact, rel=0.02)
    per_sample = (log_ratio.exp() - 1) - log_ratio
    assert (per_sample >= 0).all()
    assert approx_kl(torch.zeros(5)).item() == 0.0


def test_advantage_normalization_per_minibatch_and_the_single_sample():
    adv = torch.tensor([1.0, 2.0, 3.0, 6.0])
    out = normalize_advantages(adv)
    assert out.mean().abs() < 1e-6 and (out.std() - 1).abs() < 1e-6
    one = torch.tensor([5.0])
    assert normalize_advantages(one) is one  # std of one sample is undefined: left alone, never NaN


def test_explained_variance_by_hand():
    r = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert explained_variance(r, r) == 1.0
    assert explained_variance(torch.full((4,), 2.5), r) == pytest.approx(0.0)
    assert math.isnan(explained_variance(r, torch.ones(4)))


# ---- settings that must be refused --------------------------------------------------------------

@pytest.mark.parametrize("minibatch", [100, 48, 1000])
def test_a_minibatch_size_that_does_not_divide_the_rollout_is_refused(minibatch):
    with pytest.raises(ConfigError, match="minibatch_size"):
        PPOConfig(n_steps=16, minibatch_size=minibatch).check(num_envs=8)  # rollout 128


def test_a_budget_smaller_than_one_rollout_is_refused():
    envs = make_vector_env("CartPole-v1", 2)
    net = ActorCritic(ActorCriticSpec(4, 2, False))
    with pytest.raises(ConfigError, match="less than one rollout"):
        train_ppo(envs, net, PPOConfig(n_steps=64, minibatch_size=64), total_steps=100, seed=0)
    envs.close()


# ---- the update's invariants, on CartPole -------------------------------------------------------

def short_cartpole_run(**overrides):
    torch.manual_seed(0)
    envs = make_vector_env("CartPole-v1", 8)
    net = ActorCritic(ActorCriticSpec(4, 2, False))
    settings = {"n_steps": 16, "n_epochs": 4, "minibatch_size": 32, "lr": 3e-3, **overrides}
    result = train_ppo(envs, net, PPOConfig(**settings), total_steps=6 * 128, seed=0)
    envs.close()
    return result


def test_ratio_is_one_on_the_first_minibatch_of_the_first_epoch_of_every_update():
    # The rollout evaluated the policy on 8 observations at a time, the update on 32: BLAS may sum a
    # dot product in another order for another batch size, so the two agree to float32 rounding
    # (a few ulps of a log-probability), not necessarily bit for bit.
    history = short_cartpole_run().history
    assert len(history) == 6
    assert all(h.first_ratio_max_deviation <= 1e-5 for h in history), [h.first_ratio_max_deviation for h in history]


def test_ratio_is_exactly_one_when_the_minibatch_is_the_rollout_in_its_own_order(monkeypatch):
    # One step of 8 environments, one minibatch of 8 in rollout order (no shuffle): the same rows
    # through the same kernels, so the stored log-probs are reproduced bit for bit and r == 1 exactly.
    # (Shuffled, the rows sit at other places in BLAS's blocks and may round differently by an ulp.)
    monkeypatch.setattr(torch, "randperm", lambda n, **kw: torch.arange(n))
    history = short_cartpole_run(n_steps=1, minibatch_size=8).history
    assert len(history) == 96
    assert all(h.first_ratio_max_deviation == 0.0 for h in history)


def test_sampling_fresh_actions_instead_of_the_stored_ones_breaks_the_ratio():
    # The course notebook's fault, shown on a fixed policy: log π(a_new) − log π(a_stored) is not 0.
    torch.manual_seed(0)
    net = ActorCritic(ActorCriticSpec(4, 2, False))
    with torch.no_grad():
        net.policy_head.weight.mul_(300)  # a decided policy, so the two actions' probabilities differ
        obs = torch.randn(256, 4)
        stored, old_log_prob, _ = net.act(obs)
        fresh, fresh_log_prob, _ = net.act(obs)
        right, _, _ = net.evaluate(obs, stored)
    assert (right - old_log_prob).abs().max() <= 1e-5
    assert (fresh != stored).any()
    assert (fresh_log_prob - old_log_prob).exp().sub(1).abs().max() > 0.5


def test_learning_rate_and_clip_range_anneal_linearly_to_zero():
    history = short_cartpole_run(anneal_clip=True).history
    lrs = [h.lr for h in history]
    np.testing.assert_allclose(lrs, [3e-3 * (1 - k / 6) for k in range(6)])
    np.testing.assert_allclose([h.clip_range for h in history], [0.2 * (1 - k / 6) for k in range(6)])


def test_target_kl_stops_the_update_and_every_minibatch_kl_is_logged():
    free = short_cartpole_run(lr=0.05).history
    assert all(len(h.minibatch_kl) == h.minibatches == 4 * 4 for h in free)
    assert not any(h.early_stopped for h in free)
    stopped = short_cartpole_run(lr=0.05, target_kl=1e-4).history
    assert any(h.early_stopped for h in stopped)
    for h in stopped:
        # a stop is decided on the minibatch that crossed target_kl; it is logged but not stepped on
        assert len(h.minibatch_kl) == h.minibatches + int(h.early_stopped)
        if h.early_stopped:
            assert h.minibatch_kl[-1] > 1e-4 and h.minibatches < 16


def test_diagnostics_are_logged_every_update():
    h = short_cartpole_run().history[-1]
    for key in ("approx_kl", "clip_fraction", "explained_variance", "entropy", "policy_loss", "value_loss"):
        assert math.isfinite(getattr(h, key)), key
    assert 0 <= h.clip_fraction <= 1
    assert 0 < h.entropy <= math.log(2)
    assert h.env_steps == 6 * 128
