"""Step 1 for a GAN — two functions learned against each other: a generator G(z) and a discriminator D(x).

G turns noise z ~ N(0, I) into an image; D outputs one *logit* a per image, D(x) = σ(a) being the
probability it gives to "x is real" (the sigmoid lives in the loss, `dlconcepts.losses`, where
log σ(a) is computed stably). Goodfellow et al. 2014 set them a minimax game; see the losses.

Two families:
- `MLPGenerator` / `MLPDiscriminator`: fully connected, for any image size; the default for the 8×8
  digits, where a convolution has too few pixels to work with.
- `DCGANGenerator` / `DCGANDiscriminator`: Radford, Metz & Chintala 2016 ("DCGAN"), scaled down for
  28×28 grey images — transposed convolutions with stride 2 up-sample 7×7 → 14×14 → 28×28, strided
  convolutions instead of pooling in D, batch norm in G and in D's hidden layers (not on G's output
  or D's input), ReLU in G, LeakyReLU(0.2) in D, weights drawn from N(0, 0.02) (their §3–4).

Both generators end in a sigmoid, because the images are grey levels in [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

GAN_ARCHITECTURES = ("mlp", "dcgan")


class MLPGenerator(nn.Module):
    """z [n, latent_dim] → Linear–LeakyReLU(0.2) per hidden width → Linear → sigmoid → [n, *image_shape]."""

    def __init__(self, latent_dim: int, image_shape: Sequence[int], hidden: Sequence[int] = (256, 256)):
        super().__init__()
        self.latent_dim = int(latent_dim)
        self.image_shape = tuple(int(s) for s in image_shape)
        widths = [self.latent_dim, *map(int, hidden)]
        layers: list[nn.Module] = []
        for fan_in, fan_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(fan_in, fan_out), nn.LeakyReLU(0.2)]
        layers += [nn.Linear(widths[-1], _numel(self.image_shape)), nn.Sigmoid()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(len(z), *self.image_shape)


class MLPDiscriminator(nn.Module):
    """[n, *image_shape] → flatten → Linear–LeakyReLU(0.2)–Dropout per hidden width → Linear → logits [n].

    Dropout in D slows it down just enough that G keeps receiving a useful gradient on small data.
    """

    def __init__(self, image_shape: Sequence[int], hidden: Sequence[int] = (256, 256), dropout: float = 0.0):
        super().__init__()
        self.image_shape = tuple(int(s) for s in image_shape)
        widths = [_numel(self.image_shape), *map(int, hidden)]
        layers: list[nn.Module] = [nn.Flatten()]
        for fan_in, fan_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(fan_in, fan_out), nn.LeakyReLU(0.2)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(widths[-1], 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


class DCGANGenerator(nn.Module):
    """z → Linear → [2w, H/4, W/4] → BN–ReLU → ConvT(2w→w, 4, stride 2) → BN–ReLU → ConvT(w→C, 4, stride 2) → sigmoid.

    A transposed convolution with kernel 4, stride 2, padding 1 doubles the size exactly:
    (s − 1)·2 − 2·1 + 4 = 2s. For 28×28 images: 7×7 → 14×14 → 28×28.
    """

    def __init__(self, latent_dim: int, image_shape: Sequence[int] = (1, 28, 28), width: int = 64):
        super().__init__()
        self.latent_dim = int(latent_dim)
        self.image_shape = _check_quarterable(image_shape)
        channels, height, wide = self.image_shape
        self.start = (2 * width, height // 4, wide // 4)
        self.project = nn.Sequential(
            nn.Linear(self.latent_dim, _numel(self.start), bias=False),
            nn.BatchNorm1d(_numel(self.start)),
            nn.ReLU(),
        )
        self.upsample = nn.Sequential(
            nn.ConvTranspose2d(2 * width, width, kernel_size=4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.ConvTranspose2d(width, channels, kernel_size=4, stride=2, padding=1),
            nn.Sigmoid(),
        )
        dcgan_init_(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.upsample(self.project(z).view(len(z), *self.start))


class DCGANDiscriminator(nn.Module):
    """[n, C, H, W] → Conv(C→w, 4, stride 2)–LeakyReLU → Conv(w→2w, 4, stride 2)–BN–LeakyReLU → Linear → logits [n].

    Each strided convolution halves the size: ⌊(s + 2·1 − 4) / 2⌋ + 1 = s/2. For 28×28: 14×14, then 7×7.
    """

    def __init__(self, image_shape: Sequence[int] = (1, 28, 28), width: int = 64):
        super().__init__()
        self.image_shape = _check_quarterable(image_shape)
        channels, height, wide = self.image_shape
        self.features = nn.Sequential(
            nn.Conv2d(channels, width, kernel_size=4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, kernel_size=4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.LeakyReLU(0.2),
            nn.Flatten(),
        )
        self.head = nn.Linear(2 * width * (height // 4) * (wide // 4), 1)
        dcgan_init_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)).squeeze(-1)


def dcgan_init_(module: nn.Module) -> nn.Module:
    """Radford et al. 2016, §4: "all weights were initialized from a zero-centered Normal distribution
    with standard deviation 0.02"; batch-norm scales from N(1, 0.02), shifts at 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
    return module


def make_gan(
    architecture: str,
    image_shape: Sequence[int],
    latent_dim: int,
    generator_hidden: Sequence[int] = (256, 256),
    discriminator_hidden: Sequence[int] = (256, 256),
    width: int = 64,
    dropout: float = 0.0,
) -> tuple[nn.Module, nn.Module]:
    """(generator, discriminator) of one family: 'mlp' (uses the hidden widths and D's `dropout`) or
    'dcgan' (uses `width`, the channels of the first convolution)."""
    if architecture == "mlp":
        return (MLPGenerator(latent_dim, image_shape, generator_hidden),
                MLPDiscriminator(image_shape, discriminator_hidden, dropout))
    if architecture == "dcgan":
        return DCGANGenerator(latent_dim, image_shape, width), DCGANDiscriminator(image_shape, width)
    raise ValueError(f"GAN architecture {architecture!r} is not one of {', '.join(GAN_ARCHITECTURES)}")


def _numel(shape: Sequence[int]) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def _check_quarterable(image_shape: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in image_shape)
    if len(shape) != 3 or shape[1] % 4 or shape[2] % 4 or min(shape) < 1:
        raise ValueError(f"the DCGAN needs image_shape (channels, H, W) with H and W divisible by 4 "
                         f"(two stride-2 steps), e.g. (1, 28, 28); got {shape}")
    return shape  # type: ignore[return-value]
