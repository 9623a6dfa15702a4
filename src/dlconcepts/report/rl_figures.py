"""Figures of a reinforcement-learning run: the returns, and the diagnostics that say whether PPO is healthy."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import dlconcepts.report.figures  # noqa: F401  (first: it chooses the files-only backend before pyplot loads)
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure


def rolling_mean(values: Sequence[float], window: int) -> np.ndarray:
    """Mean of the last `window` values at each point (fewer at the start)."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) == 0:
        return v
    sums = np.cumsum(np.insert(v, 0, 0.0))
    idx = np.arange(1, len(v) + 1)
    start = np.maximum(0, idx - window)
    return (sums[idx] - sums[start]) / (idx - start)


def return_curves(
    episode_steps: Sequence[int],
    episode_returns: Sequence[float],
    eval_steps: Sequence[int],
    eval_means: Sequence[float],
    eval_stds: Sequence[float],
    target: float | None = None,
    window: int = 20,
    title: str = "",
) -> Figure:
    """Training episode returns (dots, and their rolling mean) and deterministic evaluations (mean ± std)."""
    fig, ax = plt.subplots(figsize=(8.0, 4.4))
    ax.scatter(episode_steps, episode_returns, s=4, color="C0", alpha=0.25, label="training episode (sampled actions)")
    ax.plot(episode_steps, rolling_mean(episode_returns, window), color="C0", lw=1.6,
            label=f"training, mean of last {window} episodes")
    if len(eval_steps):
        ax.errorbar(eval_steps, eval_means, yerr=eval_stds, color="C3", marker="o", ms=4, lw=1.4, capsize=3,
                    label="evaluation, deterministic policy (mean ± std)")
    if target is not None:
        ax.axhline(target, color="k", ls="--", lw=1, label=f"target {target:g}")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("episode return")
    ax.set_title(title or "returns")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def panel_grid(
    panels: Mapping[str, Mapping[str, tuple[Sequence[float], Sequence[float]]]],
    xlabel: str = "environment steps",
    columns: int = 4,
    reference_lines: Mapping[str, float] | None = None,
    log_y: Sequence[str] = (),
) -> Figure:
    """A grid of small panels {title: {label: (x, y)}}; `reference_lines` draws a dashed level in a panel,
    and the panels named in `log_y` get a logarithmic y axis."""
    rows = math.ceil(len(panels) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.0 * columns, 2.9 * rows), squeeze=False)
    for ax, (title, series) in zip(axes.flat, panels.items()):
        for i, (label, (x, y)) in enumerate(series.items()):
            faint = label.startswith("per minibatch")
            ax.plot(x, y, lw=0.6 if faint else 1.4, alpha=0.35 if faint else 1.0, color=f"C{i}", label=label)
        if title in log_y:
            ax.set_yscale("log")
        if reference_lines and title in reference_lines:
            ax.axhline(reference_lines[title], color="k", ls="--", lw=1)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        if len(series) > 1:
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    return fig
