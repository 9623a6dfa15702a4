"""Lab `mlp-classification`: an MLP separates the course's two Gaussian blobs, next to the best possible.

Mini-batches of 5 as in the course, cross-entropy on logits (the model outputs logits and
CrossEntropyLoss applies log-softmax itself — the course's notebook applied softmax first).
Because the data come from two known Gaussians, the Bayes-optimal accuracy — the ceiling no
classifier can pass — is computed from the true densities, and the model is measured against it on
a large fresh sample from the same distributions as well as on its small test split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import nn

from dlconcepts.config import param
from dlconcepts.data import GaussianBlobs, Standardizer, train_valid_test_split
from dlconcepts.data.scaling import Identity
from dlconcepts.labs.base import Lab, LabContext, Result
from dlconcepts.nets import ACTIVATIONS, mlp
from dlconcepts.report import figures
from dlconcepts.train import OPTIMIZERS, EarlyStopping, ProgressBar, Trainer, accuracy, confusion_matrix


@dataclass(frozen=True)
class Config:
    hidden: tuple[int, ...] = param((30, 15), "hidden layer widths of the MLP 2→…→2", positive=True)
    activation: str = param("tanh", "activation after each hidden layer", choices=tuple(ACTIVATIONS))
    optimizer: str = param("adam", "the minimizer", choices=OPTIMIZERS)
    lr: float = param(0.001, "learning rate", positive=True)
    batch_size: int = param(5, "mini-batch size (the course used 5)", positive=True)
    epochs: int = param(200, "maximum epochs", positive=True)
    patience: int = param(30, "early stopping on validation loss (best weights restored); 0 = off", minimum=0)
    n_per_class: int = param(100, "points drawn per class", minimum=10)
    valid_fraction: float = param(0.2, "share of rows for validation", minimum=0.05, maximum=0.5)
    test_fraction: float = param(0.2, "share of rows for the test", minimum=0.05, maximum=0.5)
    standardize: bool = param(True, "standardize the two features on the training split")
    bayes_samples: int = param(1_000_000, "Monte Carlo draws for the Bayes-optimal accuracy", minimum=1000)
    fresh_samples: int = param(200_000, "fresh draws to measure the model's accuracy without split noise", minimum=1000)


def run(cfg: Config, ctx: LabContext) -> Result:
    blobs = GaussianBlobs()
    rng = np.random.default_rng(ctx.runtime.seed)
    data = blobs.sample(rng, cfg.n_per_class)
    split = train_valid_test_split(len(data), rng, cfg.valid_fraction, cfg.test_fraction, stratify=data.y)
    ctx.log(f"  data: {data.description}; {len(split.train)} train / {len(split.valid)} valid / {len(split.test)} test")
    scaler = (Standardizer() if cfg.standardize else Identity()).fit(data.X[split.train])
    X = scaler.transform(data.X)

    model = mlp((2, *cfg.hidden, 2), cfg.activation)
    callbacks = [ProgressBar(cfg.epochs, desc="train", enabled=ctx.progress)]
    if cfg.patience:
        callbacks.append(EarlyStopping(cfg.patience))
    trainer = Trainer(
        model, nn.CrossEntropyLoss(), cfg.optimizer, lr=cfg.lr, batch_size=cfg.batch_size,
        metrics={"accuracy": accuracy}, callbacks=callbacks, device=ctx.runtime.device, seed=ctx.runtime.seed, checkpoints=ctx.checkpoints,
    )
    history = trainer.fit(X[split.train], data.y[split.train], cfg.epochs, valid=(X[split.valid], data.y[split.valid]))

    def predict(rows: np.ndarray) -> np.ndarray:
        return trainer.predict(scaler.transform(rows)).argmax(dim=1).numpy()

    test_pred = predict(data.X[split.test])
    test_acc = float(np.mean(test_pred == data.y[split.test]))
    bayes_acc, bayes_se = blobs.bayes_optimal_accuracy(np.random.default_rng([ctx.runtime.seed, 1]), cfg.bayes_samples)
    fresh = blobs.sample(np.random.default_rng([ctx.runtime.seed, 2]), cfg.fresh_samples // 2)
    fresh_acc = float(np.mean(predict(fresh.X) == fresh.y))
    bayes_on_test = float(np.mean(blobs.bayes_predict(data.X[split.test]) == data.y[split.test]))
    counts = confusion_matrix(data.y[split.test], test_pred, 2)
    ctx.log(f"  test accuracy {test_acc:.3f}; on {len(fresh)} fresh draws {fresh_acc:.4f}; "
            f"Bayes-optimal {bayes_acc:.4f} ± {bayes_se:.4f}")

    ctx.run.save_figure(
        figures.curves(
            {"loss (cross-entropy)": {"train": history.column("train_loss"), "validation": history.column("valid_loss")},
             "accuracy": {"train": history.column("train_accuracy"), "validation": history.column("valid_accuracy")}},
        ),
        "curves", "Cross-entropy and accuracy per epoch on the training and validation splits.",
    )
    ctx.run.save_figure(_boundary_figure(blobs, data, split, predict), "decision_boundary",
                        "The model's decision boundary (colour) and the Bayes-optimal boundary (dashed), with the data.")
    ctx.run.save_figure(figures.confusion_matrix_figure(counts, ["class 0", "class 1"], "test split"),
                        "confusion_matrix", "Confusion matrix on the test split.")
    ctx.run.save_model({"model": model.state_dict(), "x_scaler": scaler.state(),
                        "layer_sizes": [2, *cfg.hidden, 2], "activation": cfg.activation})

    gap = 100 * (bayes_acc - fresh_acc)
    rows = [
        ("measure", "accuracy", "on"),
        ("model, test split", f"{test_acc:.3f}", f"{len(split.test)} rows (± {100 * np.sqrt(test_acc * (1 - test_acc) / len(split.test)):.1f} points of sampling noise)"),
        ("Bayes-optimal rule, same test split", f"{bayes_on_test:.3f}", f"{len(split.test)} rows"),
        ("model, fresh draws", f"{fresh_acc:.4f}", f"{len(fresh):,} new points from the true distributions"),
        ("Bayes-optimal (the ceiling)", f"{bayes_acc:.4f} ± {bayes_se:.4f}", f"{cfg.bayes_samples:,} Monte Carlo draws, true densities"),
    ]
    findings = [
        f"On fresh data the model is {gap:.2f} points below the Bayes-optimal accuracy "
        f"({fresh_acc:.4f} vs {bayes_acc:.4f}); no classifier can do better than the ceiling on these two Gaussians.",
        f"The test split has only {len(split.test)} rows, so its accuracy ({test_acc:.3f}) moves by several points from "
        f"one seed to the next; the Bayes rule itself scores {bayes_on_test:.3f} on the same rows.",
        f"Training ran {len(history)} epochs ({history.stop_reason}); best validation loss at epoch {history.best_epoch}.",
    ]
    return Result(
        metrics={
            "test_accuracy": test_acc, "fresh_accuracy": fresh_acc, "bayes_optimal_accuracy": bayes_acc,
            "bayes_optimal_se": bayes_se, "bayes_rule_test_accuracy": bayes_on_test,
            "gap_to_bayes_points": gap, "confusion_matrix": counts, "epochs_run": len(history),
            "best_epoch": history.best_epoch, "stop_reason": history.stop_reason,
            "n_train": len(split.train), "n_valid": len(split.valid), "n_test": len(split.test),
        },
        table=rows,
        findings=findings,
        headline=f"accuracy {fresh_acc:.3f} on fresh draws vs Bayes-optimal {bayes_acc:.3f}",
    )


def _boundary_figure(blobs: GaussianBlobs, data, split, predict):
    import matplotlib.pyplot as plt

    lo, hi = data.X.min(axis=0) - 1, data.X.max(axis=0) + 1
    g1, g2 = np.meshgrid(np.linspace(lo[0], hi[0], 250), np.linspace(lo[1], hi[1], 250))
    grid = np.column_stack([g1.ravel(), g2.ravel()])
    fig, ax = plt.subplots(figsize=(5.6, 4.6))
    ax.contourf(g1, g2, predict(grid).reshape(g1.shape), levels=[-0.5, 0.5, 1.5], colors=["#cfe2f3", "#f4cccc"])
    llr = (blobs.log_density(grid, 1) - blobs.log_density(grid, 0)).reshape(g1.shape)
    ax.contour(g1, g2, llr, levels=[0], colors="k", linestyles="--", linewidths=1.2)
    for c, color in ((0, "C0"), (1, "C3")):
        tr = split.train[data.y[split.train] == c]
        te = split.test[data.y[split.test] == c]
        ax.scatter(data.X[tr, 0], data.X[tr, 1], s=12, color=color, label=f"class {c} train")
        ax.scatter(data.X[te, 0], data.X[te, 1], s=30, color=color, marker="x", label=f"class {c} test")
    ax.set_xlabel("x1")
    ax.set_ylabel("x2")
    ax.set_title("decision boundary: model (colour), Bayes-optimal (dashed)")
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    return fig


LAB = Lab(
    id="mlp-classification",
    title="MLP classification of two Gaussian blobs, against the Bayes-optimal ceiling",
    function="MLP 2→{hidden}→2, {activation}, logits",
    loss="cross-entropy on logits",
    minimizer="{optimizer}, mini-batches of {batch_size}",
    data="two Gaussian blobs, 100 points per class (seeded)",
    typical_time="~3 s (quick <1 s)",
    config=Config,
    run=run,
    quick={"epochs": 5, "bayes_samples": 20_000, "fresh_samples": 20_000},
    prefers_cpu="a 2→30→15→2 MLP on mini-batches of 5 is too small to gain from a GPU",
    multiprocess=True,
)
