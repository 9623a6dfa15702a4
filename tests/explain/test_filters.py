"""The hand-made filters give the answers worked out by hand on ramps and flat images."""

import numpy as np
import torch
import torch.nn.functional as F

from dlconcepts.explain import filters
from dlconcepts.scratch.conv import conv2d


def interior(out):
    return out[0, 0, 1:-1, 1:-1]  # away from the zero padding


def test_edges_on_ramps_by_hand():
    cols = np.tile(np.arange(8.0), (6, 1))[None, None]  # x[i, j] = j: brighter to the right
    rows = cols.transpose(0, 1, 3, 2)  # x[i, j] = i: brighter downwards
    sx, sy = filters.as_weight(filters.SOBEL_X), filters.as_weight(filters.SOBEL_Y)
    # Sobel x = Σ over the rows (weights 1, 2, 1) of x[j+1] − x[j−1] = 4 · 2 = 8 on the ramp in j
    np.testing.assert_array_equal(interior(conv2d(cols, sx, padding=1)), 8.0)
    np.testing.assert_array_equal(interior(conv2d(cols, sy, padding=1)), 0.0)
    np.testing.assert_array_equal(interior(conv2d(rows, sy, padding=1)), 8.0)
    lap = filters.as_weight(filters.LAPLACIAN)
    np.testing.assert_array_equal(interior(conv2d(cols, lap, padding=1)), 0.0)  # a linear ramp has no curvature
    np.testing.assert_array_equal(interior(conv2d(cols**2, lap, padding=1)), 2.0)  # ∂²(j²)/∂j² = 2
    # and torch's conv2d agrees: the kernels are written for cross-correlation, no flip
    theirs = F.conv2d(torch.from_numpy(cols), torch.from_numpy(sx), padding=1).numpy()
    np.testing.assert_array_equal(interior(theirs), 8.0)


def test_blurs_keep_a_flat_image_and_sum_to_one():
    for kernel in (filters.box(5), filters.gaussian(5, 1.0), filters.gaussian(7, 2.5)):
        assert abs(kernel.sum() - 1) < 1e-15
        flat = np.full((1, 1, 9, 9), 0.7)
        np.testing.assert_allclose(conv2d(flat, filters.as_weight(kernel)), 0.7, rtol=0, atol=1e-15)
    g = filters.gaussian(5, 1.0)
    np.testing.assert_allclose(g, g.T, atol=0)
    np.testing.assert_allclose(g, g[::-1, ::-1], atol=0)
    # ratio of the centre to its neighbour: exp(0) / exp(−1 / 2σ²) = e^0.5 for σ = 1
    assert abs(g[2, 2] / g[2, 3] - np.exp(0.5)) < 1e-12
    np.testing.assert_array_equal(filters.box(3), np.full((3, 3), 1 / 9))


def test_channel_weights():
    w = filters.per_channel_weight(filters.box(3), 3)
    assert w.shape == (3, 3, 3, 3)
    x = np.random.default_rng(0).normal(size=(1, 3, 6, 6))
    out = conv2d(x, w, padding=1)
    for c in range(3):  # each output channel is its own input channel blurred
        np.testing.assert_allclose(out[:, c], conv2d(x[:, c:c + 1], filters.as_weight(filters.box(3)), padding=1)[:, 0], atol=1e-15)
    luma = filters.luma_weight()
    assert luma.shape == (1, 3, 1, 1) and abs(luma.sum() - 1) < 1e-15  # white stays white
    pixel = np.array([0.2, 0.5, 0.9]).reshape(1, 3, 1, 1)
    assert abs(conv2d(pixel, luma)[0, 0, 0, 0] - (0.299 * 0.2 + 0.587 * 0.5 + 0.114 * 0.9)) < 1e-15
    assert list(filters.hand_filters(5, 1.0)) == ["Sobel x (vertical edges)", "Sobel y (horizontal edges)",
                                                  "Laplacian (detail)", "box 5×5 (blur)", "Gaussian 5×5, σ=1 (blur)"]
