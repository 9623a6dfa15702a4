"""Figures every lab may need. Each function returns a matplotlib Figure; `Run.save_figure` writes it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # files only, never a screen: runs work on servers and in CI

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def curves(
    panels: Mapping[str, Mapping[str, Sequence[float]]],
    xlabel: str = "epoch",
    log_y: Sequence[bool] | bool = False,
    ylabels: Sequence[str] | None = None,
) -> Figure:
    """Side-by-side panels of named curves against epoch: {panel title: {label: values}}."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.8), squeeze=False)
    logs = [log_y] * len(panels) if isinstance(log_y, bool) else list(log_y)
    for i, (ax, (title, series)) in enumerate(zip(axes[0], panels.items())):
        for label, values in series.items():
            ax.plot(np.arange(1, len(values) + 1), values, label=label, lw=1.4)
        if logs[i]:
            ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        if ylabels:
            ax.set_ylabel(ylabels[i])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def confusion_matrix_figure(counts: np.ndarray, class_names: Sequence[str], title: str = "confusion matrix") -> Figure:
    fig, ax = plt.subplots(figsize=(3.8, 3.4))
    ax.imshow(counts, cmap="Blues")
    for (i, j), c in np.ndenumerate(counts):
        ax.text(j, i, str(c), ha="center", va="center", color="white" if c > counts.max() / 2 else "black")
    ax.set_xticks(range(len(class_names)), class_names)
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def image_grid(
    images: np.ndarray,
    titles: Sequence[str] | None = None,
    ncols: int = 10,
    title: str = "",
    cmap: str = "gray_r",
    scale: float = 1.0,
    value_range: tuple[float, float] | None = (0.0, 1.0),
) -> Figure:
    """Images [n, H, W], [n, 1, H, W] or [n, 3, H, W] (RGB) in a grid of `ncols` columns, one title each.

    `value_range` fixes the colour scale shared by every image (None: each image scaled on its own, as
    for feature maps whose ranges differ).
    """
    images = np.asarray(images)
    if images.ndim == 4 and images.shape[1] == 1:
        images = images[:, 0]
    elif images.ndim == 4:
        images = images.transpose(0, 2, 3, 1)
    n = len(images)
    ncols = max(1, min(ncols, n))
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(scale * 1.1 * ncols, scale * (1.1 + 0.15 * bool(titles)) * nrows + 0.4 * bool(title)),
                             squeeze=False)
    vmin, vmax = value_range if value_range is not None else (None, None)
    for k, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if k >= n:
            continue
        ax.imshow(images[k], cmap=cmap if images.ndim == 3 else None, vmin=vmin, vmax=vmax, interpolation="nearest")
        if titles is not None:
            ax.set_title(titles[k], fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
