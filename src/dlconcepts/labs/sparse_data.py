"""Lab `sparse-data`: an MLP fitted to a few points of a cubic matches them and is still wrong elsewhere.

The course's notebook samples y = 3x³ + 2x² + 5x + U(0,1)·500 at only 40 values of x, 250 apart.
This lab trains on a seeded random part of those 40 points and then asks the network about every
x, ten apart, from the same generator: between the training points (interpolation) and beyond
their outermost x (extrapolation). It also trains on fewer points — nested subsets of the same
training part, the same initial weights, the same test points — to show how the error between
points grows as the points thin out.

There is no validation part and no early stopping, on purpose: the noise (at most 500) is a
billionth of the target range (about 7.5·10¹¹), so there is no noise to overfit, and every point
held out for validation would be one point fewer to learn the curve from. The test points are
watched during training (the curves) but never used to choose anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from dlconcepts.config import param
from dlconcepts.data import Dataset, Standardizer, noisy_cubic, train_valid_test_split
from dlconcepts.errors import UserError
from dlconcepts.labs.base import Lab, LabContext, Result
from dlconcepts.nets import ACTIVATIONS, mlp
from dlconcepts.report import figures
from dlconcepts.train import OPTIMIZERS, ProgressBar, Trainer, rmse


@dataclass(frozen=True)
class Config:
    hidden: tuple[int, ...] = param((30, 15), "hidden layer widths of the MLP 1→…→1", positive=True)
    activation: str = param("relu", "activation after each hidden layer", choices=tuple(ACTIVATIONS))
    optimizer: str = param("adam", "the minimizer", choices=OPTIMIZERS)
    lr: float = param(0.003, "learning rate", positive=True)
    epochs: int = param(3000, "full-batch epochs (one step each)", positive=True)
    test_fraction: float = param(0.3, "share of the 40 points held out as the test", minimum=0.05, maximum=0.8)
    fewer_points: tuple[int, ...] = param(
        (10, 20), "also train on only this many of the training points (nested subsets, same test points)", minimum=2
    )
    grid_step: int = param(10, "spacing in x of the dense grid the model is judged on", positive=True)
    beyond: float = param(0.25, "the dense grid reaches this share of the data's x span past each end", minimum=0.0,
                          maximum=2.0)


@dataclass
class Fit:
    """One trained network and what it needs to answer in original units."""

    model: nn.Module
    x_scaler: Standardizer
    y_scaler: Standardizer
    trainer: Trainer
    train_rows: np.ndarray

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.y_scaler.inverse_transform(self.trainer.predict(self.x_scaler.transform(X)).double().numpy())

    def rmse_curve(self, column: str) -> list[float]:
        """A loss curve (MSE on standardized targets) as RMSE in the target's own units."""
        return [float(np.sqrt(v)) * float(self.y_scaler.scale_[0]) for v in self.trainer.history.column(column)]


def _fit(cfg: Config, data: Dataset, train_rows: np.ndarray, test_rows: np.ndarray, ctx: LabContext) -> Fit:
    # Standardize on the training rows only: the test points must not shape the scaling.
    x_scaler = Standardizer().fit(data.X[train_rows])
    y_scaler = Standardizer().fit(data.y[train_rows])
    X, y = x_scaler.transform(data.X), y_scaler.transform(data.y)
    torch.manual_seed(ctx.runtime.seed)  # same initial weights for every training-set size: only the data differ
    model = mlp((1, *cfg.hidden, 1), cfg.activation)
    trainer = Trainer(
        model, nn.MSELoss(), cfg.optimizer, lr=cfg.lr, device=ctx.runtime.device, seed=ctx.runtime.seed, checkpoints=ctx.checkpoints,
        callbacks=[ProgressBar(cfg.epochs, desc=f"{len(train_rows)} points", enabled=ctx.progress)],
    )
    # The test rows ride along as "valid" only to draw their curve; nothing is selected on them.
    trainer.fit(X[train_rows], y[train_rows], cfg.epochs, valid=(X[test_rows], y[test_rows]))
    return Fit(model, x_scaler, y_scaler, trainer, train_rows)


def _dense_grid(cfg: Config, data: Dataset, seed: int) -> Dataset:
    """Every `grid_step` in x from the same generator (fresh noise), `beyond` of the span past each end."""
    lo, hi = float(data.X.min()), float(data.X.max())
    margin = cfg.beyond * (hi - lo)
    start = int(np.floor((lo - margin) / cfg.grid_step) * cfg.grid_step)
    stop = int(np.ceil((hi + margin) / cfg.grid_step) * cfg.grid_step) + 1
    return noisy_cubic(np.random.default_rng([seed, 1]), start, stop, cfg.grid_step)


def _errors(fit: Fit, data: Dataset, test_rows: np.ndarray, grid: Dataset, target_range: float) -> dict[str, Any]:
    """RMSE on the training points, the test points, and the dense grid: between / beyond the training
    x (which depend on where this model's points lie) and over the 40 points' x range (the same for every model)."""
    train_x = data.X[fit.train_rows, 0]
    inside = (grid.X[:, 0] >= train_x.min()) & (grid.X[:, 0] <= train_x.max())
    in_data = (grid.X[:, 0] >= data.X.min()) & (grid.X[:, 0] <= data.X.max())
    grid_pred = fit.predict(grid.X)
    out: dict[str, Any] = {
        "n_train": len(fit.train_rows),
        "train_x_span": [float(train_x.min()), float(train_x.max())],
        "train_rmse": rmse(fit.predict(data.X[fit.train_rows]), data.y[fit.train_rows]),
        "test_rmse": rmse(fit.predict(data.X[test_rows]), data.y[test_rows]),
        "between_rmse": rmse(grid_pred[inside], grid.y[inside]),
        # With every grid x inside the training span (beyond=0 and both end points trained on) there is nothing beyond.
        "beyond_rmse": rmse(grid_pred[~inside], grid.y[~inside]) if (~inside).any() else float("nan"),
        "data_range_rmse": rmse(grid_pred[in_data], grid.y[in_data]),
    }
    for name in ("train", "test", "between", "beyond", "data_range"):
        out[f"{name}_rmse_pct_of_range"] = 100 * out[f"{name}_rmse"] / target_range
    return out


def run(cfg: Config, ctx: LabContext) -> Result:
    rng = np.random.default_rng(ctx.runtime.seed)
    data = noisy_cubic(rng)
    split = train_valid_test_split(len(data), rng, valid_fraction=0.0, test_fraction=cfg.test_fraction)
    n_train = len(split.train)
    too_many = [k for k in cfg.fewer_points if k > n_train]
    if too_many:
        raise UserError(
            f"fewer_points={','.join(map(str, too_many))} is more than the {n_train} training points; "
            f"use sizes up to {n_train} or a smaller test_fraction"
        )
    grid = _dense_grid(cfg, data, ctx.runtime.seed)
    target_range = float(np.ptp(data.y))
    ctx.log(f"  data: {data.description}; {n_train} train / {len(split.test)} test; "
            f"dense grid: {len(grid)} points, x from {grid.X.min():g} to {grid.X.max():g}")

    # Nested subsets: the first k of one seeded shuffle, so 10 ⊂ 20 ⊂ all training points.
    order = np.random.default_rng([ctx.runtime.seed, 2]).permutation(split.train)
    sizes = sorted({*cfg.fewer_points, n_train})
    fits: dict[int, Fit] = {}
    errors: dict[int, dict[str, Any]] = {}
    for k in sizes:
        rows = split.train if k == n_train else np.sort(order[:k])
        fits[k] = _fit(cfg, data, rows, split.test, ctx)
        errors[k] = _errors(fits[k], data, split.test, grid, target_range)
        e = errors[k]
        ctx.log(f"  {k:>3} training points: RMSE as % of range — train {e['train_rmse_pct_of_range']:.3g}, "
                f"test {e['test_rmse_pct_of_range']:.3g}, between {e['between_rmse_pct_of_range']:.3g}, "
                f"beyond {e['beyond_rmse_pct_of_range']:.3g}")
    main, err = fits[n_train], errors[n_train]

    ctx.run.save_figure(_fit_figure(data, split.test, grid, main, target_range), "fit",
                        "Top: the true cubic, the training and test points and the model over the dense grid; the "
                        "shaded parts lie beyond the training points. Bottom: the model's error along x (log scale).")
    ctx.run.save_figure(
        figures.curves(
            {"RMSE per epoch (original units)": {"train points": main.rmse_curve("train_loss"),
                                                 "test points": main.rmse_curve("valid_loss")}},
            log_y=True, ylabels=["RMSE"],
        ),
        "loss_curves", f"Train and test RMSE per epoch, {n_train} training points (log scale).",
    )
    ctx.run.save_figure(_sizes_figure(errors), "training_points",
                        "Error against the number of training points (nested subsets, same test points, same "
                        "initial weights), as % of the target range.")
    ctx.run.save_model({"model": main.model.state_dict(), "x_scaler": main.x_scaler.state(),
                        "y_scaler": main.y_scaler.state(), "layer_sizes": [1, *cfg.hidden, 1],
                        "activation": cfg.activation})

    rows = [("training points", "train RMSE %", "test RMSE %", "grid, data's x range %", "grid, between %",
             "grid, beyond %", "train x span")]
    for k, e in errors.items():
        lo, hi = e["train_x_span"]
        rows.append((str(k), *(f"{e[f'{name}_rmse_pct_of_range']:.3g}" for name in
                               ("train", "test", "data_range", "between", "beyond")), f"{lo:g} … {hi:g}"))
    return Result(
        metrics={"target_range": target_range, "n_train": n_train, "n_test": len(split.test),
                 "grid_points": len(grid), "grid_x": [float(grid.X.min()), float(grid.X.max())],
                 **err, "by_training_points": {str(k): e for k, e in errors.items()}},
        table=rows,
        findings=_findings(cfg, errors, n_train, len(split.test), target_range),
        headline=f"{n_train} points: train RMSE {err['train_rmse_pct_of_range']:.2g}% of range, "
        f"test {err['test_rmse_pct_of_range']:.2g}%, beyond the points {err['beyond_rmse_pct_of_range']:.2g}%",
    )


def _findings(
    cfg: Config, errors: dict[int, dict[str, Any]], n_train: int, n_test: int, target_range: float
) -> list[str]:
    e = errors[n_train]
    ratio = e["test_rmse"] / max(e["train_rmse"], 1e-300)
    findings = [
        f"On its {n_train} training points the network's RMSE is {e['train_rmse_pct_of_range']:.3g}% of the target "
        f"range; on the {n_test} held-out points it is {e['test_rmse_pct_of_range']:.3g}% — {ratio:.3g}× as large. "
        f"The noise is at most 500 on a range of {target_range:.3g} ({500 / target_range:.1g} of it), so this gap "
        "is the network guessing between and beyond its points, not noise.",
    ]
    if np.isfinite(e["beyond_rmse"]):
        lo, hi = e["train_x_span"]
        findings.append(
            f"On a dense grid from the same generator, between the training points (x in {lo:g} … {hi:g}) the RMSE "
            f"is {e['between_rmse_pct_of_range']:.3g}% of the range; beyond them it is "
            f"{e['beyond_rmse_pct_of_range']:.3g}% — {e['beyond_rmse'] / max(e['between_rmse'], 1e-300):.3g}× the "
            "error between them."
            + (" A ReLU network is piecewise linear, so past its last bend it goes on in a straight line while the "
               "cubic keeps bending." if cfg.activation == "relu" else "")
        )
    sizes = list(errors)
    if len(sizes) > 1:
        listed = "; ".join(f"{k} points: test {errors[k]['test_rmse_pct_of_range']:.3g}%, dense grid "
                           f"{errors[k]['data_range_rmse_pct_of_range']:.3g}%" for k in sizes)
        worst = max(sizes, key=lambda k: errors[k]["data_range_rmse"])
        findings.append(
            f"Fewer training points (nested subsets, same test points, same initial weights), RMSE as % of the "
            f"range, the dense grid taken over the 40 points' x range: {listed}. The largest error on the grid came "
            f"with {worst} points."
        )
    return findings


def _fit_figure(data: Dataset, test_rows: np.ndarray, grid: Dataset, fit: Fit, target_range: float):
    import matplotlib.pyplot as plt

    train_rows = fit.train_rows
    lo, hi = data.X[train_rows, 0].min(), data.X[train_rows, 0].max()
    gx, truth, pred = grid.X[:, 0], grid.y[:, 0], fit.predict(grid.X)[:, 0]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8.5, 7.0), sharex=True, height_ratios=[3, 2])
    for ax in (top, bottom):
        for a, b in ((gx.min(), lo), (hi, gx.max())):
            if b > a:
                ax.axvspan(a, b, color="0.93", zorder=0)
        ax.grid(alpha=0.3)
    top.plot(gx, truth, color="0.6", lw=3, label="truth: 3x³ + 2x² + 5x + U(0,1)·500")
    top.plot(gx, pred, color="C0", lw=1.4, label="model")
    top.scatter(data.X[train_rows, 0], data.y[train_rows, 0], s=22, color="C2", zorder=3,
                label=f"train ({len(train_rows)} points)")
    top.scatter(data.X[test_rows, 0], data.y[test_rows, 0], s=40, color="C3", marker="x", zorder=3,
                label=f"test ({len(test_rows)} points)")
    top.set_ylabel("y")
    top.set_title("fit: shaded = beyond the training points")
    top.legend(fontsize=8, loc="upper left")
    error_pct = 100 * np.abs(pred - truth) / target_range
    bottom.plot(gx, np.maximum(error_pct, 1e-6), color="C0", lw=1.0)
    for rows, color, marker, label in ((train_rows, "C2", "o", "train"), (test_rows, "C3", "x", "test")):
        e = 100 * np.abs(fit.predict(data.X[rows])[:, 0] - data.y[rows, 0]) / target_range
        bottom.scatter(data.X[rows, 0], np.maximum(e, 1e-6), s=22, color=color, marker=marker, zorder=3, label=label)
    bottom.set_yscale("log")
    bottom.set_xlabel("x")
    bottom.set_ylabel("|model − truth|, % of range")
    bottom.legend(fontsize=8, loc="upper center")
    fig.tight_layout()
    return fig


def _sizes_figure(errors: dict[int, dict[str, Any]]):
    import matplotlib.pyplot as plt

    sizes = list(errors)
    fig, ax = plt.subplots(figsize=(6.2, 4.0))
    for name, color, marker, label in (("train", "C2", "o", "train points"), ("test", "C3", "x", "test points"),
                                       ("data_range", "C0", "s", "dense grid over the 40 points' x range")):
        ax.plot(sizes, [errors[k][f"{name}_rmse_pct_of_range"] for k in sizes], color=color, marker=marker,
                label=label)
    ax.set_yscale("log")
    ax.set_xticks(sizes)
    ax.set_xlabel("training points")
    ax.set_ylabel("RMSE, % of target range")
    ax.set_title("error against the number of training points")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


LAB = Lab(
    id="sparse-data",
    title="Learning from sparse data: right at the points, wrong between and beyond them",
    function="MLP 1→{hidden}→1, {activation}",
    loss="MSE on standardized targets",
    minimizer="{optimizer}, full batch, {epochs} epochs",
    data="y = 3x³ + 2x² + 5x + U(0,1)·500, x in range(-5000, 5000, 250): 40 points (seeded)",
    typical_time="~5 s (quick <1 s)",
    config=Config,
    run=run,
    quick={"epochs": 150, "fewer_points": (10,), "grid_step": 50},
    prefers_cpu="a 1→30→15→1 MLP on at most 40 points is too small to gain from a GPU",
    multiprocess=True,
)
