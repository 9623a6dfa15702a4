"""Figures every lab may need. Each function returns a matplotlib Figure; `Run.save_figure` writes it."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import matplotlib


def use_files_only_backend() -> None:
    """Agg: figures go to files, never a screen, so runs work on servers and in CI. In a notebook kernel
    (ipykernel sets MPLBACKEND to its inline backend) the inline backend stays: it has no screen either,
    `Run.save_figure` closes every figure it writes, and switching to Agg would stop the notebook's own
    plots from showing."""
    if "inline" not in os.environ.get("MPLBACKEND", ""):
        matplotlib.use("Agg")


use_files_only_backend()

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


def montage(maps: np.ndarray, ncols: int, gap: int = 1) -> np.ndarray:
    """Feature maps [K, H, W] tiled into one image of ⌈K / ncols⌉ rows, for a single `imshow`.

    Each map is scaled to [0, 1] by its own minimum and maximum (a constant map becomes 0.5), since
    the maps' ranges differ by orders of magnitude. The `gap` pixels between tiles are NaN, which
    `imshow` leaves blank. One image draws in milliseconds where 192 subplots take seconds.
    """
    maps = np.asarray(maps, dtype=np.float64)
    k, h, w = maps.shape
    ncols = max(1, min(ncols, k))
    nrows = int(np.ceil(k / ncols))
    out = np.full((nrows * (h + gap) - gap, ncols * (w + gap) - gap), np.nan)
    for i, m in enumerate(maps):
        lo, hi = m.min(), m.max()
        scaled = (m - lo) / (hi - lo) if hi > lo else np.full_like(m, 0.5)
        r, c = divmod(i, ncols)
        out[r * (h + gap): r * (h + gap) + h, c * (w + gap): c * (w + gap) + w] = scaled
    return out


def image_rows(rows: Mapping[str, np.ndarray], title: str = "", scale: float = 1.0) -> Figure:
    """Rows of images [n, 1, H, W] (or [n, H, W]) in [0, 1], one row per entry, its name at the left:
    e.g. {"original": x, "autoencoder": x̂, "PCA": x̂_pca} with the same n images in each."""
    named = {name: np.asarray(images).reshape(len(images), *np.asarray(images).shape[-2:]) for name, images in rows.items()}
    ncols = max(len(images) for images in named.values())
    fig, axes = plt.subplots(len(named), ncols, figsize=(scale * 0.9 * ncols + 1.2, scale * 0.95 * len(named) + 0.4 * bool(title)),
                             squeeze=False)
    for r, (name, images) in enumerate(named.items()):
        for c, ax in enumerate(axes[r]):
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if c < len(images):
                ax.imshow(np.clip(images[c], 0, 1), cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
        axes[r][0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def latent_scatter(
    panels: Mapping[str, np.ndarray],
    labels: np.ndarray,
    class_names: Sequence[str],
    axis_labels: Sequence[str] = ("z1", "z2"),
) -> Figure:
    """Side-by-side scatters of 2-D codes [n, 2], one point per example coloured by its class, with a legend."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5.0 * len(panels) + 1.0, 4.6), squeeze=False)
    colours = plt.get_cmap("tab10")
    for ax, (title, codes) in zip(axes[0], panels.items()):
        codes = np.asarray(codes)
        for k, name in enumerate(class_names):
            rows = labels == k
            ax.scatter(codes[rows, 0], codes[rows, 1], s=7, alpha=0.75, color=colours(k % 10), label=name)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(axis_labels[0])
        ax.set_ylabel(axis_labels[1])
        ax.grid(alpha=0.3)
    axes[0][-1].legend(title="class", fontsize=8, markerscale=2.5, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    return fig


def image_mosaic(
    images: np.ndarray,
    ncols: int,
    title: str = "",
    col_values: Sequence[float] | None = None,
    row_values: Sequence[float] | None = None,
    xlabel: str = "",
    ylabel: str = "",
    gap: int = 1,
    scale: float = 1.0,
) -> Figure:
    """Images [n, 1, H, W] in [0, 1] tiled row by row into ONE picture (one `imshow`: hundreds of tiles draw
    in milliseconds), on a common grey scale. `col_values` / `row_values` label the tiles' columns / rows,
    e.g. the latent coordinates of a traversal grid."""
    images = np.asarray(images)
    images = images.reshape(len(images), *images.shape[-2:])
    n, h, w = images.shape
    ncols = max(1, min(ncols, n))
    nrows = int(np.ceil(n / ncols))
    canvas = np.full((nrows * (h + gap) - gap, ncols * (w + gap) - gap), np.nan)
    for i, image in enumerate(images):
        r, c = divmod(i, ncols)
        canvas[r * (h + gap): r * (h + gap) + h, c * (w + gap): c * (w + gap) + w] = np.clip(image, 0, 1)
    size = scale * 0.42 * max(ncols, nrows) * max(h, 8) / 8
    fig, ax = plt.subplots(figsize=(min(size, 11) * ncols / max(ncols, nrows) + 1.0, min(size, 11) * nrows / max(ncols, nrows) + 0.8))
    cmap = plt.get_cmap("gray_r").with_extremes(bad="white")  # the NaN gaps between tiles
    ax.imshow(canvas, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    centres_x = np.arange(ncols) * (w + gap) + (w - 1) / 2
    centres_y = np.arange(nrows) * (h + gap) + (h - 1) / 2
    if col_values is not None:
        ax.set_xticks(centres_x, [f"{v:.2g}" for v in col_values], fontsize=7, rotation=90)
    else:
        ax.set_xticks([])
    if row_values is not None:
        ax.set_yticks(centres_y, [f"{v:.2g}" for v in row_values], fontsize=7)
    else:
        ax.set_yticks([])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def image_rows_mosaic(rows: Mapping[str, np.ndarray], ncols: int, title: str = "", gap: int = 1, scale: float = 1.0) -> Figure:
    """Like `image_rows` — one row of images [n, 1, H, W] in [0, 1] per entry, its name at the left — but
    drawn as ONE picture (one `imshow`), so a grid of a hundred small digits saves in a fraction of the
    time. A row with fewer than `ncols` images leaves its remaining tiles blank."""
    named = {name: np.asarray(images).reshape(len(images), *np.asarray(images).shape[-2:]) for name, images in rows.items()}
    h, w = next(iter(named.values())).shape[-2:]
    canvas = np.full((len(named) * (h + gap) - gap, ncols * (w + gap) - gap), np.nan)
    for r, images in enumerate(named.values()):
        for c, image in enumerate(images[:ncols]):
            canvas[r * (h + gap): r * (h + gap) + h, c * (w + gap): c * (w + gap) + w] = np.clip(image, 0, 1)
    fig, ax = plt.subplots(figsize=(scale * 0.75 * ncols + 1.2, scale * 0.75 * len(named) + 0.4 * bool(title)))
    ax.imshow(canvas, cmap=plt.get_cmap("gray_r").with_extremes(bad="white"), vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks(np.arange(len(named)) * (h + gap) + (h - 1) / 2, list(named), fontsize=9)
    ax.tick_params(axis="y", length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def curve_with_references(
    x: Sequence[float],
    y: Sequence[float],
    label: str,
    references: Sequence[tuple[float, str, str, str]],
    xlabel: str,
    ylabel: str,
    title: str,
    log_y: bool = True,
    marker: str = "",
) -> Figure:
    """One measured curve against horizontal reference values [(value, label, colour, line style)]:
    a floor, a theoretical limit — the line a student compares the curve with."""
    fig, ax = plt.subplots(figsize=(6.0, 3.8))
    ax.plot(x, y, marker + "-", lw=1.4, label=label)
    for value, ref_label, color, style in references:
        ax.axhline(value, color=color, ls=style, lw=1, label=ref_label)
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def forest_panel(ax, entries: Sequence[tuple[str, object]], title: str, highlight: str | None = None,
                 colors: Mapping[str, str] | None = None, reference: float | None = None, xlabel: str = "") -> None:
    """One panel of estimates with intervals, one row per entry, top to bottom.

    An estimate has `value`, `low` and `high` (attributes or keys; NaN ends draw the dot alone). Entries
    whose label starts with `highlight` are blue, those containing a key of `colors` get its colour, the
    rest grey; `reference` draws a dotted vertical line (0.5 for chance, say).
    """
    for i, (label, est) in enumerate(entries):
        value, low, high = (float(est[k]) if isinstance(est, Mapping) else float(getattr(est, k))
                            for k in ("value", "low", "high"))
        color = next((c for part, c in (colors or {}).items() if part in label), None)
        color = color or ("C0" if highlight and label.startswith(highlight) else "0.45")
        if np.isfinite(low) and np.isfinite(high):
            # a percentile interval need not contain its estimate (R² of a resample is biased): bars start at the dot
            ax.errorbar(value, i, xerr=[[max(0.0, value - low)], [max(0.0, high - value)]], fmt="o", color=color,
                        capsize=3, ms=4, lw=1.3)
        else:
            ax.plot(value, i, "o", color=color, ms=4)
    ax.set_yticks(range(len(entries)), [label for label, _ in entries], fontsize=8)
    if not ax.yaxis_inverted():
        ax.invert_yaxis()
    if reference is not None:
        ax.axvline(reference, color="k", ls=":", lw=1)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.grid(axis="x", alpha=0.3)


def forest(panels: Mapping[str, Sequence[tuple[str, object]]], highlight: str | None = None,
           references: Mapping[str, float] | None = None) -> Figure:
    """Side-by-side `forest_panel`s sharing their rows: {panel title: [(label, estimate)]}."""
    rows = max(len(e) for e in panels.values())
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels) + 1.2, 0.45 * rows + 1.4), sharey=True,
                             squeeze=False)
    for ax, (title, entries) in zip(axes[0], panels.items()):
        forest_panel(ax, entries, title, highlight, reference=(references or {}).get(title))
    fig.tight_layout()
    return fig
