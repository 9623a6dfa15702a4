"""nets.autoencoder: shapes through MLP and conv autoencoders, the VAE's reparameterization, eval-mode determinism."""

import pytest
import torch
from torch import nn

from dlconcepts.nets.autoencoder import (
    VAE,
    conv_autoencoder,
    conv_plan,
    make_autoencoder,
    make_vae,
    mlp_autoencoder,
    prior_quantile_grid,
    reparameterize,
)


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 7, 9)])
@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_autoencoders_return_images_of_the_input_shape(arch, shape):
    torch.manual_seed(0)
    model = make_autoencoder(arch, shape, latent_dim=3, hidden=(16, 8), channels=(4, 6))
    x = torch.rand(5, *shape)
    assert model.encode(x).shape == (5, 3)
    out = model(x)
    assert out.shape == x.shape
    assert ((out > 0) & (out < 1)).all()  # sigmoid output: pixels in (0, 1)
    torch.testing.assert_close(out, model.decode(model.encode(x)))


def test_conv_plan_halves_each_map_and_the_decoder_returns_odd_sizes_exactly():
    assert conv_plan((1, 28, 28), (16, 32)).sizes == [(1, 28, 28), (16, 14, 14), (32, 7, 7)]
    assert conv_plan((1, 8, 8), (16, 32)).sizes == [(1, 8, 8), (16, 4, 4), (32, 2, 2)]
    assert conv_plan((1, 7, 9), (4,)).sizes == [(1, 7, 9), (4, 4, 5)]
    decoder = conv_autoencoder((1, 7, 9), (4, 6), 2).decoder
    assert decoder(torch.zeros(2, 2)).shape == (2, 1, 7, 9)


def test_mlp_autoencoder_is_the_course_mlp_mirrored():
    model = mlp_autoencoder((1, 8, 8), (256, 128), 2, "relu")
    widths = [(m.in_features, m.out_features) for m in model.modules() if isinstance(m, nn.Linear)]
    assert widths == [(64, 256), (256, 128), (128, 2), (2, 128), (128, 256), (256, 64)]
    linear = mlp_autoencoder((1, 8, 8), (), 2, "identity", output="identity")
    assert not any(isinstance(m, (nn.ReLU, nn.Sigmoid)) for m in linear.modules())


def vae(likelihood="bernoulli", arch="mlp", latent=2):
    torch.manual_seed(1)
    return make_vae(arch, (1, 8, 8), latent, hidden=(32, 16), channels=(4, 8), likelihood=likelihood)


def test_reparameterized_sample_is_mu_plus_sigma_times_the_given_eps():
    model = vae()
    x = torch.rand(6, 1, 8, 8)
    eps = torch.randn(6, 2, generator=torch.Generator().manual_seed(2))
    out = model(x, eps)
    mu, log_var = model.encode(x)
    torch.testing.assert_close(out.mu, mu)
    torch.testing.assert_close(out.log_var, log_var)
    torch.testing.assert_close(out.z, mu + torch.exp(0.5 * log_var) * eps)
    torch.testing.assert_close(out.decoded, model.decoder(out.z))
    assert out.decoded.shape == x.shape


def test_reparameterize_passes_gradients_to_mu_and_log_var():
    mu = torch.tensor([0.5, -1.0], requires_grad=True)
    log_var = torch.tensor([0.2, -0.4], requires_grad=True)
    eps = torch.tensor([1.5, -0.3])
    reparameterize(mu, log_var, eps).sum().backward()
    torch.testing.assert_close(mu.grad, torch.ones(2))  # ∂z/∂μ = 1
    torch.testing.assert_close(log_var.grad, 0.5 * torch.exp(0.5 * log_var.detach()) * eps)  # ∂z/∂log σ² = ½σε


def test_vae_samples_in_training_and_uses_the_mean_in_eval():
    model = vae()
    x = torch.rand(4, 1, 8, 8)
    model.train()
    first, second = model(x), model(x)
    assert not torch.equal(first.z, second.z)  # a fresh ε each call
    model.eval()
    a, b = model(x), model(x)
    torch.testing.assert_close(a.z, a.mu)
    assert torch.equal(a.decoded, b.decoded)  # deterministic at eval


def test_decoders_output_logits_or_means():
    bernoulli, gaussian = vae("bernoulli"), vae("gaussian")
    z = 3 * torch.randn(50, 2, generator=torch.Generator().manual_seed(3))
    logits = bernoulli.decode(z)
    torch.testing.assert_close(bernoulli.decode_mean(z), logits.sigmoid())
    assert not isinstance(list(bernoulli.decoder.modules())[-1], nn.Sigmoid)  # logits: BCE-with-logits does the sigmoid
    assert isinstance(list(gaussian.decoder.modules())[-1], nn.Sigmoid)  # grey-level means in (0, 1)
    torch.testing.assert_close(gaussian.decode_mean(z), gaussian.decode(z))
    conv = vae("bernoulli", "conv", latent=3)
    assert conv(torch.rand(2, 1, 8, 8)).decoded.shape == (2, 1, 8, 8)


def test_vae_refuses_an_encoder_of_the_wrong_width_and_unknown_settings():
    model = VAE(nn.Sequential(nn.Flatten(), nn.Linear(64, 3)), nn.Linear(2, 64), latent_dim=2)
    with pytest.raises(ValueError, match="needs 4"):
        model(torch.rand(2, 1, 8, 8))
    with pytest.raises(ValueError, match="likelihood"):
        make_vae("mlp", (1, 8, 8), 2, likelihood="poisson")
    with pytest.raises(ValueError, match="arch"):
        make_autoencoder("rnn", (1, 8, 8), 2)


def test_prior_quantile_grid():
    stats = pytest.importorskip("scipy.stats")
    codes, values = prior_quantile_grid(2, 5)
    expected = stats.norm.ppf([0.05, 0.275, 0.5, 0.725, 0.95])
    torch.testing.assert_close(values.double(), torch.tensor(expected), rtol=1e-6, atol=1e-6)
    grid = codes.reshape(5, 5, 2)
    torch.testing.assert_close(grid[0, :, 0], values)  # z1 rises to the right
    torch.testing.assert_close(grid[:, 0, 1], values.flip(0))  # z2 falls from the top row down
    codes3, _ = prior_quantile_grid(3, 4)
    rows = codes3.reshape(3, 4, 3)
    for j in range(3):
        torch.testing.assert_close(rows[j, :, j], values_of(4))
        assert (rows[j][:, [k for k in range(3) if k != j]] == 0).all()


def values_of(steps):
    return prior_quantile_grid(1, steps)[1]
