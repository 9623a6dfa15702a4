"""Data augmentation: new training examples from old ones by small warps that keep the label.

A "3" shifted one pixel to the right, turned by 8° or drawn 5 % larger is still a "3". Showing the
network a freshly warped copy of every training image in every epoch teaches it that these changes
do not matter — knowledge a small data set (1,797 digits of 8×8) cannot teach on its own. The
warps are applied to *training* mini-batches only (the Trainer's `augment=` argument): validation
and test images are scored as they are, so the numbers reported are about the real images.

`RandomAffine` draws, for each image of a batch, a rotation angle, a scale factor and a shift, and
resamples the image with `torch.nn.functional.affine_grid` / `grid_sample` (bilinear, zeros outside
the image — the background of the digits is 0). Everything is expressed in pixels and converted to
the normalized coordinates [-1, 1] that `affine_grid` uses (with `align_corners=False`, one pixel
spans 2/W of them), so a shift of exactly one pixel moves the image by exactly one pixel, without blur.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def affine_matrices(angles_deg: torch.Tensor, scales: torch.Tensor, shifts_px: torch.Tensor,
                    height: int, width: int) -> torch.Tensor:
    """The [n, 2, 3] matrices `theta` for `affine_grid` that rotate by `angles_deg` (counter-clockwise on
    screen), scale by `scales` about the image centre and then shift by `shifts_px` = (dx, dy) pixels
    (dx to the right, dy down).

    `affine_grid` maps each *output* pixel to the *input* point it samples, so theta is the inverse of
    the warp: in pixel coordinates centred on the image, p_in = A⁻¹ (p_out − t) with A = s·R(angle).
    Pixel coordinates become normalized ones by x_n = x · 2/W (and y_n = y · 2/H), i.e. theta's 2×2 part
    is D A⁻¹ D⁻¹ and its offset −D A⁻¹ t, with D = diag(2/W, 2/H).
    """
    a = torch.deg2rad(angles_deg)
    cos, sin = torch.cos(a) / scales, torch.sin(a) / scales
    # A⁻¹ = R(−angle)/s. The y axis points down on screen, so a counter-clockwise turn on screen is
    # R(−angle) in these coordinates and its inverse is R(+angle).
    inv = torch.stack([torch.stack([cos, -sin], dim=1), torch.stack([sin, cos], dim=1)], dim=1)  # [n, 2, 2]
    to_norm = torch.tensor([2.0 / width, 2.0 / height], dtype=inv.dtype, device=inv.device)
    linear = inv * to_norm[None, :, None] / to_norm[None, None, :]  # D A⁻¹ D⁻¹
    offset = -(inv @ shifts_px.to(inv.dtype)[:, :, None])[:, :, 0] * to_norm  # −D A⁻¹ t
    return torch.cat([linear, offset[:, :, None]], dim=2)


def warp(images: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Resample images [n, C, H, W] with the matrices theta [n, 2, 3] (bilinear; zeros outside)."""
    grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class RandomAffine:
    """A random rotation, scale and shift for every image of a batch: `augmented = RandomAffine(...)(images)`.

    Args:
        max_rotation: angles are drawn uniformly from [−max_rotation, +max_rotation] degrees.
        max_scale: scale factors are drawn uniformly from [1 − max_scale, 1 + max_scale].
        max_shift: shifts (in pixels, each axis) are drawn uniformly from {−max_shift, …, +max_shift}
            when `integer_shift` (exact, no blur), else from the interval.
        integer_shift: whole-pixel shifts. On 8×8 digits a half-pixel shift smears every stroke.
        seed: the draws come from this transform's own generator, so a run is repeatable and the
            model's random initialization is not disturbed by how many batches were augmented.

    The labels are not touched: image k of the output is a warp of image k of the input, so the
    batch's targets stay aligned with it. Pitfall: a warp that moves strokes off the canvas or turns
    a 6 into a 9 changes what the image shows; keep the angles small (the default is 10°).
    """

    def __init__(self, max_rotation: float = 10.0, max_scale: float = 0.1, max_shift: float = 1.0,
                 integer_shift: bool = True, seed: int = 0):
        if max_rotation < 0 or not 0 <= max_scale < 1 or max_shift < 0:
            raise ValueError(f"need max_rotation >= 0, 0 <= max_scale < 1, max_shift >= 0; got "
                             f"{max_rotation}, {max_scale}, {max_shift}")
        if integer_shift and max_shift != math.floor(max_shift):
            raise ValueError(f"integer_shift needs a whole number of pixels; got max_shift={max_shift}")
        self.max_rotation = float(max_rotation)
        self.max_scale = float(max_scale)
        self.max_shift = float(max_shift)
        self.integer_shift = integer_shift
        self.generator = torch.Generator().manual_seed(seed)

    def __repr__(self) -> str:
        return (f"RandomAffine(rotation ±{self.max_rotation:g}°, scale ±{self.max_scale:g}, "
                f"shift ±{self.max_shift:g} px{' (whole pixels)' if self.integer_shift else ''})")

    def draw(self, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """n angles (degrees), n scales and n×2 shifts (pixels), from this transform's generator (on the CPU)."""
        g = self.generator
        angles = (2 * torch.rand(n, generator=g) - 1) * self.max_rotation
        scales = 1 + (2 * torch.rand(n, generator=g) - 1) * self.max_scale
        if self.integer_shift:
            k = int(self.max_shift)
            shifts = torch.randint(-k, k + 1, (n, 2), generator=g).float()
        else:
            shifts = (2 * torch.rand(n, 2, generator=g) - 1) * self.max_shift
        return angles, scales, shifts

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4:
            raise ValueError(f"RandomAffine needs images [n, C, H, W]; got shape {list(images.shape)}")
        n, _, height, width = images.shape
        # Drawn on the CPU (a few numbers per image) and moved: one generator serves every device.
        theta = affine_matrices(*self.draw(n), height, width).to(images.device)
        return warp(images, theta)


def shift_image(images: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """Images [n, C, H, W] moved by whole pixels, dx to the right and dy down; zeros move in at the edge."""
    out = torch.zeros_like(images)
    h, w = images.shape[-2:]
    out[..., max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = \
        images[..., max(-dy, 0) : h - max(dy, 0), max(-dx, 0) : w - max(dx, 0)]
    return out


# The image itself and its four one-pixel neighbours: test-time views for `average_over_shifts`.
ONE_PIXEL_SHIFTS = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))


def average_over_shifts(predict_logits, images: torch.Tensor,
                        shifts: tuple[tuple[int, int], ...] = ONE_PIXEL_SHIFTS) -> torch.Tensor:
    """Test-time augmentation: class probabilities averaged over shifted copies of each image.

    `predict_logits(images) -> logits [n, classes]` (a model in eval mode). A network trained on shifted
    digits has learned that a shift does not change the digit; asking it about a few shifted copies and
    averaging its softmax outputs smooths away the accident of where the digit sits, and costs
    `len(shifts)` forward passes and no training. Returns probabilities [n, classes].
    """
    total = None
    for dx, dy in shifts:
        probabilities = torch.softmax(predict_logits(shift_image(images, dx, dy)), dim=1)
        total = probabilities if total is None else total + probabilities
    return total / len(shifts)
