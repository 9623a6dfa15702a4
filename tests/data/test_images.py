"""The bundled photos and the ImageNet preprocessing: crop offsets and normalization by hand, resize against PIL."""

import numpy as np
import pytest
import torch
from PIL import Image

from dlconcepts.data.images import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    SAMPLE_PHOTOS,
    center_crop,
    center_crop_box,
    imagenet_preprocess,
    load_photo,
    normalize,
    resize,
    shorter_side_size,
    to_image,
    to_tensor,
)
from dlconcepts.errors import UserError


def test_the_bundled_photos_load_offline_as_rgb_uint8():
    for name in SAMPLE_PHOTOS:
        photo = load_photo(name)
        assert photo.shape == (427, 640, 3) and photo.dtype == np.uint8
    assert not np.array_equal(load_photo("china"), load_photo("flower"))
    with pytest.raises(UserError, match="did you mean 'china'"):
        load_photo("chin")


def test_sizes_and_crop_offsets_worked_by_hand():
    # 427×640, shorter side to 256: 256 · 640 / 427 = 383.7 → 383 (truncated, as torchvision)
    assert shorter_side_size(427, 640, 256) == (256, 383)
    assert shorter_side_size(640, 427, 256) == (383, 256)  # portrait: the width is the shorter side
    assert shorter_side_size(300, 300, 256) == (256, 256)
    # central 224 of 256×383: top (256 − 224) / 2 = 16, left (383 − 224) / 2 = 79.5 → 80 (half to even)
    assert center_crop_box(256, 383, 224) == (16, 80)
    assert center_crop_box(256, 381, 224) == (16, 78)  # 78.5 → 78, half to even again
    assert center_crop_box(64, 96, 64) == (0, 16)
    with pytest.raises(ValueError, match="resize it first"):
        center_crop_box(200, 300, 224)


def test_center_crop_takes_exactly_those_pixels():
    image = torch.arange(3 * 7 * 10, dtype=torch.float32).reshape(3, 7, 10)
    crop = center_crop(image, 4)  # top round(1.5) = 2, left round(3) = 3
    assert torch.equal(crop, image[:, 2:6, 3:7])


def test_normalization_by_hand_on_one_pixel():
    pixel = torch.tensor([[[0.2]], [[0.5]], [[0.9]]], dtype=torch.float64)
    expected = [(0.2 - 0.485) / 0.229, (0.5 - 0.456) / 0.224, (0.9 - 0.406) / 0.225]
    np.testing.assert_allclose(normalize(pixel).flatten().numpy(), expected, rtol=0, atol=1e-12)
    assert IMAGENET_MEAN == (0.485, 0.456, 0.406) and IMAGENET_STD == (0.229, 0.224, 0.225)


def test_resize_keeps_a_constant_image_and_matches_pil_within_one_grey_level():
    flat = torch.full((3, 50, 80), 0.3)
    assert torch.allclose(resize(flat, (20, 33)), torch.full((3, 20, 33), 0.3), atol=1e-6)
    photo = load_photo("flower")
    for size in [(256, 383), (64, 96)]:
        # PIL's antialiased bilinear resize is the reference torchvision matches; it rounds to 8 bits
        pil = np.asarray(Image.fromarray(photo).resize(size[::-1], Image.BILINEAR), dtype=np.float64)
        ours = resize(to_tensor(photo), size).permute(1, 2, 0).numpy() * 255
        assert np.abs(pil - ours).max() <= 1.0  # measured 0.76 to 1.00 (≤ 0.5 of it is PIL's rounding)


def test_the_whole_preprocessing_chain():
    photo = load_photo("china")
    steps = imagenet_preprocess(photo)
    assert steps.original.shape == (3, 427, 640)
    assert float(steps.original.min()) >= 0 and float(steps.original.max()) <= 1
    np.testing.assert_allclose(steps.original[:, 10, 20].numpy(), photo[10, 20] / 255, atol=1e-7)
    assert steps.resized.shape == (3, 256, 383)
    assert steps.crop_box == (16, 80, 224)
    assert torch.equal(steps.cropped, steps.resized[:, 16:240, 80:304])
    assert steps.batch.shape == (1, 3, 224, 224)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    assert torch.allclose(steps.normalized * std + mean, steps.cropped, atol=1e-6)
    assert to_image(steps.cropped).shape == (224, 224, 3)
    with pytest.raises(ValueError, match="uint8"):
        to_tensor(photo.astype(np.float32))


@pytest.mark.torchvision
def test_the_preprocessing_matches_torchvisions_transforms():
    """torchvision's own Resize(256), CenterCrop(224), ToTensor, Normalize on the PIL photo (make test-torchvision)."""
    transforms = pytest.importorskip("torchvision.transforms")
    pipeline = transforms.Compose([
        transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])
    for name in SAMPLE_PHOTOS:
        photo = load_photo(name)
        theirs = pipeline(Image.fromarray(photo))
        ours = imagenet_preprocess(photo).normalized
        assert ours.shape == theirs.shape == (3, 224, 224)
        # torchvision resizes the 8-bit image and rounds: at most about one grey level apart, i.e.
        # 1/255 / std ≈ 0.0175 after normalizing (measured 0.0167 on china, 0.0169 on flower: 0.97 grey levels)
        assert float((ours - theirs).abs().max()) <= 1.0 / 255 / min(IMAGENET_STD) + 1e-6
        # the crop is the same window: shifting ours by one pixel makes the difference far larger
        assert float((torch.roll(ours, 1, dims=2) - theirs).abs().max()) > 0.1
