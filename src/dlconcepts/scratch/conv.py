"""A 2-D convolution and max-pooling written out by hand, with PyTorch's semantics.

What `torch.nn.functional.conv2d` computes is a *cross-correlation* (the kernel is not flipped):

    out[n, o, i, j] = b[o] + Σ_c Σ_u Σ_v  w[o, c, u, v] · x_pad[n, c, i·s_h + u·d_h, j·s_w + v·d_w]

for input x of shape [N, C_in, H, W], weight w of shape [C_out, C_in, k_h, k_w], bias b of shape
[C_out], stride s, dilation d, and x_pad = x with p zeros added on each side. Every output
channel o sums over *all* input channels c: a colour image's three channels meet in one feature map.
The output has (PyTorch's Conv2d documentation, "Shape"; Dumoulin & Visin, "A guide to convolution
arithmetic for deep learning", 2016)

    H_out = ⌊(H + 2·p_h − d_h·(k_h − 1) − 1) / s_h⌋ + 1,    and the same for W_out.

AlexNet's first layer (11×11 kernels, stride 4, padding 2) on a 224×224 photo:
⌊(224 + 4 − 10 − 1) / 4⌋ + 1 = 55, hence the course's 64 feature maps of 55×55.

The loop below runs over the k_h·k_w kernel positions (u, v); for each it takes the input pixels
that this tap of the kernel touches for *every* output position at once (a strided slice of x_pad)
and adds them, weighted by w[:, :, u, v], into the output. That is the sum above with its two inner
indices written as a Python loop and the others (n, o, c, i, j) left to NumPy — the same arithmetic
as the four nested loops of a textbook, fast enough to run on a whole photo.

Max-pooling takes the largest value of each window instead of a weighted sum:

    out[n, c, i, j] = max_{u, v}  x_pad[n, c, i·s_h + u·d_h, j·s_w + v·d_w],

where the padding is −∞ (a padded cell never wins), as in `torch.nn.functional.max_pool2d`.
"""

from __future__ import annotations

import numpy as np

def _pair(value: int | tuple[int, int], name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) for v in pair):
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    return int(pair[0]), int(pair[1])


def output_size(size: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """H_out = ⌊(H + 2p − d(k − 1) − 1) / s⌋ + 1 for one spatial dimension (see the module docstring)."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _check_geometry(x: np.ndarray, kernel: tuple[int, int], stride, padding, dilation, what: str) -> tuple[int, int]:
    if min(stride) < 1 or min(dilation) < 1 or min(padding) < 0 or min(kernel) < 1:
        raise ValueError(f"{what}: stride and dilation must be >= 1, padding >= 0, kernel >= 1")
    h_out = output_size(x.shape[-2], kernel[0], stride[0], padding[0], dilation[0])
    w_out = output_size(x.shape[-1], kernel[1], stride[1], padding[1], dilation[1])
    if h_out < 1 or w_out < 1:
        raise ValueError(
            f"{what}: a {kernel[0]}×{kernel[1]} kernel (dilation {dilation}) does not fit the "
            f"{x.shape[-2]}×{x.shape[-1]} input padded by {padding}; pad more or use a smaller kernel"
        )
    return h_out, w_out


def _tap(x_pad: np.ndarray, u: int, v: int, size_out: tuple[int, int], stride, dilation) -> np.ndarray:
    """x_pad[..., i·s_h + u·d_h, j·s_w + v·d_w] for every output position (i, j): one strided slice."""
    top, left = u * dilation[0], v * dilation[1]
    return x_pad[..., top: top + stride[0] * (size_out[0] - 1) + 1: stride[0],
                      left: left + stride[1] * (size_out[1] - 1) + 1: stride[1]]


def conv2d(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
) -> np.ndarray:
    """The cross-correlation of `torch.nn.functional.conv2d` (groups = 1), by hand.

    x: [N, C_in, H, W] (or [C_in, H, W], as torch accepts); weight: [C_out, C_in, k_h, k_w];
    bias: [C_out] or None. Returns [N, C_out, H_out, W_out] (or [C_out, H_out, W_out]) in the
    dtype NumPy gives the product of x and weight (float32 stays float32).
    """
    x, weight = np.asarray(x), np.asarray(weight)
    unbatched = x.ndim == 3
    if unbatched:
        x = x[None]
    if x.ndim != 4 or weight.ndim != 4:
        raise ValueError(f"conv2d expects x [N, C_in, H, W] and weight [C_out, C_in, kH, kW], got {x.shape} and {weight.shape}")
    if x.shape[1] != weight.shape[1]:
        raise ValueError(f"conv2d: x has {x.shape[1]} channels but the weight expects {weight.shape[1]}")
    stride, padding, dilation = _pair(stride, "stride"), _pair(padding, "padding"), _pair(dilation, "dilation")
    k_h, k_w = weight.shape[2:]
    size_out = _check_geometry(x, (k_h, k_w), stride, padding, dilation, "conv2d")

    x_pad = np.pad(x, ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2))  # zeros around each map
    dtype = np.result_type(x, weight)
    out = np.zeros((x.shape[0], weight.shape[0], *size_out), dtype=dtype)
    for u in range(k_h):
        for v in range(k_w):
            # out[n, o, i, j] += Σ_c w[o, c, u, v] · x_pad[n, c, i·s_h + u·d_h, j·s_w + v·d_w]
            out += np.einsum("oc,nchw->nohw", weight[:, :, u, v], _tap(x_pad, u, v, size_out, stride, dilation))
    if bias is not None:
        out += np.asarray(bias, dtype=dtype)[None, :, None, None]  # + b[o]
    return out[0] if unbatched else out


def max_pool2d(
    x: np.ndarray,
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int] | None = None,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
) -> np.ndarray:
    """The max-pooling of `torch.nn.functional.max_pool2d` (ceil_mode=False), by hand.

    x: [N, C, H, W] or [C, H, W]. The stride defaults to the kernel size (non-overlapping windows),
    as in PyTorch. Each channel is pooled on its own; padding cells count as −∞.
    """
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)  # the −∞ padding needs a float
    unbatched = x.ndim == 3
    if unbatched:
        x = x[None]
    if x.ndim != 4:
        raise ValueError(f"max_pool2d expects x [N, C, H, W] or [C, H, W], got {x.shape}")
    kernel = _pair(kernel_size, "kernel_size")
    stride = kernel if stride is None else _pair(stride, "stride")
    padding, dilation = _pair(padding, "padding"), _pair(dilation, "dilation")
    if padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:
        raise ValueError(f"max_pool2d: padding {padding} must be at most half the kernel {kernel}, as in PyTorch")
    size_out = _check_geometry(x, kernel, stride, padding, dilation, "max_pool2d")

    x_pad = np.pad(x, ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2), constant_values=-np.inf)
    out = np.full((*x.shape[:2], *size_out), -np.inf, dtype=x_pad.dtype)
    for u in range(kernel[0]):
        for v in range(kernel[1]):
            np.maximum(out, _tap(x_pad, u, v, size_out, stride, dilation), out=out)  # running max over the window
    return out[0] if unbatched else out
