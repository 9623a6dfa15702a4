"""Lab `overfitting`: a large MLP trained long on a few noisy points learns the noise.

The data are the course's noisy line y = 3x + U(0,1)·100 at 40 values of x. The noise is uniform
on [0, 100), so the best any model can do is the mean line 3x + 50, whose RMSE on new points is the
noise's standard deviation 100/√12 ≈ 28.9. A 1→100→50→1 network has over 5,000 weights for 20
training points: trained long enough, it bends through the points, its training RMSE falls far
below 28.9 — it has learned the noise — and its RMSE on the held-out points climbs above it.
The lab reports where the test loss was lowest and how far it rose after.

There is no validation part and no early stopping here, on purpose: this lab shows what happens
without them. The test points are watched during training (the curves) but never used to choose
anything; stopping at the best test epoch would be peeking at the test.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from dlconcepts.config import param
from dlconcepts.data.course import NOISY_LINE_NOISE_STD, noisy_line_mean
from dlconcepts.data import Standardizer, noisy_line, train_valid_test_split
from dlconcepts.labs.base import Lab, LabContext, Result
from dlconcepts.nets import ACTIVATIONS, mlp
from dlconcepts.report import figures
from dlconcepts.train import OPTIMIZERS, ProgressBar, Trainer, rmse

# The best any model can do on `noisy_line` (see data/course.py): the mean line and the noise std.
NOISE_STD = NOISY_LINE_NOISE_STD
mean_line = noisy_line_mean


@dataclass(frozen=True)
class Config:
    hidden: tuple[int, ...] = param((100, 50), "hidden layer widths of the MLP 1→…→1", positive=True)
    activation: str = param("relu", "activation after each hidden layer", choices=tuple(ACTIVATIONS))
    optimizer: str = param("adam", "the minimizer", choices=OPTIMIZERS)
    lr: float = param(0.001, "learning rate", positive=True)
    epochs: int = param(5000, "full-batch epochs (one step each); long, so the network has time to learn the noise",
                        positive=True)
    test_fraction: float = param(0.5, "share of the 40 points held out as the test; fewer training points "
                                      "overfit sooner", minimum=0.05, maximum=0.8)


def run(cfg: Config, ctx: LabContext) -> Result:
    rng = np.random.default_rng(ctx.runtime.seed)
    data = noisy_line(rng)
    split = train_valid_test_split(len(data), rng, valid_fraction=0.0, test_fraction=cfg.test_fraction)
    ctx.log(f"  data: {data.description}; {len(split.train)} train / {len(split.test)} test")

    # Standardize on the training rows only: the test points must not shape the scaling.
    x_scaler = Standardizer().fit(data.X[split.train])
    y_scaler = Standardizer().fit(data.y[split.train])
    X, y = x_scaler.transform(data.X), y_scaler.transform(data.y)
    torch.manual_seed(ctx.runtime.seed)
    model = mlp((1, *cfg.hidden, 1), cfg.activation)
    trainer = Trainer(
        model, nn.MSELoss(), cfg.optimizer, lr=cfg.lr, device=ctx.runtime.device, seed=ctx.runtime.seed, checkpoints=ctx.checkpoints,
        callbacks=[ProgressBar(cfg.epochs, desc="train", enabled=ctx.progress)],
    )
    # The test rows ride along as "valid" only to draw their curve; nothing is selected on them.
    history = trainer.fit(X[split.train], y[split.train], cfg.epochs, valid=(X[split.test], y[split.test]))

    def predict(rows: np.ndarray) -> np.ndarray:
        return y_scaler.inverse_transform(trainer.predict(x_scaler.transform(rows)).double().numpy())

    # MSE on standardized targets -> RMSE in the target's own units.
    to_original = float(y_scaler.scale_[0])
    train_curve = [math.sqrt(v) * to_original for v in history.column("train_loss")]
    test_curve = [math.sqrt(v) * to_original for v in history.column("valid_loss")]
    best = int(np.argmin(test_curve))  # index; epoch best + 1
    train_rmse = rmse(predict(data.X[split.train]), data.y[split.train])
    test_rmse = rmse(predict(data.X[split.test]), data.y[split.test])
    reference_train = rmse(mean_line(data.X[split.train]), data.y[split.train])
    reference_test = rmse(mean_line(data.X[split.test]), data.y[split.test])
    m = {
        "train_rmse": train_rmse,
        "test_rmse": test_rmse,
        "best_test_epoch": best + 1,
        "best_test_rmse": test_curve[best],
        "train_rmse_at_best_test_epoch": train_curve[best],
        "test_rise_after_best": test_curve[-1] - test_curve[best],
        "noise_std": NOISE_STD,
        "mean_line_train_rmse": reference_train,
        "mean_line_test_rmse": reference_test,
        "epochs_run": len(history),
        "n_train": len(split.train),
        "n_test": len(split.test),
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    ctx.log(f"  final RMSE: train {train_rmse:.3g}, test {test_rmse:.3g}; lowest test {test_curve[best]:.3g} "
            f"at epoch {best + 1}; noise std {NOISE_STD:.3g}")

    curves = figures.curves(
        {"RMSE per epoch (original units)": {"train": train_curve, "test": test_curve}},
        log_y=True, ylabels=["RMSE"],
    )
    ax = curves.axes[0]
    ax.set_xscale("log")  # the lowest test loss comes early; a log axis gives those first epochs room
    ax.axhline(NOISE_STD, color="0.3", ls="--", lw=1, label=f"noise std 100/√12 = {NOISE_STD:.1f}")
    ax.axvline(best + 1, color="C1", ls=":", lw=1, label=f"lowest test RMSE, epoch {best + 1}")
    ax.legend(fontsize=8)
    ctx.run.save_figure(curves, "loss_curves",
                        "Train and test RMSE per epoch in the target's units (log scales), with the noise level: "
                        "below it, the network is fitting noise.")
    ctx.run.save_figure(_fit_figure(data, split, predict, train_rmse, test_rmse), "fit",
                        "The learned curve over a dense grid of x, the training and test points, and the true "
                        "mean line 3x + 50 with the band the noise fills.")
    ctx.run.save_model({"model": model.state_dict(), "x_scaler": x_scaler.state(), "y_scaler": y_scaler.state(),
                        "layer_sizes": [1, *cfg.hidden, 1], "activation": cfg.activation})

    rows = [
        ("model", "train RMSE", "test RMSE"),
        (f"network at epoch {best + 1} (lowest test RMSE)", f"{train_curve[best]:.3g}", f"{test_curve[best]:.3g}"),
        (f"network at the end (epoch {len(history)})", f"{train_rmse:.3g}", f"{test_rmse:.3g}"),
        ("true mean line 3x + 50 (best in expectation)", f"{reference_train:.3g}", f"{reference_test:.3g}"),
        ("noise std 100/√12 (expected RMSE of the mean line)", f"{NOISE_STD:.3g}", f"{NOISE_STD:.3g}"),
    ]
    return Result(metrics=m, table=rows, findings=_findings(m, len(history)),
                  headline=f"train RMSE {train_rmse:.3g} vs test {test_rmse:.3g} (noise std {NOISE_STD:.3g}); "
                  f"test lowest at epoch {best + 1}")


def _findings(m: dict, epochs: int) -> list[str]:
    rise = m["test_rise_after_best"]
    findings = []
    if m["best_test_epoch"] < epochs:
        findings.append(
            f"Test RMSE was lowest at epoch {m['best_test_epoch']} of {epochs} ({m['best_test_rmse']:.3g}); training "
            f"went on and it rose by {rise:.3g} ({100 * rise / m['best_test_rmse']:.0f}%) to the end, while the train "
            f"RMSE fell from {m['train_rmse_at_best_test_epoch']:.3g} to {m['train_rmse']:.3g}."
        )
    else:
        findings.append(f"Test RMSE was still falling at the last epoch ({epochs}); train longer to see it turn.")
    # The mean line's residuals on the training points are exactly their noise, so its RMSE there is the
    # noise level of these very points; a train RMSE below it means the network reproduces part of that noise.
    ratio = m["train_rmse"] / m["mean_line_train_rmse"]
    findings.append(
        f"The noise has std 100/√12 = {m['noise_std']:.3g}: the true mean line 3x + 50 scores "
        f"{m['mean_line_train_rmse']:.3g} on the training points and {m['mean_line_test_rmse']:.3g} on the test "
        f"points. The network's final train RMSE is {m['train_rmse']:.3g}, {ratio:.2g}× the mean line's on the same "
        "points"
        + (f": its squared error there is {100 * ratio**2:.0f}% of the noise's. With {m['parameters']:,} weights "
           f"for {m['n_train']} points it has fitted the other {100 * (1 - ratio**2):.0f}% — noise, which no new "
           "point shares."
           if ratio < 1 else ": it has not fitted the noise.")
    )
    findings.append(
        f"On the {m['n_test']} test points the final RMSE is {m['test_rmse']:.3g}, "
        f"{m['test_rmse'] / m['mean_line_test_rmse']:.2g}× the mean line's {m['mean_line_test_rmse']:.3g} on the same "
        "points; "
        f"the gap between test and train RMSE is {m['test_rmse'] - m['train_rmse']:.3g}."
    )
    return findings


def _fit_figure(data, split, predict, train_rmse: float, test_rmse: float):
    import matplotlib.pyplot as plt

    dense = np.linspace(data.X.min(), data.X.max(), 1000).reshape(-1, 1)
    x = dense[:, 0]
    fig, ax = plt.subplots(figsize=(8.0, 4.6))
    ax.fill_between(x, 3 * x, 3 * x + 100, color="0.9", label="noise band 3x … 3x + 100")
    ax.plot(x, mean_line(x), color="0.4", ls="--", lw=1.2, label="true mean 3x + 50")
    ax.plot(x, predict(dense)[:, 0], color="C0", lw=1.4, label="model at the last epoch")
    ax.scatter(data.X[split.train, 0], data.y[split.train, 0], s=24, color="C2", zorder=3,
               label=f"train ({len(split.train)}): RMSE {train_rmse:.3g}")
    ax.scatter(data.X[split.test, 0], data.y[split.test, 0], s=40, color="C3", marker="x", zorder=3,
               label=f"test ({len(split.test)}): RMSE {test_rmse:.3g}")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title("the learned curve against the true mean line")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig


LAB = Lab(
    id="overfitting",
    title="Overfitting: a large MLP trained long on few noisy points",
    function="MLP 1→{hidden}→1, {activation}",
    loss="MSE on standardized targets",
    minimizer="{optimizer}, full batch, {epochs} epochs, no early stopping",
    data="y = 3x + U(0,1)·100, x in range(-100, 100, 5): 40 points (seeded)",
    typical_time="~4 s (quick <1 s)",
    config=Config,
    run=run,
    quick={"epochs": 200},
    prefers_cpu="a 1→100→50→1 MLP on 20 points is too small to gain from a GPU",
    multiprocess=True,
)
