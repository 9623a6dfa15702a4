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
