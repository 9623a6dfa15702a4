"""The GAN nets: shapes, output ranges, the DCGAN's sizes and initialization, refused shapes."""

import pytest
import torch

from dlconcepts.nets.gan import DCGANDiscriminator, DCGANGenerator, MLPDiscriminator, MLPGenerator, make_gan


def test_mlp_gan_maps_noise_to_images_in_0_1_and_images_to_one_logit():
    torch.manual_seed(0)
    g, d = make_gan("mlp", (1, 8, 8), latent_dim=16, generator_hidden=(32, 48), discriminator_hidden=(40,), dropout=0.3)
    assert isinstance(g, MLPGenerator) and isinstance(d, MLPDiscriminator)
    images = g(torch.randn(5, 16))
    assert images.shape == (5, 1, 8, 8) and images.min() > 0 and images.max() < 1
    logits = d(images)
    assert logits.shape == (5,)
    # Hidden widths as asked: 16→32→48→64 for G, 64→40→1 for D (with dropout after the hidden layer).
    assert [m.out_features for m in g.modules() if isinstance(m, torch.nn.Linear)] == [32, 48, 64]
    assert [m.out_features for m in d.modules() if isinstance(m, torch.nn.Linear)] == [40, 1]
    assert any(isinstance(m, torch.nn.Dropout) and m.p == 0.3 for m in d.modules())


def test_dcgan_for_28x28_doubles_and_halves_the_maps():
    torch.manual_seed(0)
    g, d = DCGANGenerator(latent_dim=20, width=8), DCGANDiscriminator(width=8)
    z = torch.randn(4, 20)
    assert g.start == (16, 7, 7)
    maps = g.project(z).view(4, *g.start)
    assert g.upsample[0](maps).shape == (4, 8, 14, 14)  # ConvT(4, stride 2, padding 1): 7 → 14
    images = g(z)
    assert images.shape == (4, 1, 28, 28) and images.min() >= 0 and images.max() <= 1
    assert d.features[0](images).shape == (4, 8, 14, 14)  # Conv(4, stride 2, padding 1): 28 → 14
    assert d.features(images).shape == (4, 16 * 7 * 7)
    assert d(images).shape == (4,)
    d(images).sum().backward()  # D's logit backpropagates through both nets, to G's first layer
    assert g.project[0].weight.grad.abs().sum() > 0


def test_dcgan_weights_start_from_n_0_0_02():
    torch.manual_seed(1)
    d = DCGANDiscriminator(width=64)
    weights = d.features[2].weight  # 64 → 128 convolution, 131,072 weights
    assert abs(weights.mean().item()) < 0.001 and weights.std().item() == pytest.approx(0.02, rel=0.02)
    bn = d.features[3]
    assert bn.weight.mean().item() == pytest.approx(1.0, abs=0.01) and bn.bias.abs().max().item() == 0.0


def test_dcgan_serves_any_size_divisible_by_4_and_refuses_others():
    g, d = make_gan("dcgan", (1, 8, 8), latent_dim=4, width=4)
    assert g(torch.randn(3, 4)).shape == (3, 1, 8, 8) and d(torch.rand(3, 1, 8, 8)).shape == (3,)
    with pytest.raises(ValueError, match="divisible by 4"):
        DCGANGenerator(4, (1, 30, 30))
    with pytest.raises(ValueError, match="not one of mlp, dcgan"):
        make_gan("vae", (1, 8, 8), 4)
