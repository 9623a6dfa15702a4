"""The hand convolution and max-pooling == torch's, over random shapes, strides, paddings, dilations."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dlconcepts.scratch.conv import conv2d, max_pool2d, output_size

FLOAT32_BOUND = 1e-5  # the bound for the hand convolution against conv2d
FLOAT64_BOUND = 1e-12


def random_case(rng):
    """A random convolution whose output is at least 1×1."""
    while True:
        n, c_in, c_out = rng.integers(1, 3), rng.integers(1, 5), rng.integers(1, 6)
        h, w = rng.integers(4, 14, size=2)
        k_h, k_w = rng.integers(1, 6, size=2)
        stride = tuple(int(s) for s in rng.integers(1, 4, size=2))
        padding = tuple(int(p) for p in rng.integers(0, 4, size=2))
        dilation = tuple(int(d) for d in rng.integers(1, 4, size=2))
        if output_size(h, k_h, stride[0], padding[0], dilation[0]) >= 1 and output_size(w, k_w, stride[1], padding[1], dilation[1]) >= 1:
            x = rng.normal(size=(n, c_in, h, w))
            weight = rng.normal(size=(c_out, c_in, k_h, k_w)) / np.sqrt(c_in * k_h * k_w)
            bias = rng.normal(size=c_out)
            return x, weight, bias, stride, padding, dilation


@pytest.mark.parametrize("dtype, bound", [(np.float32, FLOAT32_BOUND), (np.float64, FLOAT64_BOUND)])
def test_hand_conv2d_equals_torch_conv2d_on_random_cases(dtype, bound):
    rng = np.random.default_rng(0)
    worst = 0.0
    for _ in range(100):
        x, weight, bias, stride, padding, dilation = (v.astype(dtype) if isinstance(v, np.ndarray) else v for v in random_case(rng))
        ours = conv2d(x, weight, bias, stride=stride, padding=padding, dilation=dilation)
        theirs = F.conv2d(torch.from_numpy(x), torch.from_numpy(weight), torch.from_numpy(bias),
                          stride=stride, padding=padding, dilation=dilation).numpy()
        assert ours.shape == theirs.shape
        assert ours.dtype == dtype
        worst = max(worst, float(np.abs(ours - theirs).max()))
    assert worst <= bound, worst


def test_alexnet_first_layer_shape_and_values_by_hand():
    """The course's slide: a 224×224 photo through 64 kernels of 11×11, stride 4, padding 2 → [1, 64, 55, 55]."""
    assert output_size(224, 11, stride=4, padding=2) == 55  # ⌊(224 + 4 − 10 − 1) / 4⌋ + 1
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1, 3, 224, 224)).astype(np.float32)
    weight = (rng.normal(size=(64, 3, 11, 11)) / 20).astype(np.float32)
    bias = rng.normal(size=64).astype(np.float32)
    ours = conv2d(x, weight, bias, stride=4, padding=2)
    theirs = F.conv2d(*map(torch.from_numpy, (x, weight, bias)), stride=4, padding=2).numpy()
    assert ours.shape == (1, 64, 55, 55)
    assert np.abs(ours - theirs).max() <= FLOAT32_BOUND


def test_a_hand_worked_example_is_cross_correlation_not_flipped():
    x = np.arange(16.0).reshape(1, 1, 4, 4)  # rows 0..3, 4..7, 8..11, 12..15
    kernel = np.array([[[[1.0, 0.0], [0.0, -1.0]]]])  # x[i, j] − x[i+1, j+1]
    # cross-correlation: 0 − 5 = −5 at every position; a flipped kernel (true convolution) would give +5
    np.testing.assert_array_equal(conv2d(x, kernel), np.full((1, 1, 3, 3), -5.0))
    # bias, stride 2 and padding 1 by hand: the padded input is 6×6, windows start at rows/cols 0, 2, 4
    out = conv2d(x, kernel, bias=np.array([10.0]), stride=2, padding=1)
    x_pad = np.pad(x[0, 0], 1)
    expected = np.array([[x_pad[i, j] - x_pad[i + 1, j + 1] + 10 for j in (0, 2, 4)] for i in (0, 2, 4)])
    np.testing.assert_array_equal(out[0, 0], expected)
    # two input channels are summed into one output channel; the unbatched form drops N
    two = np.stack([x[0, 0], 2 * x[0, 0]])
    np.testing.assert_array_equal(conv2d(two, np.concatenate([kernel, kernel], axis=1)), np.full((1, 3, 3), -15.0))


def test_conv2d_refuses_mismatched_channels_and_a_kernel_that_does_not_fit():
    with pytest.raises(ValueError, match="channels"):
        conv2d(np.zeros((1, 3, 5, 5)), np.zeros((2, 1, 3, 3)))
    with pytest.raises(ValueError, match="does not fit"):
        conv2d(np.zeros((1, 1, 3, 3)), np.zeros((1, 1, 5, 5)))


def test_hand_max_pool_equals_torch_max_pool2d():
    rng = np.random.default_rng(2)
    for _ in range(100):
        k = tuple(int(v) for v in rng.integers(1, 5, size=2))
        stride = tuple(int(v) for v in rng.integers(1, 4, size=2)) if rng.random() < 0.7 else None
        padding = tuple(int(rng.integers(0, kk // 2 + 1)) for kk in k)
        dilation = tuple(int(v) for v in rng.integers(1, 3, size=2))
        h, w = (int(v) for v in rng.integers(dilation[0] * (k[0] - 1) + 1, 14, size=2))
        x = rng.normal(size=(int(rng.integers(1, 3)), int(rng.integers(1, 4)), h, max(w, dilation[1] * (k[1] - 1) + 1)))
        ours = max_pool2d(x, k, stride, padding, dilation)
        theirs = F.max_pool2d(torch.from_numpy(x), k, stride, padding, dilation).numpy()
        np.testing.assert_array_equal(ours, theirs)  # a max picks one of the inputs: equal, not close


def test_max_pool_by_hand_on_a_small_example():
    x = np.array([[1, 3, 2, 0],
                  [4, 2, 1, 1],
                  [0, 0, 5, 6],
                  [1, 2, 7, 8]], dtype=np.float32)[None]
    np.testing.assert_array_equal(max_pool2d(x, 2), [[[4, 2], [2, 8]]])
    # AlexNet's pool (3×3, stride 2) takes 55×55 maps to 27×27
    assert max_pool2d(np.zeros((1, 64, 55, 55)), 3, 2).shape == (1, 64, 27, 27)
    with pytest.raises(ValueError, match="half the kernel"):
        max_pool2d(x, 2, padding=2)


def test_output_size_agrees_with_the_shape_arithmetic_of_explain():
    from dlconcepts.explain.conv import conv_output_size  # the package's one formula; scratch keeps its own copy

    for size in range(1, 30):
        for k in range(1, 6):
            for s in range(1, 4):
                for p in range(0, 3):
                    for d in range(1, 3):
                        assert output_size(size, k, s, p, d) == conv_output_size(size, k, s, p, d)
