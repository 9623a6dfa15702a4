"""Reinforcement learning: PPO actor-critic on Gymnasium environments.

    envs.py           vectorized environments (SAME_STEP auto-reset), their spaces, their saved state
    normalization.py  running observation normalization and reward scaling
    rollout.py        rollout storage and collection (terminated and truncated kept apart)
    gae.py            GAE(λ) advantages and λ-returns, bootstrapped on truncation
    ppo.py            the hyperparameters, the loss pieces, the update and the training loop (resumable)
    evaluate.py       deterministic evaluation episodes
    policy_io.py      the saved policy (a dict of state_dicts and primitives) and `dlc play`
"""
