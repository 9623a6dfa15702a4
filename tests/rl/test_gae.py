"""GAE(λ) against answers worked out by hand, with a termination and a truncation in the trajectory."""

import numpy as np
import pytest
import torch

from dlconcepts.rl.gae import gae

GAMMA, LAM = 0.5, 0.5  # γλ = 0.25: every number below is exact in binary floating point

# One environment, six steps. The episode that starts at t=0 TERMINATES at t=1 (the pole fell);
# the next one starts at t=2 and is TRUNCATED at t=3 by a time limit, where the critic valued the
# real final observation at 4.0; the third starts at t=4 and is still running when the rollout ends,
# with V(s_6) = 1.0.
REWARDS = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
VALUES = [1.0, 2.0, 1.0, 2.5, 1.5, 2.0]
NEXT_VALUES = [2.0, 99.0, 2.5, 4.0, 2.0, 1.0]  # 99 after the termination: must be ignored
TERMINATED = [False, True, False, False, False, False]
TRUNCATED = [False, False, False, True, False, False]

# By hand. δ_t = r_t + γ(1 − term_t)·V(s_{t+1}) − V(s_t):
#   δ0 = 1 + 0.5·2.0 − 1.0 = 1.0      δ3 = 1 + 0.5·4.0 − 2.5 = 0.5   (truncation: bootstrapped)
#   δ1 = 1 + 0       − 2.0 = −1.0     δ4 = 1 + 0.5·2.0 − 1.5 = 0.5
#   δ2 = 1 + 0.5·2.5 − 1.0 = 1.25     δ5 = 1 + 0.5·1.0 − 2.0 = −0.5
# A_t = δ_t + γλ(1 − done_t)·A_{t+1}, backwards:
#   A5 = −0.5;  A4 = 0.5 + 0.25·(−0.5) = 0.375;  A3 = 0.5 (episode ended: chain cut)
#   A2 = 1.25 + 0.25·0.5 = 1.375;  A1 = −1.0 (ended);  A0 = 1.0 + 0.25·(−1.0) = 0.75
EXPECTED_ADVANTAGES = [0.75, -1.0, 1.375, 0.5, 0.375, -0.5]
EXPECTED_RETURNS = [1.75, 1.0, 2.375, 3.0, 1.875, 1.5]  # A_t + V(s_t)


def test_gae_matches_the_hand_worked_trajectory():
    adv, ret = gae(torch.tensor(REWARDS), torch.tensor(VALUES), torch.tensor(NEXT_VALUES),
                   torch.tensor(TERMINATED), torch.tensor(TRUNCATED), GAMMA, LAM)
    assert adv.tolist() == EXPECTED_ADVANTAGES
    assert ret.tolist() == EXPECTED_RETURNS


def test_treating_the_truncation_as_a_termination_gives_the_wrong_answer():
    # The classic fault: no γ·V(final obs) at the time limit. δ3 = 1 − 2.5 = −1.5 instead of 0.5,
    # and the error flows back into A2.
    adv, _ = gae(torch.tensor(REWARDS), torch.tensor(VALUES), torch.tensor(NEXT_VALUES),
                 torch.tensor([False, True, False, True, False, False]), torch.tensor(TRUNCATED), GAMMA, LAM)
    assert adv[3].item() == -1.5
    assert adv[2].item() == 1.25 + 0.25 * -1.5
    assert adv.tolist() != EXPECTED_ADVANTAGES


def test_environments_are_independent_columns():
    # Two environments side by side (T, N=2): the second column is another trajectory; each column's
    # answer must equal the single-environment answer.
    rng = np.random.default_rng(0)
    cols = []
    for _ in range(2):
        cols.append((rng.normal(size=7), rng.normal(size=7), rng.normal(size=7),
                     rng.random(7) < 0.2, rng.random(7) < 0.2))
    stacked = [np.stack([c[i] for c in cols], axis=1) for i in range(5)]
    adv, ret = gae(*stacked, 0.99, 0.95)
    for j, c in enumerate(cols):
        a1, r1 = gae(*c, 0.99, 0.95)
        torch.testing.assert_close(adv[:, j], a1)
        torch.testing.assert_close(ret[:, j], r1)


def test_lambda_zero_is_the_td_error_and_lambda_one_the_discounted_return():
    rng = np.random.default_rng(1)
    T, gamma = 6, 0.9
    r, v = rng.normal(size=T), rng.normal(size=T)
    last = 0.7
    v_next = np.append(v[1:], last)
    no_end = np.zeros(T, dtype=bool)
    adv0, _ = gae(r, v, v_next, no_end, no_end, gamma, 0.0)
    np.testing.assert_allclose(adv0.numpy(), r + gamma * v_next - v, rtol=1e-6)
    _, ret1 = gae(r, v, v_next, no_end, no_end, gamma, 1.0)
    mc = [sum(gamma**k * r[t + k] for k in range(T - t)) + gamma ** (T - t) * last for t in range(T)]
    np.testing.assert_allclose(ret1.numpy(), mc, rtol=1e-5)


def test_a_value_tensor_with_a_trailing_axis_is_refused():
    with pytest.raises(ValueError, match="broadcast silently"):
        gae(torch.zeros(4, 2), torch.zeros(4, 2, 1), torch.zeros(4, 2), torch.zeros(4, 2), torch.zeros(4, 2), 0.99, 0.95)
