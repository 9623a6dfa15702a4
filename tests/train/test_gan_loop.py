"""The GAN training loop: seeded and reproducible, both losses logged, the fixed noise fixed, and it learns."""

import math

import numpy as np
import pytest
import torch

from dlconcepts.errors import TrainingDiverged
from dlconcepts.nets.gan import make_gan
from dlconcepts.nets.mlp import mlp
from dlconcepts.train.gan import _update_average, generate, lr_scale, snapshot_schedule, train_gan

IMAGES = np.random.default_rng(0).random((40, 1, 4, 4)).astype(np.float32)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def small_gan(seed=0):
    torch.manual_seed(seed)
    return make_gan("mlp", (1, 4, 4), latent_dim=3, generator_hidden=(8,), discriminator_hidden=(8,), dropout=0.1)


def run(seed=0, **kw):
    g, d = small_gan()
    args = dict(latent_dim=3, epochs=3, batch_size=16, fixed_noise_size=5, snapshot_epochs=(0, 2, 3), seed=seed)
    args.update(kw)
    history = train_gan(g, d, IMAGES, **args)
    return g, d, history


def test_a_seeded_run_reproduces_exactly_and_another_seed_does_not():
    g1, d1, h1 = run(seed=4)
    g2, d2, h2 = run(seed=4)
    assert h1.epochs == h2.epochs
    for a, b in zip([*g1.parameters(), *d1.parameters()], [*g2.parameters(), *d2.parameters()]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    _, _, h3 = run(seed=5)
    assert h3.epochs != h1.epochs


def test_both_losses_and_the_discriminator_outputs_are_logged_every_epoch():
    _, _, h = run(r1_weight=1.0)
    assert len(h) == 3 and h.steps == 3 * (40 // 16)
    for row in h.epochs:
        assert set(row) == {"epoch", "d_loss", "g_loss", "value", "d_real", "d_fake", "r1"}
        assert all(math.isfinite(v) for v in row.values())
        assert 0 < row["d_real"] < 1 and 0 < row["d_fake"] < 1
        assert row["value"] == pytest.approx(-row["d_loss"], rel=1e-6)  # no label smoothing: d_loss = −V
    _, _, smoothed = run(real_target=0.9, generator_loss="minimax")
    assert "r1" not in smoothed.epochs[0] and smoothed.epochs[0]["g_loss"] < 0  # minimax: E log(1 − D) < 0


def test_the_fixed_noise_is_drawn_once_and_the_snapshots_use_it():
    g, _, h = run()
    _, _, other = run(epochs=1, batch_size=8)  # other schedule, same seed: the same fixed noise
    torch.testing.assert_close(h.fixed_noise, other.fixed_noise, rtol=0, atol=0)
    assert sorted(h.snapshots) == [0, 2, 3]
    np.testing.assert_array_equal(h.snapshots[3], generate(g, h.fixed_noise).numpy())  # the final G on the same z
    fresh_g, _ = small_gan()
    np.testing.assert_array_equal(h.snapshots[0], generate(fresh_g, h.fixed_noise).numpy())  # before any step
    assert not np.array_equal(h.snapshots[0], h.snapshots[3])


def test_the_gan_learns_a_1d_gaussian():
    # Data N(3, 0.5²); G starts near 0. After 400 steps its samples have about the data's mean and spread.
    torch.manual_seed(0)
    g, d = mlp((2, 16, 1), "relu"), mlp((1, 16, 1), "relu")
    data = np.random.default_rng(1).normal(3.0, 0.5, (2000, 1)).astype(np.float32)
    z = torch.randn(5000, 2, generator=torch.Generator().manual_seed(9))
    assert abs(generate(g, z).mean().item()) < 1.0
    train_gan(g, d, data, latent_dim=2, epochs=20, batch_size=100, lr_d=2e-3, lr_g=2e-3, r1_weight=1.0, seed=0)
    samples = generate(g, z).numpy()
    assert abs(samples.mean() - 3.0) < 0.25 and 0.3 < samples.std() < 0.7


def test_the_weight_average_and_the_learning_rate_schedule():
    average, live = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    for p in average.parameters():
        torch.nn.init.zeros_(p)
    for p in live.parameters():
        torch.nn.init.ones_(p)
    _update_average(average, live, decay=0.9)
    for p in average.parameters():
        torch.testing.assert_close(p, torch.full_like(p, 0.1))  # 0.9·0 + 0.1·1
    g, _, h = run(average_decay=0.5)
    assert h.averaged_generator is not None and h.final_generator(g) is h.averaged_generator
    np.testing.assert_array_equal(h.snapshots[3], generate(h.averaged_generator, h.fixed_noise).numpy())
    assert [lr_scale(e, 10, 0.5) for e in (1, 5, 6, 10)] == [1.0, 1.0, 5 / 6, 1 / 6]
    assert [lr_scale(e, 4, 1.0) for e in range(1, 5)] == [1.0] * 4
    assert snapshot_schedule(250, 6) == [0, 1, 4, 16, 63, 250] and snapshot_schedule(0, 5) == [0]


def test_a_loss_that_becomes_nan_stops_training_before_the_step():
    g, d = small_gan()
    bad = IMAGES.copy()
    bad[3, 0, 1, 1] = np.nan
    before = [p.detach().clone() for p in d.parameters()]
    with pytest.raises(TrainingDiverged, match="discriminator loss became nan at epoch 1"):
        train_gan(g, d, bad, latent_dim=3, epochs=2, batch_size=40, seed=0)
    for a, b in zip(before, d.parameters()):
        torch.testing.assert_close(a, b.detach())  # the NaN never reached the weights
    with pytest.raises(ValueError, match="generator_loss"):
        train_gan(g, d, IMAGES, latent_dim=3, epochs=1, generator_loss="hinge")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_sees_the_same_noise_and_batches_as_the_cpu():
    # One full-batch step without dropout (dropout masks come from each device's own generator): the logged
    # losses depend only on the initial weights, the batch and z, so both devices log the same numbers up to
    # float rounding. Longer runs drift apart: the game amplifies rounding differences.
    def one_step(device):
        torch.manual_seed(0)
        g, d = make_gan("mlp", (1, 4, 4), latent_dim=3, generator_hidden=(8,), discriminator_hidden=(8,))
        return g, train_gan(g, d, IMAGES, latent_dim=3, epochs=1, batch_size=40, fixed_noise_size=5, device=device, seed=3)

    _, on_cpu = one_step("cpu")
    g, on_gpu = one_step("cuda")
    assert next(g.parameters()).device.type == "cuda"
    torch.testing.assert_close(on_cpu.fixed_noise, on_gpu.fixed_noise, rtol=0, atol=0)
    assert on_cpu.epochs[0] == pytest.approx(on_gpu.epochs[0], rel=1e-4, abs=1e-6)
