"""RandomAffine: exact against hand-made warps (np.roll, np.rot90), label-preserving, seeded."""

import numpy as np
import pytest
import torch

from dlconcepts.data.augment import ONE_PIXEL_SHIFTS, RandomAffine, affine_matrices, average_over_shifts, shift_image, warp


def _one(angle=0.0, scale=1.0, dx=0.0, dy=0.0):
    return (torch.tensor([angle]), torch.tensor([scale]), torch.tensor([[dx, dy]]))


def _shifted(image: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """A shift by whole pixels with zeros coming in, written without any interpolation."""
    out = np.zeros_like(image)
    h, w = image.shape
    out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = image[max(-dy, 0) : h - max(dy, 0), max(-dx, 0) : w - max(dx, 0)]
    return out


def test_identity_shift_and_quarter_turn_match_hand_made_warps():
    rng = np.random.default_rng(0)
    image = rng.random((7, 9)).astype(np.float32)  # not square: the pixel-to-normalized scaling must hold per axis
    batch = torch.from_numpy(image)[None, None]
    same = warp(batch, affine_matrices(*_one(), 7, 9))
    np.testing.assert_allclose(same[0, 0].numpy(), image, atol=1e-6)
    for dx, dy in [(1, 0), (-1, 0), (0, 1), (0, -1), (2, -1)]:
        moved = warp(batch, affine_matrices(*_one(dx=dx, dy=dy), 7, 9))
        np.testing.assert_allclose(moved[0, 0].numpy(), _shifted(image, dx, dy), atol=1e-6)

    square = torch.from_numpy(rng.random((8, 8)).astype(np.float32))[None, None]
    turned = warp(square, affine_matrices(*_one(angle=90.0), 8, 8))
    # np.rot90 turns counter-clockwise as the array is displayed (row 0 on top): the docstring's convention.
    np.testing.assert_allclose(turned[0, 0].numpy(), np.rot90(square[0, 0].numpy()), atol=1e-5)


def test_scaling_about_the_centre_matches_bilinear_by_hand():
    image = np.zeros((8, 8), dtype=np.float32)
    image[3:5, 3:5] = 1.0  # a 2×2 square in the middle; the centre is at 3.5
    big = warp(torch.from_numpy(image)[None, None], affine_matrices(*_one(scale=2.0), 8, 8))[0, 0].numpy()
    # Output pixel x samples the input at 3.5 + (x − 3.5)/2: x = 0..7 → 1.75, 2.25, 2.75, 3.25, 3.75, ...
    # and bilinear interpolation of the 1-D profile 0,0,0,1,1,0,0,0 there gives:
    profile = np.array([0, 0.25, 0.75, 1, 1, 0.75, 0.25, 0], dtype=np.float32)
    np.testing.assert_allclose(big, np.outer(profile, profile), atol=1e-6)


def test_random_warps_keep_each_image_in_its_place_and_are_seeded():
    """Label-preserving: output k is a warp of input k (the targets stay aligned) and still reads as its digit."""
    from sklearn.datasets import load_digits
    from sklearn.svm import SVC

    bunch = load_digits()
    digits = torch.from_numpy((bunch.images / 16.0).astype(np.float32))[:, None]
    fit, held_out = np.arange(0, 1797, 2), np.arange(1, 1797, 2)

    # Shifts alone: each output is exactly its own input moved by the shift drawn for it.
    shifts_only = RandomAffine(max_rotation=0, max_scale=0, max_shift=1, seed=3)
    moved = shifts_only(digits[:50])
    _, _, drawn = RandomAffine(max_rotation=0, max_scale=0, max_shift=1, seed=3).draw(50)
    for k in range(50):
        dx, dy = (int(v) for v in drawn[k])
        np.testing.assert_allclose(moved[k, 0].numpy(), _shifted(digits[k, 0].numpy(), dx, dy), atol=1e-6)

    # Rotations and scalings: a classifier that never saw a warped digit still reads them as their labels.
    reader = SVC(C=10, gamma=0.05).fit(bunch.data[fit] / 16.0, bunch.target[fit])
    warped = RandomAffine(max_rotation=10, max_scale=0.1, max_shift=0, seed=3)(digits[held_out])
    clean_accuracy = np.mean(reader.predict(bunch.data[held_out] / 16.0) == bunch.target[held_out])
    warped_accuracy = np.mean(reader.predict(warped.flatten(1).numpy()) == bunch.target[held_out])
    assert clean_accuracy > 0.97 and warped_accuracy > 0.95

    full = RandomAffine(seed=3)
    out = full(digits[:200])
    assert out.shape == (200, 1, 8, 8) and out.dtype == torch.float32 and not torch.equal(out, digits[:200])
    assert out.min() >= 0 and out.max() <= 1 + 1e-6  # bilinear mixes of values in [0, 1]
    torch.testing.assert_close(RandomAffine(seed=3)(digits[:200]), out)
    assert not torch.equal(RandomAffine(seed=4)(digits[:200]), out)


def test_draws_stay_in_their_ranges():
    t = RandomAffine(max_rotation=12, max_scale=0.2, max_shift=2, seed=0)
    angles, scales, shifts = t.draw(5000)
    assert angles.abs().max() <= 12 and angles.abs().max() > 11
    assert (scales - 1).abs().max() <= 0.2
    assert set(shifts.unique().tolist()) == {-2.0, -1.0, 0.0, 1.0, 2.0}
    with pytest.raises(ValueError, match="whole number"):
        RandomAffine(max_shift=1.5)
    with pytest.raises(ValueError, match=r"\[n, C, H, W\]"):
        t(torch.zeros(8, 8))


def test_shift_image_and_test_time_average():
    rng = np.random.default_rng(1)
    images = torch.from_numpy(rng.random((3, 1, 6, 5)).astype(np.float32))
    for dx, dy in [(1, 0), (0, -1), (-2, 1)]:
        np.testing.assert_array_equal(shift_image(images, dx, dy)[1, 0].numpy(), _shifted(images[1, 0].numpy(), dx, dy))
    # Pixels as logits: the average of softmaxes over the five views, computed view by view here.
    logits_of = lambda x: x.flatten(1) * 3  # noqa: E731
    expected = np.mean([torch.softmax(torch.from_numpy(np.stack([_shifted(im[0].numpy(), dx, dy) for im in images])).flatten(1) * 3, 1).numpy()
                        for dx, dy in ONE_PIXEL_SHIFTS], axis=0)
    got = average_over_shifts(logits_of, images)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(got.sum(1).numpy(), 1.0, rtol=1e-6)
