"""Lab `mlp-regression`: an MLP learns y = 3x² + 25x + 580, once on raw numbers and once standardized.

The course's notebook fed x in the thousands and y in the tens of millions straight into the
network. This lab runs that exactly as it was, then again with inputs and targets standardized on
the training split, from the same initial weights, and reports both in original units.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from dlconcepts.config import param
from dlconcepts.data import Standardizer, quadratic, train_valid_test_split
from dlconcepts.data.scaling import Identity
from dlconcepts.errors import TrainingDiverged
from dlconcepts.labs.base import Lab, LabContext, Result
from dlconcepts.nets import ACTIVATIONS, mlp
from dlconcepts.report import figures
from dlconcepts.train import OPTIMIZERS, EarlyStopping, ProgressBar, Trainer, rmse


@dataclass(frozen=True)
class Config:
    hidden: tuple[int, ...] = param((30, 15), "hidden layer widths of the MLP 1→…→1", positive=True)
    activation: str = param("relu", "activation after each hidden layer", choices=tuple(ACTIVATIONS))
    optimizer: str = param("adam", "the minimizer", choices=OPTIMIZERS)
    lr: float = param(0.003, "learning rate", positive=True)
    epochs: int = param(3000, "full-batch epochs (one step each)", positive=True)
    patience: int = param(0, "early stopping on validation loss after this many epochs without gain; 0 = off", minimum=0)
    valid_fraction: float = param(0.2, "share of rows for validation", minimum=0.0, maximum=0.5)
    test_fraction: float = param(0.2, "share of rows for the test", minimum=0.05, maximum=0.5)


MODES = {"raw": Identity, "standardized": Standardizer}


def _train_one(mode: str, cfg: Config, data, split, ctx: LabContext) -> dict:
    x_scaler = MODES[mode]().fit(data.X[split.train])
    y_scaler = MODES[mode]().fit(data.y[split.train])
    X = x_scaler.transform(data.X)
    y = y_scaler.transform(data.y)
    torch.manual_seed(ctx.runtime.seed)  # same initial weights in both modes: only the scaling differs
    model = mlp((1, *cfg.hidden, 1), cfg.activation)
    callbacks = [ProgressBar(cfg.epochs, desc=mode, enabled=ctx.progress)]
    if cfg.patience:
        callbacks.append(EarlyStopping(cfg.patience))
    trainer = Trainer(
        model, nn.MSELoss(), cfg.optimizer, lr=cfg.lr, callbacks=callbacks, device=ctx.runtime.device,
        seed=ctx.runtime.seed, checkpoints=ctx.checkpoints,
    )
    valid = (X[split.valid], y[split.valid]) if len(split.valid) else None
    diverged = ""
    try:
        trainer.fit(X[split.train], y[split.train], cfg.epochs, valid=valid)
    except TrainingDiverged as exc:
        if mode != "raw":  # the raw run diverging is a finding to report; the standardized one is a failure
            raise
        diverged = str(exc)
        ctx.log(f"  {mode}: {exc}")

    def predict(rows: np.ndarray) -> np.ndarray:
        return y_scaler.inverse_transform(trainer.predict(x_scaler.transform(rows)).double().numpy())

    y_range = float(np.ptp(data.y))
    test_rmse = rmse(predict(data.X[split.test]), data.y[split.test])
    # Losses are in each mode's own units; RMSE in original units makes the two comparable.
    to_original = float(y_scaler.scale_[0])
    history = trainer.history
    return {
        "model": model,
        "state": {"model": model.state_dict(), "x_scaler": x_scaler.state(), "y_scaler": y_scaler.state()},
        "predict": predict,
        "train_rmse_curve": [np.sqrt(v) * to_original for v in history.column("train_loss")],
        "valid_rmse_curve": [np.sqrt(v) * to_original for v in history.column("valid_loss")] if valid else [],
        "metrics": {
            "test_rmse": test_rmse,
            "test_rmse_pct_of_range": 100 * test_rmse / y_range,
            "train_rmse": rmse(predict(data.X[split.train]), data.y[split.train]),
            "epochs_run": len(history),
            "stop_reason": history.stop_reason,
            "diverged": diverged,
        },
    }


def run(cfg: Config, ctx: LabContext) -> Result:
    data = quadratic()
    rng = np.random.default_rng(ctx.runtime.seed)
    split = train_valid_test_split(len(data), rng, cfg.valid_fraction, cfg.test_fraction)
    ctx.log(f"  data: {data.description}; {len(split.train)} train / {len(split.valid)} valid / {len(split.test)} test")
    runs = {}
    for mode in MODES:
        runs[mode] = _train_one(mode, cfg, data, split, ctx)
        m = runs[mode]["metrics"]
        ctx.log(f"  {mode}: test RMSE {m['test_rmse']:.4g} ({m['test_rmse_pct_of_range']:.3g}% of the target range)")

    panels = {
        "train RMSE (original units)": {mode: r["train_rmse_curve"] for mode, r in runs.items()},
    }
    if runs["raw"]["valid_rmse_curve"]:
        panels["validation RMSE (original units)"] = {mode: r["valid_rmse_curve"] for mode, r in runs.items()}
    ctx.run.save_figure(
        figures.curves(panels, log_y=True, ylabels=["RMSE"] * len(panels)),
        "loss_curves",
        "RMSE per epoch in the target's own units, raw vs standardized (log scale).",
    )
    ctx.run.save_figure(_predictions_figure(data, split, runs), "predictions",
                        "Test predictions against the true curve, raw (left) and standardized (right).")
    ctx.run.save_model({**runs["standardized"]["state"], "layer_sizes": [1, *cfg.hidden, 1], "activation": cfg.activation})

    raw, std = runs["raw"]["metrics"], runs["standardized"]["metrics"]
    rows = [("run", "test RMSE", "% of target range", "train RMSE", "epochs", "stopped")]
    for mode, r in runs.items():
        m = r["metrics"]
        rows.append((mode, f"{m['test_rmse']:.4g}", f"{m['test_rmse_pct_of_range']:.3f}", f"{m['train_rmse']:.4g}",
                     str(m["epochs_run"]), m["diverged"][:60] or m["stop_reason"]))
    ratio = raw["test_rmse"] / max(std["test_rmse"], 1e-300)
    findings = [
        f"Standardized: test RMSE is {std['test_rmse_pct_of_range']:.3f}% of the target range "
        f"({std['test_rmse']:.4g} on a range of {np.ptp(data.y):.4g}).",
        f"Raw, as the course's notebook ran it: {raw['test_rmse_pct_of_range']:.3g}% of the range — "
        f"{ratio:.3g}× the standardized error, same network, same initial weights, same optimizer."
        + (" It diverged." if raw["diverged"] else ""),
    ]
    return Result(
        metrics={"raw": raw, "standardized": std, "target_range": float(np.ptp(data.y)),
                 "n_train": len(split.train), "n_valid": len(split.valid), "n_test": len(split.test)},
        table=rows,
        findings=findings,
        headline=f"test RMSE {std['test_rmse_pct_of_range']:.3f}% of range standardized vs "
        f"{raw['test_rmse_pct_of_range']:.3g}% raw",
    )


def _predictions_figure(data, split, runs):
    import matplotlib.pyplot as plt

    dense = np.linspace(data.X.min(), data.X.max(), 400).reshape(-1, 1)
    fig, axes = plt.subplots(1, len(runs), figsize=(10.5, 3.9), sharey=True)
    for ax, (mode, r) in zip(axes, runs.items()):
        ax.plot(data.X[:, 0], data.y[:, 0], color="0.75", lw=3, label="truth: 3x² + 25x + 580")
        ax.plot(dense[:, 0], r["predict"](dense)[:, 0], color="C0", lw=1.3, label="model")
        ax.scatter(data.X[split.train, 0], data.y[split.train, 0], s=8, color="C2", label="train")
        ax.scatter(data.X[split.test, 0], r["predict"](data.X[split.test])[:, 0], s=22, color="C3", marker="x",
                   label="test prediction")
        ax.set_title(f"{mode}: test RMSE {r['metrics']['test_rmse_pct_of_range']:.3g}% of range")
        ax.set_xlabel("x")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("y")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


LAB = Lab(
    id="mlp-regression",
    title="MLP regression on a quadratic, raw vs standardized",
    function="MLP 1→{hidden}→1, {activation}",
    loss="MSE",
    minimizer="{optimizer}, full batch",
    data="y = 3x² + 25x + 580, x in range(-5000, 5000, 100)",
    typical_time="~5 s (quick <1 s)",
    config=Config,
    run=run,
    quick={"epochs": 300},
    prefers_cpu="a 1→30→15→1 MLP on 60 rows is too small to gain from a GPU",
    multiprocess=True,
)
