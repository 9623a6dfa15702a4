"""Running statistics against NumPy on the whole stream, and reward scaling by hand."""

import numpy as np
import pytest

from dlconcepts.rl.normalization import ObservationNormalizer, RewardScaler, RunningMeanStd


def test_running_mean_and_variance_equal_those_of_all_rows_seen():
    rng = np.random.default_rng(0)
    batches = [rng.normal(3.0, 2.0, size=(n, 4)) for n in (1, 7, 30, 2)]
    rms = RunningMeanStd((4,), epsilon=1e-12)
    for b in batches:
        rms.update(b)
    everything = np.concatenate(batches)
    np.testing.assert_allclose(rms.mean, everything.mean(axis=0), rtol=1e-10)
    np.testing.assert_allclose(rms.var, everything.var(axis=0), rtol=1e-10)


def test_observation_normalizer_standardizes_clips_and_round_trips():
    rng = np.random.default_rng(1)
    norm = ObservationNormalizer(2, clip=3.0)
    for _ in range(500):
        norm(rng.normal([10.0, -5.0], [4.0, 0.1], size=(8, 2)), update=True)
    out = norm(rng.normal([10.0, -5.0], [4.0, 0.1], size=(5000, 2)))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.mean(axis=0), 0.0, atol=0.06)
    np.testing.assert_allclose(out.std(axis=0), 1.0, atol=0.06)
    assert np.abs(norm(np.array([[1e6, 1e6]]))).max() == 3.0
    again = ObservationNormalizer.from_state(norm.state())
    probe = np.array([[12.0, -5.05]])
    np.testing.assert_array_equal(again(probe), norm(probe))
    before = norm.rms.count
    norm(probe)  # update=False by default: evaluation never moves the statistics
    assert norm.rms.count == before


def test_reward_scaler_divides_by_the_std_of_the_discounted_return_and_resets_at_episode_end():
    scaler = RewardScaler(num_envs=1, gamma=0.5, epsilon=0.0)
    scaler.rms = RunningMeanStd((), epsilon=1e-12)
    # G: 2 → 0.5·2 + 2 = 3, then the episode ends and G restarts: 2.
    out1 = scaler(np.array([2.0]), np.array([False]))
    out2 = scaler(np.array([2.0]), np.array([True]))
    assert scaler.returns.tolist() == [0.0]
    out3 = scaler(np.array([2.0]), np.array([False]))
    # By hand: after the third step the returns seen are 2, 3, 2 → variance 2/9; std = √2/3.
    assert scaler.scale == pytest.approx(np.sqrt(2 / 9))
    assert out3[0] == pytest.approx(2.0 / np.sqrt(2 / 9), rel=1e-6)
    assert out1[0] == 10.0  # one return seen: no spread yet, and the clip keeps the division finite
    assert out2[0] == pytest.approx(2.0 / np.sqrt(0.25), rel=1e-6)  # returns 2, 3: variance 0.25
