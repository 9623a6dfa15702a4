"""Step 1 for self-supervised learning — functions that learn from the data itself: autoencoders and the VAE.

An autoencoder is two functions in a row: an encoder that squeezes an image x into a short code z
(the *latent* vector, here often 2 numbers so it can be drawn) and a decoder that rebuilds x̂ from z.
The target is the input itself, so no labels are needed; the narrow code forces the net to keep only
what matters most. A linear autoencoder can do no better than PCA with as many components (Baldi &
Hornik 1989; Eckart–Young): the nonlinear one is worth its cost only where it beats that line.

The variational autoencoder (Kingma & Welling, "Auto-Encoding Variational Bayes", ICLR 2014) makes
the code random. Its encoder outputs a Gaussian q(z|x) = N(μ(x), diag σ²(x)) — as μ and log σ², so
that σ² = exp(log σ²) is positive without a constraint — and z is drawn from it with the
*reparameterization trick*, z = μ + σ·ε with ε ~ N(0, I) (their eq. 10): the randomness sits in ε,
so gradients flow through μ and σ. The decoder outputs the parameters of p(x|z):

* `bernoulli`: one logit per pixel; p(x|z) = Π Bernoulli(x_i; sigmoid(logit_i)); the image it
  "means" is sigmoid(logits), the Bernoulli mean;
* `gaussian`: one mean per pixel with a fixed standard deviation σ_x; p(x|z) = N(x; mean, σ_x² I).

Every module here takes images [n, C, H, W] and returns images of the same shape (the MLP variants
flatten inside), so the training loops and figures never care which one they hold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from dlconcepts.nets.mlp import ACTIVATIONS, mlp

LIKELIHOODS = ("bernoulli", "gaussian")
ARCHITECTURES = ("mlp", "conv")
OUTPUTS = ("sigmoid", "identity")


# --- the autoencoder ------------------------------------------------------------------------------


class Autoencoder(nn.Module):
    """x̂ = decoder(encoder(x)): `encode` gives the latent code, `decode` the image it stands for."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module, latent_dim: int):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.latent_dim = latent_dim

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def _check_shape(image_shape: Sequence[int]) -> tuple[int, int, int]:
    if len(image_shape) != 3 or any(int(s) < 1 for s in image_shape):
        raise ValueError(f"image_shape must be (channels, height, width), all >= 1; got {tuple(image_shape)}")
    return tuple(int(s) for s in image_shape)  # type: ignore[return-value]


def _output_layer(output: str) -> list[nn.Module]:
    """What ends a decoder: a sigmoid keeps pixels in (0, 1) (Bernoulli means); 'identity' leaves them free."""
    if output not in OUTPUTS:
        raise ValueError(f"output {output!r} is not one of {', '.join(OUTPUTS)}")
    return [nn.Sigmoid()] if output == "sigmoid" else []


def mlp_encoder(image_shape: Sequence[int], hidden: Sequence[int], outputs: int, activation: str = "relu") -> nn.Sequential:
    """Flatten the image, then the MLP pixels → hidden… → outputs (linear last layer)."""
    c, h, w = _check_shape(image_shape)
    return nn.Sequential(nn.Flatten(), *mlp((c * h * w, *hidden, outputs), activation))


def mlp_decoder(
    image_shape: Sequence[int], hidden: Sequence[int], latent_dim: int, activation: str = "relu", output: str = "sigmoid"
) -> nn.Sequential:
    """The MLP latent → hidden… → pixels, reshaped to the image; `output` 'sigmoid' keeps pixels in (0, 1)."""
    c, h, w = _check_shape(image_shape)
    layers: list[nn.Module] = [*mlp((latent_dim, *hidden, c * h * w), activation), nn.Unflatten(1, (c, h, w))]
    return nn.Sequential(*layers, *_output_layer(output))


def mlp_autoencoder(
    image_shape: Sequence[int],
    hidden: Sequence[int] = (256, 128),
    latent_dim: int = 2,
    activation: str = "relu",
    output: str = "sigmoid",
) -> Autoencoder:
    """pixels → hidden… → latent → reversed hidden… → pixels, e.g. 64→256→128→2→128→256→64 on 8×8 digits.

    `activation='identity', output='identity'` gives the *linear* autoencoder, whose best weights span
    the same subspace as PCA's leading components.
    """
    encoder = mlp_encoder(image_shape, hidden, latent_dim, activation)
    decoder = mlp_decoder(image_shape, tuple(reversed(tuple(hidden))), latent_dim, activation, output)
    return Autoencoder(encoder, decoder, latent_dim)


@dataclass(frozen=True)
class ConvPlan:
    """Feature map sizes of the conv encoder, [(channels, height, width)] from the input to the last map."""

    sizes: list[tuple[int, int, int]]

    @property
    def flat(self) -> int:
        c, h, w = self.sizes[-1]
        return c * h * w


def conv_plan(image_shape: Sequence[int], channels: Sequence[int]) -> ConvPlan:
    """Each 3×3 convolution with stride 2 and padding 1 takes H to ⌊(H − 1)/2⌋ + 1 (28 → 14 → 7; 8 → 4 → 2)."""
    c, h, w = _check_shape(image_shape)
    sizes = [(c, h, w)]
    for out_channels in channels:
        h, w = (h - 1) // 2 + 1, (w - 1) // 2 + 1
        sizes.append((int(out_channels), h, w))
    return ConvPlan(sizes)


def conv_encoder(image_shape: Sequence[int], channels: Sequence[int], outputs: int, activation: str = "relu") -> nn.Sequential:
    """Stride-2 convolutions (each halves H and W), then one Linear layer to `outputs` numbers."""
    plan = conv_plan(image_shape, channels)
    layers: list[nn.Module] = []
    for (c_in, _, _), (c_out, _, _) in zip(plan.sizes[:-1], plan.sizes[1:]):
        layers += [nn.Conv2d(c_in, c_out, kernel_size=3, stride=2, padding=1), ACTIVATIONS[activation]()]
    layers += [nn.Flatten(), nn.Linear(plan.flat, outputs)]
    return nn.Sequential(*layers)


def conv_decoder(
    image_shape: Sequence[int], channels: Sequence[int], latent_dim: int, activation: str = "relu", output: str = "sigmoid"
) -> nn.Sequential:
    """The encoder mirrored: Linear to the smallest maps, then transposed convolutions that double H and W.

    A transposed 3×3 convolution with stride 2 and padding 1 gives 2H − 1 + output_padding; the
    output_padding (0 or 1) is chosen per layer so each map returns to the encoder's size exactly,
    odd sizes included.
    """
    plan = conv_plan(image_shape, channels)
    layers: list[nn.Module] = [nn.Linear(latent_dim, plan.flat), ACTIVATIONS[activation](), nn.Unflatten(1, plan.sizes[-1])]
    backwards = plan.sizes[::-1]
    for i, ((c_in, h_in, w_in), (c_out, h_out, w_out)) in enumerate(zip(backwards[:-1], backwards[1:])):
        padding = (h_out - (2 * h_in - 1), w_out - (2 * w_in - 1))
        layers.append(nn.ConvTranspose2d(c_in, c_out, kernel_size=3, stride=2, padding=1, output_padding=padding))
        if i < len(backwards) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers, *_output_layer(output))


def conv_autoencoder(
    image_shape: Sequence[int],
    channels: Sequence[int] = (16, 32),
    latent_dim: int = 2,
    activation: str = "relu",
    output: str = "sigmoid",
) -> Autoencoder:
    """A convolutional autoencoder for images such as MNIST's 28×28: [n,1,28,28] → 16×14×14 → 32×7×7 → latent."""
    encoder = conv_encoder(image_shape, channels, latent_dim, activation)
    decoder = conv_decoder(image_shape, channels, latent_dim, activation, output)
    return Autoencoder(encoder, decoder, latent_dim)


# --- the variational autoencoder ------------------------------------------------------------------


def reparameterize(mu: torch.Tensor, log_var: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """z = μ + σ·ε with σ = exp(½ log σ²) (Kingma & Welling 2014, eq. 10): a sample of N(μ, σ²) that is
    differentiable in μ and log σ², because the randomness is all in the given ε ~ N(0, I)."""
    return mu + torch.exp(0.5 * log_var) * eps


@dataclass
class VAEOutput:
    """One pass of the VAE: the encoder's Gaussian (μ, log σ²), the code z used, and the decoder's output
    (logits for a Bernoulli decoder, means for a Gaussian one)."""

    mu: torch.Tensor
    log_var: torch.Tensor
    z: torch.Tensor
    decoded: torch.Tensor


class VAE(nn.Module):
    """Gaussian encoder q(z|x) = N(μ, diag σ²), reparameterized sampling, Bernoulli or Gaussian decoder p(x|z).

    `encoder(x)` must return 2·latent_dim numbers per image: μ, then log σ². `decoder(z)` returns the
    decoder's parameters shaped like the image: logits (`bernoulli`) or means (`gaussian`, with fixed
    standard deviation `sigma`).

    `forward(x, eps)` uses the ε given; without one it draws ε in training mode and uses z = μ in eval
    mode, so an evaluated model reconstructs deterministically.
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module, latent_dim: int,
                 likelihood: str = "bernoulli", sigma: float = 0.1):
        super().__init__()
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood {likelihood!r} is not one of {', '.join(LIKELIHOODS)}")
        if not sigma > 0:
            raise ValueError(f"sigma must be > 0; got {sigma}")
        self.encoder = encoder
        self.decoder = decoder
        self.latent_dim = latent_dim
        self.likelihood = likelihood
        self.sigma = float(sigma)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """μ(x) and log σ²(x), each [n, latent_dim]."""
        out = self.encoder(x)
        if out.shape[-1] != 2 * self.latent_dim:
            raise ValueError(f"the encoder returned {out.shape[-1]} numbers per image; a VAE with latent_dim="
                             f"{self.latent_dim} needs {2 * self.latent_dim} (μ, then log σ²)")
        mu, log_var = out.chunk(2, dim=-1)
        return mu, log_var

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The decoder's raw output: logits (Bernoulli) or means (Gaussian)."""
        return self.decoder(z)

    def decode_mean(self, z: torch.Tensor) -> torch.Tensor:
        """The image p(x|z) expects: sigmoid(logits) for a Bernoulli decoder, the mean for a Gaussian one."""
        out = self.decoder(z)
        return torch.sigmoid(out) if self.likelihood == "bernoulli" else out

    def forward(self, x: torch.Tensor, eps: torch.Tensor | None = None) -> VAEOutput:
        mu, log_var = self.encode(x)
        if eps is None:
            z = reparameterize(mu, log_var, torch.randn_like(mu)) if self.training else mu
        else:
            z = reparameterize(mu, log_var, eps)
        return VAEOutput(mu=mu, log_var=log_var, z=z, decoded=self.decoder(z))


def prior_quantile_grid(latent_dim: int, steps: int, low: float = 0.05, high: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes for a latent traversal, evenly spaced in *probability* under the prior N(0, 1) per dimension.

    The values are Φ⁻¹(p) for `steps` probabilities p from `low` to `high` (so the grid covers where
    the prior puts its mass, denser near 0). With a 2-D code the grid is the full steps × steps
    product, row by row with z2 falling from the top row down and z1 rising to the right (as in a
    scatter plot); otherwise row j varies dimension j alone, the others held at 0. Returns (codes,
    values): codes [rows · steps, latent_dim], values [steps].
    """
    if steps < 2 or not 0 < low < high < 1:
        raise ValueError(f"need steps >= 2 and 0 < low < high < 1; got steps={steps}, low={low}, high={high}")
    values = torch.special.ndtri(torch.linspace(low, high, steps, dtype=torch.float64)).float()
    if latent_dim == 2:
        z2, z1 = torch.meshgrid(values.flip(0), values, indexing="ij")
        return torch.stack([z1.reshape(-1), z2.reshape(-1)], dim=1), values
    codes = torch.zeros(latent_dim, steps, latent_dim)
    for j in range(latent_dim):
        codes[j, :, j] = values
    return codes.reshape(-1, latent_dim), values


def make_autoencoder(
    arch: str,
    image_shape: Sequence[int],
    latent_dim: int,
    hidden: Sequence[int] = (256, 128),
    channels: Sequence[int] = (16, 32),
    activation: str = "relu",
    output: str = "sigmoid",
) -> Autoencoder:
    """`arch` 'mlp' (hidden widths) or 'conv' (channels of the stride-2 convolutions)."""
    if arch == "mlp":
        return mlp_autoencoder(image_shape, hidden, latent_dim, activation, output)
    if arch == "conv":
        return conv_autoencoder(image_shape, channels, latent_dim, activation, output)
    raise ValueError(f"arch {arch!r} is not one of {', '.join(ARCHITECTURES)}")


def make_vae(
    arch: str,
    image_shape: Sequence[int],
    latent_dim: int,
    hidden: Sequence[int] = (256, 128),
    channels: Sequence[int] = (16, 32),
    activation: str = "relu",
    likelihood: str = "bernoulli",
    sigma: float = 0.1,
) -> VAE:
    """A VAE whose encoder outputs (μ, log σ²) and whose decoder outputs logits (Bernoulli) or
    sigmoid-bounded means (Gaussian: pixels live in [0, 1])."""
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"likelihood {likelihood!r} is not one of {', '.join(LIKELIHOODS)}")
    output = "identity" if likelihood == "bernoulli" else "sigmoid"
    if arch == "mlp":
        encoder = mlp_encoder(image_shape, hidden, 2 * latent_dim, activation)
        decoder = mlp_decoder(image_shape, tuple(reversed(tuple(hidden))), latent_dim, activation, output)
    elif arch == "conv":
        encoder = conv_encoder(image_shape, channels, 2 * latent_dim, activation)
        decoder = conv_decoder(image_shape, channels, latent_dim, activation, output)
    else:
        raise ValueError(f"arch {arch!r} is not one of {', '.join(ARCHITECTURES)}")
    return VAE(encoder, decoder, latent_dim, likelihood, sigma)


__all__ = [
    "ARCHITECTURES",
    "LIKELIHOODS",
    "Autoencoder",
    "ConvPlan",
    "VAE",
    "VAEOutput",
    "conv_autoencoder",
    "conv_decoder",
    "conv_encoder",
    "conv_plan",
    "make_autoencoder",
    "make_vae",
    "mlp_autoencoder",
    "mlp_decoder",
    "mlp_encoder",
    "prior_quantile_grid",
    "reparameterize",
]
