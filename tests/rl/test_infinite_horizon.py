"""The infinite-horizon check: a task with constant reward, cut only by a time limit.

Reward 1 every step, forever; the observation never changes, so the critic cannot see the clock.
The true value is Σ γ^k = 1/(1 − γ) = 10 for γ = 0.9. With truncation bootstrapped, PPO's critic
must learn 10; treating the time limit as the end of the world, it learns the average discounted
return of a 5-step episode instead, (1/5)·Σ_{k=1..5} (1 − γ^k)/(1 − γ) ≈ 2.6 — far from 10.
"""

import torch

from dlconcepts.nets.actor_critic import ActorCritic, ActorCriticSpec
from dlconcepts.rl.envs import make_vector_env
from dlconcepts.rl.ppo import PPOConfig, train_ppo
from tests.rl.toy_envs import constant_reward_env

GAMMA = 0.9
TIME_LIMIT = 5
TRUE_VALUE = 1 / (1 - GAMMA)


def learned_value(bootstrap: bool) -> float:
    torch.manual_seed(0)
    envs = make_vector_env(constant_reward_env(TIME_LIMIT), 4)
    policy = ActorCritic(ActorCriticSpec(obs_dim=1, action_dim=2, continuous=False, hidden=(16,)))
    config = PPOConfig(n_steps=20, n_epochs=10, minibatch_size=80, lr=0.02, anneal_lr=False, gamma=GAMMA,
                       gae_lambda=0.95, max_grad_norm=0.0, bootstrap_truncation=bootstrap)
    train_ppo(envs, policy, config, total_steps=25 * 80, seed=0)
    envs.close()
    with torch.no_grad():
        return policy.value(torch.ones(1, 1)).item()


def test_value_approaches_one_over_one_minus_gamma_with_truncation_bootstrapped():
    value = learned_value(bootstrap=True)
    assert abs(value - TRUE_VALUE) < 0.03 * TRUE_VALUE, value


def test_value_is_measurably_wrong_without_bootstrapping():
    episode_average = sum((1 - GAMMA**k) / (1 - GAMMA) for k in range(1, TIME_LIMIT + 1)) / TIME_LIMIT
    value = learned_value(bootstrap=False)
    assert value < 0.5 * TRUE_VALUE, value
    assert abs(value - episode_average) < 0.15 * episode_average, (value, episode_average)
