"""Lab `cnn-digits`: a small CNN against the best MLP of the same parameter budget, on handwritten digits.

The data are scikit-learn's 1,797 bundled digits of 8×8 pixels (or MNIST, when `mnist=` points at its
IDX files; then MNIST's own 10,000 test digits are the test set and validation comes out of its training
part). Both models get the same images, the same stratified train / validation / test split, the same
optimizer (AdamW), schedule (cosine), loss (label-smoothed cross-entropy), epochs and prediction rule;
the MLP sees each image as a row of H·W pixels. What differs is step 1, the function: a CNN slides one
small filter over every position of the image and so knows from the start that a stroke is a stroke
wherever it is; an MLP has a separate weight for every pixel and must learn that from examples.

Augmentation, fairly: every training batch is warped at random (rotation ≤ 10°, scale ±10 %, shift of
±1 whole pixel; `dlconcepts.data.augment`), validation and test images never are. Data parallel (torchrun,
`dlc run cnn-digits --nproc N`), each process warps its own rows of every batch from its own stream,
`seed_for_rank(seed, rank)`, so N processes train on other warps than one process does (by design).
Warps help a CNN and can hurt an MLP, so the MLP is offered both: for each depth in `mlp_depths`, its width is chosen so its
parameter count is as close as whole units allow to the CNN's (within 1 % at the defaults), it is trained with and without the
warps, and the candidate with the best *validation* accuracy is kept. A model trained on shifted images
predicts by averaging its softmax over the image and its four one-pixel shifts (test-time augmentation,
`test_shifts`); a model trained without shifts predicts from the image alone.

The test split is used once, at the end, for both models: their accuracies carry Wilson 95 % intervals,
and the two are compared on the same test images by an exact McNemar test, which looks only at the
images on which they disagree. The default recipe (pooled_size 2, the warps, test shifts, 40 epochs) was
chosen by 5-fold cross-validation inside the training + validation part of seeds 0, 1 and 2 — never on
their test splits.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from dlconcepts import distributed
from dlconcepts.config import param
from dlconcepts.data.augment import RandomAffine, average_over_shifts
from dlconcepts.data.digits import DIGIT_CLASSES, ImageSet, check_mnist_folder, load_digit_images, split_images
from dlconcepts.data.splits import Split
from dlconcepts.labs.base import Lab, LabContext, Result
from dlconcepts.nets.cnn import DigitsCNN
from dlconcepts.nets.mlp import mlp, mlp_parameter_count, mlp_sizes_for_budget
from dlconcepts.report import figures
from dlconcepts.runtime import seed_for_rank
from dlconcepts.train import EarlyStopping, LRScheduler, ProgressBar, Trainer, accuracy, confusion_matrix
from dlconcepts.train.metrics import mcnemar_exact, wilson_interval


@dataclass(frozen=True)
class Config:
    mnist: str = param("", "folder holding MNIST's four IDX files; empty = scikit-learn's bundled 8×8 digits")
    channels: tuple[int, ...] = param((16, 32), "CNN filters per stage (each stage: two 3×3 conv–BN–ReLU; 2×2 max pool between)", positive=True)
    pooled_size: int = param(2, "CNN: each final map is averaged to pooled_size × pooled_size before the Linear layer", positive=True)
    dropout: float = param(0.2, "dropout before the CNN's Linear layer and after each MLP hidden layer", minimum=0.0, maximum=0.9)
    mlp_depths: tuple[int, ...] = param((1, 2, 3), "hidden-layer counts of the MLP candidates, each as wide as the CNN's budget allows", positive=True)
    epochs: int = param(40, "epochs for every model (cosine-annealed learning rate)", positive=True)
    batch_size: int = param(64, "mini-batch size", positive=True)
    lr: float = param(0.003, "AdamW's starting learning rate, annealed to 0 over the epochs", positive=True)
    weight_decay: float = param(0.0005, "AdamW's decoupled weight decay", minimum=0.0)
    label_smoothing: float = param(0.1, "cross-entropy target smoothing", minimum=0.0, maximum=0.5)
    patience: int = param(0, "stop when validation loss has not improved for this many epochs (0 = never); the best validation epoch's weights are kept either way", minimum=0)
    augment: bool = param(True, "warp every training batch (both models): random rotation, scale and whole-pixel shift")
    max_rotation: float = param(10.0, "augmentation: largest rotation, degrees", minimum=0.0, maximum=45.0)
    max_scale: float = param(0.1, "augmentation: scale drawn from [1 − max_scale, 1 + max_scale]", minimum=0.0, maximum=0.5)
    max_shift: int = param(1, "augmentation: largest shift in whole pixels, each axis", minimum=0)
    test_shifts: bool = param(True, "a model trained on warped images predicts (validation and test) by averaging its softmax over the image and its four 1-pixel shifts")
    mlp_unaugmented: bool = param(True, "also try every MLP shape trained without augmentation (the validation split decides)")
    valid_fraction: float = param(0.15, "share of the (training) images held out for validation", minimum=0.02, maximum=0.5)
    test_fraction: float = param(0.2, "share of the bundled digits for the test (MNIST has its own 10,000)", minimum=0.05, maximum=0.5)
    train_limit: int = param(0, "use at most this many training images (0 = all); for a quick look at MNIST on a CPU", minimum=0)
    misclassified_shown: int = param(40, "most misclassified test digits drawn in the figure", minimum=1)

    def check(self) -> None:
        if self.mnist:
            check_mnist_folder(self.mnist)  # before the run directory exists


# -- training: one recipe for every model ----------------------------------------------------------


def training_warps(cfg: Config, seed: int, rank: int = 0) -> RandomAffine:
    """The random warps of the training batches of process `rank` (0 when there is one process).

    Data parallel, each rank warps only its own rows of every batch: from one shared seed, the rows at the
    same place on two ranks would be warped alike at every step. Each rank draws from its own stream,
    `seed_for_rank(seed, rank)`; rank 0's is the one-process stream, so one process warps as it always did.
    """
    return RandomAffine(cfg.max_rotation, cfg.max_scale, cfg.max_shift, integer_shift=True,
                        seed=seed_for_rank(seed, rank))


def train_model(model: nn.Module, cfg: Config, ctx: LabContext, X: np.ndarray, y: np.ndarray, split: Split,
                seed: int, desc: str, augment: bool) -> Trainer:
    """AdamW + cosine schedule + label-smoothed cross-entropy (+ the training-batch warps); best validation epoch kept."""
    callbacks = [
        ProgressBar(cfg.epochs, desc=desc, enabled=ctx.progress),
        LRScheduler(lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)),
        # patience 0 = never stop early, but still restore the weights of the best validation loss.
        EarlyStopping(cfg.patience or cfg.epochs + 1, monitor="valid_loss", restore_best=True),
    ]
    warps = training_warps(cfg, seed, distributed.current().rank) if augment else None
    trainer = Trainer(
        model, nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing), "adamw", lr=cfg.lr,
        weight_decay=cfg.weight_decay, batch_size=cfg.batch_size, metrics={"accuracy": accuracy},
        callbacks=callbacks, device=ctx.runtime.device, seed=seed, augment=warps, checkpoints=ctx.checkpoints,
    )
    trainer.fit(X[split.train], y[split.train], cfg.epochs, valid=(X[split.valid], y[split.valid]))
    return trainer


def predict_probabilities(trainer: Trainer, X: np.ndarray, test_shifts: bool, batch: int = 4096) -> np.ndarray:
    """Class probabilities [n, 10] in eval mode, in batches (MNIST's 10,000 at once would be a lot of maps);
    with `test_shifts`, the softmax averaged over the image and its four one-pixel shifts."""
    parts = []
    for start in range(0, len(X), batch):
        images = torch.as_tensor(X[start : start + batch])
        probabilities = (average_over_shifts(trainer.predict, images) if test_shifts
                         else torch.softmax(trainer.predict(images), dim=1))
        parts.append(probabilities.numpy())
    return np.concatenate(parts)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def valid_scores(trainer: Trainer, X: np.ndarray, y: np.ndarray, split: Split, test_shifts: bool) -> tuple[float, float]:
    """(validation accuracy by the lab's prediction rule, validation loss) of the weights the trainer kept."""
    epoch = trainer.history.best_epoch or len(trainer.history)
    accuracy_ = float(np.mean(predict_probabilities(trainer, X[split.valid], test_shifts).argmax(1) == y[split.valid]))
    return accuracy_, trainer.history.epochs[epoch - 1]["valid_loss"]


# -- the lab ---------------------------------------------------------------------------------------


def run(cfg: Config, ctx: LabContext) -> Result:
    seed = ctx.runtime.seed
    data = load_digit_images(cfg.mnist)
    split = split_images(data, np.random.default_rng(seed), cfg.valid_fraction, cfg.test_fraction, cfg.train_limit)
    X, y = data.images, data.labels
    channels, height, width = data.image_shape
    ctx.log(f"  data: {data.description}; {len(split.train)} train / {len(split.valid)} valid / {len(split.test)} test"
            f"{' (MNIST’s own test set)' if data.predefined_test is not None else ' (stratified)'}")
    if cfg.augment:
        ctx.log(f"  augmentation of training batches: {RandomAffine(cfg.max_rotation, cfg.max_scale, cfg.max_shift)}")

    # Step 1a: the CNN.
    torch.manual_seed(seed)
    cnn = DigitsCNN(cfg.channels, num_classes=10, in_channels=channels, dropout=cfg.dropout, pooled_size=cfg.pooled_size)
    budget = count_parameters(cnn)
    ctx.log(f"  CNN {'→'.join(map(str, cfg.channels))} channels: {budget:,} parameters")
    start = time.perf_counter()
    cnn_trainer = train_model(cnn, cfg, ctx, X, y, split, seed, "CNN", cfg.augment)
    cnn_shifts = cfg.test_shifts and cfg.augment and cfg.max_shift >= 1  # only a model trained on shifts
    cnn_valid_acc, _ = valid_scores(cnn_trainer, X, y, split, cnn_shifts)
    cnn_seconds = time.perf_counter() - start
    ctx.log(f"  CNN: validation accuracy {cnn_valid_acc:.4f} (epoch {cnn_trainer.history.best_epoch}); {cnn_seconds:.1f} s")

    # Step 1b: MLPs of the same budget, one per depth (with and without augmentation); the validation split picks one.
    candidates = []
    for depth in dict.fromkeys(cfg.mlp_depths):
        sizes = mlp_sizes_for_budget(channels * height * width, 10, depth, budget)
        for augmented in dict.fromkeys((cfg.augment, cfg.augment and not cfg.mlp_unaugmented)):
            start = time.perf_counter()
            torch.manual_seed(seed)
            model = nn.Sequential(nn.Flatten(), mlp(sizes, "relu", cfg.dropout))
            trainer = train_model(model, cfg, ctx, X, y, split, seed, f"MLP {depth}", augmented)
            shifts = cfg.test_shifts and augmented and cfg.max_shift >= 1
            valid_acc, valid_loss = valid_scores(trainer, X, y, split, shifts)
            name = f"MLP {'→'.join(map(str, sizes))}{'' if augmented or not cfg.augment else ', no augmentation'}"
            candidates.append({"name": name, "sizes": sizes, "parameters": mlp_parameter_count(sizes), "trainer": trainer,
                               "augmented": augmented, "test_shifts": shifts, "valid_accuracy": valid_acc,
                               "valid_loss": valid_loss, "seconds": time.perf_counter() - start})
            ctx.log(f"  {name}: {mlp_parameter_count(sizes):,} parameters, validation accuracy {valid_acc:.4f}; "
                    f"{candidates[-1]['seconds']:.1f} s")
    best = max(candidates, key=lambda c: (c["valid_accuracy"], -c["valid_loss"]))
    mlp_trainer = best["trainer"]

    # The test split, used once.
    y_test = y[split.test]
    cnn_prob = predict_probabilities(cnn_trainer, X[split.test], cnn_shifts)
    mlp_prob = predict_probabilities(mlp_trainer, X[split.test], best["test_shifts"])
    cnn_pred, mlp_pred = cnn_prob.argmax(1), mlp_prob.argmax(1)
    cnn_right, mlp_right = cnn_pred == y_test, mlp_pred == y_test
    n_test = len(y_test)
    cnn_acc, mlp_acc = float(cnn_right.mean()), float(mlp_right.mean())
    cnn_ci, mlp_ci = wilson_interval(int(cnn_right.sum()), n_test), wilson_interval(int(mlp_right.sum()), n_test)
    only_cnn, only_mlp, p_value = mcnemar_exact(cnn_right, mlp_right)
    counts = confusion_matrix(y_test, cnn_pred, 10)
    ctx.log(f"  test: CNN {cnn_acc:.4f} [{cnn_ci[0]:.4f}, {cnn_ci[1]:.4f}], MLP {mlp_acc:.4f} "
            f"[{mlp_ci[0]:.4f}, {mlp_ci[1]:.4f}]; McNemar p = {p_value:.3g}")

    _figures(ctx, cfg, data, split, cnn, cnn_trainer, mlp_trainer, best, cnn_prob, mlp_prob)
    ctx.run.save_model({
        "model": _on_cpu(cnn.state_dict()), "cnn_channels": list(cfg.channels), "cnn_pooled_size": cfg.pooled_size,
        "mlp": _on_cpu(best["trainer"].model.state_dict()), "mlp_layer_sizes": list(best["sizes"]),
        "mlp_augmented": best["augmented"], "test_shifts": {"cnn": cnn_shifts, "mlp": best["test_shifts"]},
        "dropout": cfg.dropout, "image_shape": list(data.image_shape), "data": data.name,
    })

    rows = [("model", "parameters", "validation accuracy", "test accuracy (95 % Wilson interval)", "seconds")]
    rows.append((f"CNN {'→'.join(map(str, cfg.channels))} channels", f"{budget:,}", f"{cnn_valid_acc:.4f}",
                 f"{cnn_acc:.4f} [{cnn_ci[0]:.4f}, {cnn_ci[1]:.4f}]", f"{cnn_seconds:.1f}"))
    for c in candidates:
        chosen = c is best
        test = f"{mlp_acc:.4f} [{mlp_ci[0]:.4f}, {mlp_ci[1]:.4f}]" if chosen else "— (not chosen)"
        rows.append((f"{c['name']}{' (chosen)' if chosen else ''}", f"{c['parameters']:,}",
                     f"{c['valid_accuracy']:.4f}", test, f"{c['seconds']:.1f}"))

    gap = 100 * (cnn_acc - mlp_acc)
    leader = "CNN" if only_cnn >= only_mlp else "MLP"
    verdict = (f"the {leader}'s advantage is significant at the 5 % level" if p_value < 0.05
               else f"on {only_cnn + only_mlp} disagreements that is not significant at the 5 % level")
    findings = [
        f"On the same {n_test} test images the CNN is right on {int(cnn_right.sum())} ({100 * cnn_acc:.2f} %) and the "
        f"best MLP of the same budget on {int(mlp_right.sum())} ({100 * mlp_acc:.2f} %): "
        f"{'+' if gap >= 0 else '−'}{abs(gap):.2f} points for the CNN, with {budget:,} vs {best['parameters']:,} parameters.",
        f"They disagree on {only_cnn + only_mlp} images: the CNN alone is right on {only_cnn}, the MLP alone on {only_mlp}; "
        f"the exact McNemar test gives p = {p_value:.3g}, so {verdict}.",
        f"The validation split chose the {best['name']} among {len(candidates)} candidates "
        f"({'; '.join(c['name'] + ': ' + format(c['valid_accuracy'], '.4f') for c in candidates)}); "
        f"the test split chose nothing.",
        f"The CNN's errors: {_top_confusions(counts)}.",
    ]
    warped = [c["valid_accuracy"] for c in candidates if c["augmented"]]
    plain = [c["valid_accuracy"] for c in candidates if not c["augmented"]]
    if warped and plain:
        lower = np.mean(warped) < np.mean(plain)
        findings.append(
            f"Trained on warped digits, the MLPs score {'lower' if lower else 'higher'} on validation than trained on "
            f"the plain ones (mean {np.mean(warped):.4f} vs {np.mean(plain):.4f} over {len(plain)} shapes)"
            + (": an MLP has one weight per pixel, so a digit moved by one pixel is a new pattern it must learn "
               "separately, while the CNN's shared filters respond to a stroke wherever it sits." if lower else "."))
    return Result(
        metrics={
            "data": data.name, "cnn_test_accuracy": cnn_acc, "cnn_test_interval": list(cnn_ci),
            "mlp_test_accuracy": mlp_acc, "mlp_test_interval": list(mlp_ci),
            "cnn_errors": int(n_test - cnn_right.sum()), "mlp_errors": int(n_test - mlp_right.sum()),
            "mcnemar_only_cnn_right": only_cnn, "mcnemar_only_mlp_right": only_mlp, "mcnemar_p": p_value,
            "cnn_parameters": budget, "mlp_parameters": best["parameters"], "mlp_layer_sizes": list(best["sizes"]),
            "mlp_augmented": best["augmented"],
            "mlp_candidates": [{"layer_sizes": list(c["sizes"]), "parameters": c["parameters"], "augmented": c["augmented"],
                                "valid_accuracy": c["valid_accuracy"], "valid_loss": c["valid_loss"],
                                "seconds": c["seconds"]} for c in candidates],
            "cnn_seconds": cnn_seconds, "cnn_valid_accuracy": cnn_valid_acc, "cnn_best_epoch": cnn_trainer.history.best_epoch,
            "confusion_matrix": counts, "n_train": len(split.train), "n_valid": len(split.valid), "n_test": n_test,
        },
        table=rows,
        findings=findings,
        headline=f"CNN {100 * cnn_acc:.2f} % vs MLP {100 * mlp_acc:.2f} % test accuracy at {budget:,} parameters ({data.name})",
    )


def _on_cpu(state: dict) -> dict:
    """A state_dict with its tensors on the CPU, so the file loads on a machine without the training GPU."""
    return {k: v.detach().cpu() for k, v in state.items()}


def _top_confusions(counts: np.ndarray, limit: int = 3) -> str:
    off = [(int(counts[i, j]), i, j) for i in range(len(counts)) for j in range(len(counts)) if i != j and counts[i, j]]
    if not off:
        return "none — every test digit is right"
    off.sort(key=lambda t: (-t[0], t[1], t[2]))
    return ", ".join(f"{n}× a {i} read as {j}" for n, i, j in off[:limit]) + (
        f" (and {sum(t[0] for t in off[limit:])} more)" if len(off) > limit else "")


def _figures(ctx: LabContext, cfg: Config, data: ImageSet, split: Split, cnn: DigitsCNN, cnn_trainer: Trainer,
             mlp_trainer: Trainer, best: dict, cnn_prob: np.ndarray, mlp_prob: np.ndarray) -> None:
    hc, hm = cnn_trainer.history, mlp_trainer.history
    mlp_name = best["name"]
    accuracy_series = {
        "CNN train": hc.column("train_accuracy"), "CNN validation": hc.column("valid_accuracy"),
        f"{mlp_name} train": hm.column("train_accuracy"), f"{mlp_name} validation": hm.column("valid_accuracy")}
    fig = figures.curves({
        "loss (label-smoothed cross-entropy)": {
            "CNN train": hc.column("train_loss"), "CNN validation": hc.column("valid_loss"),
            f"{mlp_name} train": hm.column("train_loss"), f"{mlp_name} validation": hm.column("valid_loss")},
        "accuracy (zoomed on the later epochs)": accuracy_series,
    })
    # The first epochs climb from 10 %; the story is in the last few points, so the axis starts near them.
    later = [v for values in accuracy_series.values() for v in values[len(values) // 4 :]]
    fig.axes[1].set_ylim(max(0.0, min(later) - 0.01), 1.002)
    ctx.run.save_figure(
        fig, "curves", "Loss and accuracy per epoch of the CNN and the chosen MLP. Training values are measured on "
                       "the training batches as the model saw them (warped, when it trains with augmentation) with "
                       "dropout on; validation values on the unchanged validation images, one view each.",
    )
    y_test = data.labels[split.test]
    cnn_pred, mlp_pred = cnn_prob.argmax(1), mlp_prob.argmax(1)
    counts = confusion_matrix(y_test, cnn_pred, 10)
    ctx.run.save_figure(figures.confusion_matrix_figure(counts, list(DIGIT_CLASSES), f"CNN, {len(y_test)} test digits"),
                        "confusion_matrix", "The CNN's confusion matrix on the test split (rows: true digit).")
    images = data.images[split.test]
    for key, name, prob, other_pred, other in (("cnn", "CNN", cnn_prob, mlp_pred, "MLP"),
                                               ("mlp", mlp_name, mlp_prob, cnn_pred, "CNN")):
        fig, caption = _error_grid(images, y_test, prob, other_pred, name, other, cfg.misclassified_shown)
        ctx.run.save_figure(fig, f"misclassified_{key}", caption)
    filters = cnn.first_filters.detach().cpu().numpy()
    ctx.run.save_figure(
        figures.image_grid(filters[:, 0] if filters.shape[1] == 1 else filters.mean(axis=1),
                           [f"filter {k}" for k in range(len(filters))], ncols=8, cmap="gray", value_range=None,
                           title="CNN: learned first-layer 3×3 filters (each scaled on its own; bright = positive)"),
        "first_layer_filters", "The CNN's first-layer filters after training: each is a 3×3 pattern the network slides "
                               "over the digit; each is drawn with its own grey scale.",
    )
    if cfg.augment:
        examples = torch.as_tensor(data.images[split.train][:8])
        warps = RandomAffine(cfg.max_rotation, cfg.max_scale, cfg.max_shift, seed=ctx.runtime.seed + 1)
        grid = torch.cat([examples] + [warps(examples) for _ in range(3)]).numpy()
        titles = ["original"] * 8 + ["warped"] * 24
        ctx.run.save_figure(
            figures.image_grid(grid, titles, ncols=8, scale=1.1, title="augmentation: training digits and random warps of them"),
            "augmentation", "Top row: training digits; below: random warps of the same digits, as the training "
                            "batches see them (validation and test images are never warped).",
        )


def _error_grid(images: np.ndarray, y_true: np.ndarray, prob: np.ndarray, other_pred: np.ndarray, name: str,
                other: str, limit: int):
    """The test digits a model gets wrong ('pred a / true b', * where the other model is wrong too); when it
    gets none wrong, its closest calls instead: the right answers it gave the lowest probability."""
    pred = prob.argmax(1)
    wrong = np.flatnonzero(pred != y_true)
    if len(wrong):
        shown = wrong[:limit]
        titles = [f"pred {pred[k]} / true {y_true[k]}{' *' if other_pred[k] != y_true[k] else ''}" for k in shown]
        title = f"{name}: misclassified test digits ({len(wrong)}{f', first {limit} shown' if len(wrong) > limit else ''}; * = the {other} is wrong too)"
        caption = (f"Test digits the {name} gets wrong, with its prediction and the true label; * marks those the "
                   f"{other} misreads as well.")
    else:
        true_probability = prob[np.arange(len(y_true)), y_true]
        shown = np.argsort(true_probability, kind="stable")[: min(8, len(y_true))]
        titles = [f"pred {pred[k]} / true {y_true[k]}, p={true_probability[k]:.2f}" for k in shown]
        title = f"{name}: no test digit misclassified; its {len(shown)} closest calls (lowest p of the true digit)"
        caption = (f"The {name} reads every test digit right; these are the ones it was least sure of, with the "
                   "probability it gave the true digit.")
    fig = figures.image_grid(images[shown], titles, ncols=min(8, len(shown)), scale=1.4, title=title)
    return fig, caption


LAB = Lab(
    id="cnn-digits",
    title="A small CNN against the best MLP of the same parameter budget on handwritten digits",
    function="CNN {channels} channels (3×3 conv–BN–ReLU ×2 per stage) vs the best MLP of equal parameter count",
    loss="cross-entropy on logits, label smoothing {label_smoothing}",
    minimizer="AdamW (lr {lr}, cosine to 0), mini-batches of {batch_size}, {epochs} epochs; warped training batches: {augment}",
    data="scikit-learn's 1,797 bundled 8×8 digits (stratified 20 % test), or MNIST from IDX files with mnist=DIR",
    typical_time="~15 s on 2 CPU cores (quick ~3 s); MNIST ~20 min on 2 CPU cores (use a GPU, or train_limit)",
    config=Config,
    run=run,
    quick={"epochs": 2, "channels": (8, 16), "mlp_depths": (1, 2), "misclassified_shown": 16},
    path_options=("mnist",),
    multiprocess=True,
)
