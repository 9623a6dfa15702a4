"""Photos to look at convolutions with, and the standard ImageNet preprocessing, written with torch only.

The photos are the two that scikit-learn bundles (`sklearn.datasets.load_sample_image`): a Chinese
temple ("china") and a flower ("flower"), each 427×640 RGB. They ship inside scikit-learn, so
nothing downloads.

Every network trained on ImageNet (AlexNet, ResNet, ... in torchvision) expects its input prepared
in the same four steps, and a photo prepared differently is silently misclassified:

1. resize so that the *shorter* side is 256 pixels, keeping the aspect ratio
   (bilinear, with antialiasing so that shrinking averages pixels instead of skipping them);
2. cut the central 224×224 square;
3. scale the 8-bit values to [0, 1];
4. normalize each channel with the mean and standard deviation of the ImageNet training set:
   x' = (x − mean_c) / std_c.

These functions do those steps with `torch.nn.functional.interpolate`, so torchvision is not needed.
Their rounding follows torchvision's `Resize` and `CenterCrop`: the longer side becomes
⌊256 · long / short⌋ and the crop starts at round((H − 224) / 2), round((W − 224) / 2).
One difference: torchvision resizes the 8-bit PIL image and rounds to integers before scaling to
[0, 1]; here the resize runs on the [0, 1] floats, which changes pixels by at most about one grey
level in 255.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from dlconcepts.errors import UserError, did_you_mean

SAMPLE_PHOTOS = ("china", "flower")

# Per-channel (R, G, B) statistics of the ImageNet training images, on the [0, 1] scale: the values
# every torchvision ImageNet model was trained with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def load_photo(name: str) -> np.ndarray:
    """One of scikit-learn's bundled photos as uint8 [H, W, 3] (RGB)."""
    if name not in SAMPLE_PHOTOS:
        raise UserError(f"unknown photo '{name}'{did_you_mean(name, SAMPLE_PHOTOS)}; choose one of {', '.join(SAMPLE_PHOTOS)}")
    from sklearn.datasets import load_sample_image  # imported here: it pulls in Pillow

    return load_sample_image(f"{name}.jpg")


def to_tensor(photo: np.ndarray) -> torch.Tensor:
    """uint8 [H, W, 3] → float32 [3, H, W] in [0, 1] (channels first, as torch's convolutions want)."""
    photo = np.asarray(photo)
    if photo.ndim != 3 or photo.shape[2] != 3 or photo.dtype != np.uint8:
        raise ValueError(f"expected an RGB photo as uint8 [H, W, 3], got {photo.dtype} {photo.shape}")
    return torch.from_numpy(photo.copy()).permute(2, 0, 1).float() / 255.0  # copy: sklearn's array is read-only


def to_image(tensor: torch.Tensor) -> np.ndarray:
    """float [3, H, W] in [0, 1] → float [H, W, 3] clipped to [0, 1], ready for `imshow`."""
    return tensor.detach().cpu().permute(1, 2, 0).clamp(0, 1).numpy()


def resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of [C, H, W] or [N, C, H, W] to size = (height, width), antialiased.

    Without antialiasing, shrinking a photo by a factor of 1.7 keeps only some pixels and aliases
    fine texture; with it each output pixel averages the input pixels under a triangle as wide
    as the scale factor (what PIL and torchvision do).
    """
    batched = image.dim() == 4
    out = F.interpolate(image if batched else image[None], size=size, mode="bilinear",
                        align_corners=False, antialias=True)
    return out if batched else out[0]


def shorter_side_size(height: int, width: int, shorter: int) -> tuple[int, int]:
    """(height, width) after resizing so the shorter side is `shorter`; the longer one is truncated,
    ⌊shorter · long / short⌋, as torchvision does."""
    if height <= width:
        return shorter, int(shorter * width / height)
    return int(shorter * height / width), shorter


def resize_shorter_side(image: torch.Tensor, shorter: int = 256) -> torch.Tensor:
    """Resize so the shorter side is `shorter` pixels, keeping the aspect ratio (step 1)."""
    return resize(image, shorter_side_size(image.shape[-2], image.shape[-1], shorter))


def center_crop_box(height: int, width: int, size: int) -> tuple[int, int]:
    """(top, left) of the central size×size square: round((H − size) / 2), round((W − size) / 2).

    Python's round() rounds halves to even (79.5 → 80, 78.5 → 78), as torchvision's CenterCrop does.
    """
    if size > height or size > width:
        raise ValueError(f"cannot crop {size}×{size} out of a {height}×{width} image; resize it first")
    return int(round((height - size) / 2)), int(round((width - size) / 2))


def center_crop(image: torch.Tensor, size: int = 224) -> torch.Tensor:
    """The central size×size square of [..., H, W] (step 2)."""
    top, left = center_crop_box(image.shape[-2], image.shape[-1], size)
    return image[..., top: top + size, left: left + size]


def normalize(image: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """x' = (x − mean_c) / std_c for each channel c of [3, H, W] or [N, 3, H, W] (step 4)."""
    shape = (-1, 1, 1)
    return (image - torch.tensor(mean, dtype=image.dtype).view(shape)) / torch.tensor(std, dtype=image.dtype).view(shape)


@dataclass(frozen=True)
class Preprocessed:
    """Each step of the preprocessing, kept so that it can be shown: all float [3, H, W]."""

    original: torch.Tensor  # [0, 1]
    resized: torch.Tensor  # [0, 1], shorter side = `shorter`
    crop_box: tuple[int, int, int]  # (top, left, size) in `resized`
    cropped: torch.Tensor  # [0, 1], size × size
    normalized: torch.Tensor  # (cropped − mean) / std: what the network sees

    @property
    def batch(self) -> torch.Tensor:
        """The network's input: [1, 3, size, size]."""
        return self.normalized[None]


def imagenet_preprocess(photo: np.ndarray, shorter: int = 256, crop: int = 224) -> Preprocessed:
    """The standard ImageNet preprocessing of a uint8 RGB photo: resize, center crop, [0, 1], normalize."""
    original = to_tensor(photo)  # step 3 first: the resize then runs on floats (see the module docstring)
    resized = resize_shorter_side(original, shorter)
    top, left = center_crop_box(resized.shape[-2], resized.shape[-1], crop)
    cropped = center_crop(resized, crop)
    return Preprocessed(original, resized, (top, left, crop), cropped, normalize(cropped))
