"""Hand-made convolution filters: edges (Sobel, Laplacian) and blurs (box, Gaussian), as NumPy kernels.

Why here, in explain/: these kernels are not learned (so not nets/), not examples to learn from
(so not data/), and not a computation to check PyTorch against (that is scratch/conv.py). They are
fixed, readable inputs chosen to make a convolution *visible*: applied to a photo, each one shows
what a single feature map computes, and both `torch.nn.functional.conv2d` and the hand convolution
of `dlconcepts.scratch.conv` run them so that their outputs can be compared.

The kernels are written for cross-correlation, which is what conv2d computes (no flip):
out[i, j] = Σ_u Σ_v k[u, v] · x[i + u − r, j + v − r] for a (2r + 1)×(2r + 1) kernel and padding r.
So SOBEL_X, with −1 on the left and +1 on the right, is positive where the image gets brighter
from left to right: it finds vertical edges.
"""

from __future__ import annotations

import numpy as np

# Sobel (1968): a central difference across the edge, smoothed by [1, 2, 1] along it.
SOBEL_X = np.array([[-1.0, 0.0, 1.0],
                    [-2.0, 0.0, 2.0],
                    [-1.0, 0.0, 1.0]])
SOBEL_Y = SOBEL_X.T.copy()  # brighter downwards → positive: horizontal edges

# The discrete Laplacian ∂²/∂x² + ∂²/∂y² (4-neighbour stencil): zero on flat and linearly shaded
# regions, large on fine detail and edges, whatever their direction.
LAPLACIAN = np.array([[0.0, 1.0, 0.0],
                      [1.0, -4.0, 1.0],
                      [0.0, 1.0, 0.0]])

# ITU-R BT.601 luma: how bright an RGB pixel looks. As a convolution it is a 1×1 kernel with three
# input channels and one output channel: every output pixel mixes the three channels of one input pixel.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


def box(size: int = 5) -> np.ndarray:
    """The mean of a size×size window: every weight 1/size²."""
    if size < 1:
        raise ValueError(f"box size must be >= 1, got {size}")
    return np.full((size, size), 1.0 / size**2)


def gaussian(size: int = 5, sigma: float = 1.0) -> np.ndarray:
    """exp(−(u² + v²) / 2σ²) on a size×size grid centred at 0, scaled to sum to 1 (so brightness is kept)."""
    if size < 1 or sigma <= 0:
        raise ValueError(f"gaussian needs size >= 1 and sigma > 0, got size={size}, sigma={sigma}")
    offsets = np.arange(size) - (size - 1) / 2
    g = np.exp(-(offsets[:, None] ** 2 + offsets[None, :] ** 2) / (2 * sigma**2))
    return g / g.sum()


def hand_filters(blur_size: int = 5, sigma: float = 1.0) -> dict[str, np.ndarray]:
    """The lab's filters, by name: each a [k, k] float64 kernel for one grey channel."""
    return {
        "Sobel x (vertical edges)": SOBEL_X,
        "Sobel y (horizontal edges)": SOBEL_Y,
        "Laplacian (detail)": LAPLACIAN,
        f"box {blur_size}×{blur_size} (blur)": box(blur_size),
        f"Gaussian {blur_size}×{blur_size}, σ={sigma:g} (blur)": gaussian(blur_size, sigma),
    }


def as_weight(kernel: np.ndarray) -> np.ndarray:
    """A [k, k] kernel as a conv2d weight [1, 1, k, k]: one input channel, one output channel."""
    return np.asarray(kernel, dtype=np.float64)[None, None]


def per_channel_weight(kernel: np.ndarray, channels: int = 3) -> np.ndarray:
    """A weight [C, C, k, k] that applies `kernel` to each channel on its own.

    Output channel o sees only input channel o (the other C − 1 kernels of its row are zero), so a
    colour photo is blurred channel by channel — and conv2d still sums over all input channels.
    """
    kernel = np.asarray(kernel, dtype=np.float64)
    weight = np.zeros((channels, channels, *kernel.shape))
    for c in range(channels):
        weight[c, c] = kernel
    return weight


def luma_weight() -> np.ndarray:
    """RGB → grey as a conv2d weight [1, 3, 1, 1]."""
    return np.array(LUMA_WEIGHTS, dtype=np.float64).reshape(1, 3, 1, 1)
