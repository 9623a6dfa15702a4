"""`dlc train`: the course applied to a researcher's own table, from reading it to the report.

`train` does, in order:

1. read and check everything it can before writing a byte: the file, the columns, the task, the
   cross-validation plan and every fold's preprocessing (`prepare`). Any mistake is a `UserError` and
   no run directory is created;
2. cross-validate three models on the same folds and the same preprocessing (`validation`): the MLP
   (`TunedMLP`: width and weight decay chosen by an inner cross-validation inside each training fold,
   early-stopped networks averaged), the regularized linear model and the constant model;
3. compare them out of fold: metrics with bootstrap intervals, the best model, paired differences,
   and a plain warning whenever the MLP loses to a baseline;
4. fit the model asked for by `--model` (mlp, linear, or best: the out-of-fold winner) on all rows:
   that is the saved model (`saved_model`);
5. write the run directory: config.json, metrics.json, figures/, model.pt, log.txt, report.md —
   the report opens with the verdict.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import roc_curve

from dlconcepts.data.tables import Selection, TablePreprocessor, infer_task, leakage_suspects, read_table, select_columns
from dlconcepts.errors import UserError
from dlconcepts.report import figures
from dlconcepts.report.markdown import plain_table, table
from dlconcepts.runs import Run
from dlconcepts.tabular import validation as V
from dlconcepts.tabular.saved_model import saved_dict
from dlconcepts.tabular.tuned_mlp import MLPSearch, TunedMLP
from dlconcepts.train.metrics import confusion_matrix

MLP = "MLP"
MODEL_CHOICES = ("mlp", "linear", "best")
# Below this many rows the networks' products are too small to split across threads: a second thread only
# waits (a 500-row table: 13.0 s on one thread, 12.1 s on two; on a busy machine tiny products run several
# times slower on two), so dlc train takes one thread unless --threads says otherwise.
SMALL_WORK = 1000


@dataclass(frozen=True)
class TrainOptions:
    """What `dlc train` was asked; written to config.json as is."""

    data: str  # the .csv / .xlsx file; only ever read
    target: str  # the column to predict
    features: list[str] | None = None  # None: every other column
    task: str = "auto"  # auto, regression or classification (`infer_task`)
    hidden: tuple[int, ...] | None = None  # hidden layer widths; None: chosen per fold from MLPSearch.hidden
    epochs: int = MLPSearch.max_epochs  # most full-batch Adam steps per network; early stopping ends most sooner
    lr: float = MLPSearch.lr  # Adam's learning rate
    cv: int | str = "auto"  # K folds, "loo", or "auto" (chosen from the row count: validation.plan_cv)
    model: str = "mlp"  # the model saved: mlp, linear, or best (the out-of-fold winner, refitted on all rows)
    seed: int = 0  # fold shuffling and every fit's initial weights
    sheet: str | None = None  # the Excel sheet; None: the first
    out: str = "runs"  # parent folder of the run directory
    quiet: bool = False  # no progress on the terminal
    n_boot: int = V.N_BOOT  # bootstrap resamples per interval
    threads: int | None = None  # CPU threads; None: 1 below SMALL_WORK rows (tiny products), else torch's default

    def search(self) -> MLPSearch:
        chosen = replace(MLPSearch(), max_epochs=self.epochs, lr=self.lr)
        return chosen if self.hidden is None else replace(chosen, hidden=(tuple(self.hidden),))


# --------------------------------------------------------------------------- parsing the command line


def parse_hidden(text: str) -> tuple[int, ...] | None:
    """'auto' -> None (chosen by inner cross-validation); '32' -> (32,); '64,32' -> (64, 32)."""
    if text.strip().lower() == "auto":
        return None
    if text.strip().lower() in ("", "none"):
        raise UserError("--hidden none would leave no hidden layer; for a linear model use --model linear")
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        sizes = (0,)
    if any(s < 1 for s in sizes):
        raise UserError(f"--hidden {text!r} is not positive layer widths separated by commas; use e.g. --hidden 32 or --hidden auto")
    return sizes


def parse_cv(text: str) -> int | str:
    """'5' -> 5 folds; 'loo' -> leave-one-out; 'auto' -> chosen from the row count."""
    if text.strip().lower() in ("loo", "auto"):
        return text.strip().lower()
    try:
        k = int(text)
    except ValueError:
        k = 0
    if k < 2:
        raise UserError(f"--cv {text!r} is not a number of folds >= 2, 'loo' or 'auto'; use e.g. --cv 5, --cv loo or --cv auto")
    return k


def parse_features(text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise UserError(f"--features {text!r} has an empty name; list column names separated by commas, e.g. --features age,t1")
    return names


def check_options(options: TrainOptions) -> None:
    if not (isinstance(options.epochs, int) and options.epochs >= 1):
        raise UserError(f"--epochs {options.epochs} is impossible: it must be an integer >= 1")
    if not (math.isfinite(options.lr) and options.lr > 0):
        raise UserError(f"--lr {options.lr} is impossible: it must be a positive number, e.g. 1e-2")
    if not 0 <= options.seed < 2**32:
        raise UserError(f"--seed {options.seed} is impossible: it must be between 0 and 2**32 - 1")
    if options.threads is not None and options.threads < 1:
        raise UserError(f"--threads {options.threads} is impossible; use 1 or more")
    if options.model not in MODEL_CHOICES:
        raise UserError(f"--model {options.model!r} is not one of {', '.join(MODEL_CHOICES)}; use e.g. --model best")


# --------------------------------------------------------------------------- 1. everything checked before writing


@dataclass
class Prepared:
    selection: Selection
    task: str
    y: np.ndarray  # class labels (classification) or float64 values (regression)
    plan: V.CVPlan
    folds: list[list[V.Fold]]
    preprocessor: TablePreprocessor  # fitted on all rows: the saved model's
    X: np.ndarray  # all rows, preprocessed by `preprocessor`
    notes: list[str] = field(default_factory=list)


def prepare(options: TrainOptions) -> Prepared:
    """Read the table and check everything up to training; raises `UserError` and writes nothing."""
    check_options(options)
    table = read_table(options.data, options.sheet)
    selection = select_columns(table, options.target, options.features)
    task = infer_task(selection.y, options.task)
    y = _target_values(selection.y, task)
    notes = [*table.attrs.get("notes", []), *selection.notes, *leakage_suspects(selection.X, y, task)]
    preprocessor = TablePreprocessor().fit(selection.X)
    X = preprocessor.transform(selection.X, notes)
    if X.shape[1] == 0:
        raise UserError("every feature column was dropped (constant or empty); choose features that vary with --features")
    plan = V.plan_cv(options.cv, task, y, options.seed)
    folds = V.make_folds(selection.X, plan)
    return Prepared(selection, task, y, plan, folds, preprocessor, X, notes)


def _target_values(y: pd.Series, task: str) -> np.ndarray:
    if task == "regression":
        return pd.to_numeric(y).to_numpy(dtype=np.float64)  # infer_task checked every value is a number
    if pd.api.types.is_numeric_dtype(y) or pd.api.types.is_bool_dtype(y):
        return y.to_numpy()
    return y.astype(str).to_numpy()  # mixed text and numbers: all labels as text, so they sort


# --------------------------------------------------------------------------- 2. the models, on the same folds


def model_factories(task: str, options: TrainOptions) -> dict[str, V.ModelFactory]:
    """The MLP, the linear model and the constant model, by their report names."""
    search = options.search()
    return {
        MLP: lambda y: TunedMLP(task, search, random_state=options.seed),
        V.linear_name(task): V.linear_model(task, options.seed),
        V.constant_name(task): V.constant_model(task),
    }


def kind_of(name: str, task: str) -> str:
    return {MLP: "mlp", V.linear_name(task): "linear", V.constant_name(task): "constant"}[name]


def _progress(total: int, quiet: bool):
    """A bar over the fits of the cross-validation, on a terminal (tqdm.auto also behaves in notebooks)."""
    if quiet or not sys.stderr.isatty():
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="cross-validation", unit="fit", leave=False)


# --------------------------------------------------------------------------- dlc train


@dataclass
class TrainOutcome:
    run: Run
    saved_kind: str  # mlp, linear or constant
    model: Any  # fitted on all rows: the saved one
    preprocessor: TablePreprocessor
    metrics: dict[str, Any]


def train(options: TrainOptions) -> TrainOutcome:
    start = time.perf_counter()
    prep = prepare(options)  # nothing is written before this passes
    threads_before = torch.get_num_threads()
    threads = options.threads or (1 if len(prep.y) < SMALL_WORK else threads_before)
    torch.set_num_threads(threads)
    try:
        return _train(options, prep, start, threads)
    finally:
        torch.set_num_threads(threads_before)


def _train(options: TrainOptions, prep: Prepared, start: float, threads: int) -> TrainOutcome:
    run = Run.create(options.out, "train", quiet=options.quiet)
    run.write_json("config.json", {"command": "train", **asdict(options)})
    features = list(prep.selection.X.columns)
    task, n = prep.task, len(prep.y)
    run.log(f"dlc train: {options.data} -> {run.path}")
    run.log(f"  target '{options.target}' ({task}), {n} rows, {len(features)} feature columns")
    run.log(plain_table(_column_rows(prep.preprocessor)).rstrip("\n"))
    for note in prep.notes:
        run.log(f"  note: {note}")
    search = options.search()
    run.log(f"  cross-validation: {prep.plan.name} ({prep.plan.reason}); {threads} CPU thread{'s' * (threads > 1)}")
    run.log(f"  MLP: {_search_text(search)}")
    factories = model_factories(task, options)
    try:
        bar = _progress(prep.plan.n_fits * len(factories), options.quiet)
        oof = {}
        for name, make in factories.items():
            oof[name] = V.out_of_fold(make, prep.folds, prep.y, task, on_fold=bar.update if bar else None)
        if bar is not None:
            bar.close()
        comparison = V.compare(task, prep.y, oof, focus=MLP, n_boot=options.n_boot, seed=options.seed)
        for name, scores in comparison.scores.items():
            run.log(f"  {name}: out of fold " + ", ".join(f"{k} {v.text()}" for k, v in scores.items()))
        run.log(f"  {comparison.verdict}")
        for warning in comparison.losses:
            run.log(f"  warning: {warning}")
        saved_name = {"mlp": MLP, "linear": V.linear_name(task), "best": comparison.best}[options.model]
        final = factories[saved_name](prep.y).fit(prep.X, prep.y)
    except UserError as exc:  # a diverged fit: the log keeps why
        run.log(f"error: {exc}", echo=False)
        raise
    saved_kind = kind_of(saved_name, task)
    run.save_model(saved_dict(saved_kind, task, final, prep.preprocessor, options.target, features))
    mlp_fits = oof[MLP].fits
    metrics = {
        "task": task, "target": options.target, "rows": n, "cv": prep.plan.name, "cv_reason": prep.plan.reason,
        **comparison.as_dict(),
        "saved_model": {"name": saved_name, "kind": saved_kind, "asked": options.model},
        "mlp_search": _search_summary(mlp_fits, search),
        "small_data": _small_data(n, task, prep.y, comparison) if n < V.MEDIUM_TABLE else None,
        "seconds": time.perf_counter() - start,
    }
    if task == "classification":
        metrics["classes"] = oof[MLP].classes.tolist()
        metrics["confusion_matrices"] = {m: _confusion(prep.y, o).tolist() for m, o in oof.items()}
    _save_figures(run, prep, oof, comparison, final if saved_kind == "mlp" else None)
    run.write_json("metrics.json", metrics)
    run.write_text("report.md", _report(options, prep, metrics, comparison, run.figures))
    run.log(f"  saved: {saved_name} ({'--model ' + options.model}), fitted on all {n} rows")
    run.log(f"dlc train: done in {metrics['seconds']:.1f} s")
    return TrainOutcome(run, saved_kind, final, prep.preprocessor, metrics)


def _search_text(search: MLPSearch) -> str:
    widths = " or ".join("→".join(map(str, h)) for h in search.hidden)
    decays = ", ".join(f"{d:g}" for d in search.weight_decays)
    return (f"hidden {widths}, weight decay {decays}, chosen by {search.inner_folds}-fold cross-validation inside each "
            f"training fold; full-batch Adam lr {search.lr:g}, at most {search.max_epochs} epochs, early stopping after "
            f"{search.patience} without improvement; the {search.inner_folds * search.seeds} fold networks averaged")


def _search_summary(fits: list[TunedMLP], search: MLPSearch) -> dict[str, Any]:
    """Which width and weight decay the inner cross-validation chose, fold by fold."""
    return {
        "hidden_chosen": V.summarize_choices([list(f.choice_.hidden) for f in fits]),
        "weight_decay_chosen": V.summarize_choices([f.choice_.weight_decay for f in fits]),
        "median_best_epoch": float(np.median([e for f in fits for e in f.choice_.best_epochs])),
        "grid": {"hidden": [list(h) for h in search.hidden], "weight_decays": list(search.weight_decays)},
    }


def _confusion(y: np.ndarray, oof: V.OutOfFold) -> np.ndarray:
    return confusion_matrix(np.searchsorted(oof.classes, y), np.searchsorted(oof.classes, oof.predictions), len(oof.classes))


def _small_data(n: int, task: str, y: np.ndarray, comparison: V.Comparison) -> dict[str, Any]:
    """What so few rows can and cannot support, in numbers and in one paragraph."""
    main = comparison.main
    widths = {m: s[main].high - s[main].low for m, s in comparison.scores.items()}
    apart = [m for m, d in comparison.differences.items() if V.separated(d)]
    lines = [f"With {n} rows, one row moves accuracy by {100 / n:.1f} points" if task == "classification"
             else f"With {n} rows, one row is {100 / n:.1f} % of the data"]
    if task == "classification":
        counts = np.unique(y, return_counts=True)[1]
        lines.append(f"the smallest class has {counts.min()} rows, so one of them is {100 / counts.min():.0f} points "
                     "of that class's recall")
    low, high = min(widths.values()), max(widths.values())
    span = f"{low:.2f}" if f"{low:.2f}" == f"{high:.2f}" else f"{low:.2f}–{high:.2f}"
    lines.append(f"the 95 % intervals of {main} are {span} wide")
    if apart:
        lines.append(f"they do separate the {comparison.best} from the {' and the '.join(apart)}")
    if len(apart) < len(comparison.differences):
        rest = [m for m in comparison.differences if m not in apart]
        lines.append(f"they cannot separate the {comparison.best} from the {' and the '.join(rest)}")
    text = "; ".join(lines) + (". Such a table can show whether the features carry any signal (a model whose "
                               "interval of the difference to the constant model excludes 0); it cannot rank "
                               "models that lie within each other's intervals, set a clinical threshold, or speak for "
                               "people outside the study.")
    return {"text": text, "interval_widths": widths, "separated_from_best": apart}


# --------------------------------------------------------------------------- figures and report


def _column_rows(preprocessor: TablePreprocessor) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = [("column", "type", "missing", "handling")]
    rows += [(str(r["name"]), str(r["type"]), str(r["missing"]), str(r["handling"])) for r in preprocessor.report()]
    return rows


def _save_figures(run: Run, prep: Prepared, oof: dict[str, V.OutOfFold], comparison: V.Comparison,
                  final_mlp: TunedMLP | None) -> None:
    metrics = list(next(iter(comparison.scores.values())))
    entries = {metric: [(model, comparison.scores[model][metric]) for model in comparison.scores] for metric in metrics}
    run.save_figure(figures.forest(entries, highlight=MLP), "model_comparison",
                    "Out-of-fold metrics of each model on the same folds, with bootstrap 95 % intervals over the rows.")
    name = prep.selection.y.name
    if prep.task == "regression":
        run.save_figure(_predicted_vs_actual(prep.y, oof, name), "predicted_vs_actual",
                        "Out-of-fold predictions against the true values; on the diagonal they are exact.")
    else:
        labels = [str(c) for c in oof[MLP].classes]
        run.save_figure(figures.confusion_matrix_figure(_confusion(prep.y, oof[MLP]), labels, "MLP, out of fold"),
                        "confusion_matrix", "The MLP's out-of-fold predictions: rows are the true class, columns the predicted one.")
        if not any(o.folds_missing_a_class for o in oof.values()):
            run.save_figure(_roc(prep.y, oof), "roc_curve",
                            "ROC curves of the out-of-fold probabilities; the dashed diagonal is guessing.")
    fits = oof[MLP].fits
    run.save_figure(_search_figure(fits), "mlp_search",
                    "Inner cross-validation of the MLP in each outer training fold: the pooled validation loss of every "
                    "width and weight decay; the circled point is the one chosen.")
    if final_mlp is not None:
        run.save_figure(_final_curves(final_mlp), "loss_curves",
                        "The saved MLP's networks (one per inner fold): training and validation loss per epoch; the dot "
                        "marks the epoch whose weights were kept.")


def _predicted_vs_actual(y: np.ndarray, oof: dict[str, V.OutOfFold], name: str):
    fig, ax = figures.plt.subplots(figsize=(4.8, 4.4))
    for model, o in oof.items():
        if model != V.constant_name("regression"):  # the constant model is a flat line
            ax.scatter(y, o.predictions, s=14, alpha=0.6, label=model)
    low, high = float(y.min()), float(y.max())
    ax.plot([low, high], [low, high], "k--", lw=1, label="predicted = actual")
    ax.set_xlabel(f"actual {name}")
    ax.set_ylabel(f"predicted {name} (out of fold)")
    ax.set_title("predicted vs actual")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _roc(y: np.ndarray, oof: dict[str, V.OutOfFold]):
    fig, ax = figures.plt.subplots(figsize=(4.6, 4.4))
    for model, o in oof.items():
        shown = [1] if len(o.classes) == 2 else range(len(o.classes))  # binary: one curve, for the second class
        for i in shown:
            fpr, tpr, _ = roc_curve(y == o.classes[i], o.probabilities[:, i])
            suffix = "" if len(o.classes) == 2 else f", class {o.classes[i]} vs rest"
            ax.plot(fpr, tpr, lw=1.4, label=model + suffix, ls="-" if model == MLP else "--")
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC curves (out of fold)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def _search_figure(fits: list[TunedMLP]):
    widths = list(dict.fromkeys(c.hidden for c in fits[0].candidates_))
    fig, axes = figures.plt.subplots(1, len(widths), figsize=(4.4 * len(widths), 3.6), squeeze=False, sharey=True)
    for ax, width in zip(axes[0], widths):
        for k, fit in enumerate(fits):
            found = [c for c in fit.candidates_ if c.hidden == width]
            ax.plot([c.weight_decay for c in found], [c.validation_loss for c in found], "-o", ms=3, lw=1, alpha=0.6,
                    color=f"C{k % 10}")
            if fit.choice_.hidden == width:
                ax.plot([fit.choice_.weight_decay], [fit.choice_.validation_loss], "o", ms=10, mfc="none", color="k")
        ax.set_xscale("log")
        ax.set_title(f"hidden {'→'.join(map(str, width))}")
        ax.set_xlabel("weight decay λ")
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("inner validation loss")
    fig.tight_layout()
    return fig


def _final_curves(model: TunedMLP):
    train, valid = model.curves_["train"], model.curves_["valid"]
    fig, ax = figures.plt.subplots(figsize=(5.6, 3.8))
    for k in range(train.shape[1]):
        ax.plot(np.arange(1, len(train) + 1), train[:, k], color=f"C{k}", lw=1, alpha=0.5)
        ax.plot(np.arange(1, len(valid) + 1), valid[:, k], color=f"C{k}", lw=1.4, ls="--")
        best = model.choice_.best_epochs[k]
        if 1 <= best <= len(valid):
            ax.plot([best], [valid[best - 1, k]], "o", color=f"C{k}")
    ax.plot([], [], color="0.3", lw=1, label="training rows")
    ax.plot([], [], color="0.3", lw=1.4, ls="--", label="validation rows")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(f"saved MLP: hidden {list(model.choice_.hidden)}, λ = {model.choice_.weight_decay:g}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _score_rows(comparison: V.Comparison) -> list[tuple[str, ...]]:
    metrics = list(next(iter(comparison.scores.values())))
    rows: list[tuple[str, ...]] = [("model", *metrics)]
    for model, scores in comparison.scores.items():
        rows.append((model + (" (best)" if model == comparison.best else ""), *(scores[m].text() for m in metrics)))
    return rows


def _report(options: TrainOptions, prep: Prepared, metrics: dict[str, Any], comparison: V.Comparison,
            saved: list[tuple[str, str]]) -> str:
    n = len(prep.y)
    parts = [f"# dlc train: '{options.target}' from {Path(options.data).name}\n\n", f"**{comparison.verdict}**\n"]
    parts += [f"\n**Warning.** {w}\n" for w in comparison.losses]
    parts.append(
        f"\nTask: {prep.task}. Rows: {n}. Cross-validation: {prep.plan.name} ({prep.plan.reason}). Every fold's "
        "preprocessing and models were fitted on its training rows only; the MLP's width and weight decay were "
        "chosen inside each training fold, so the scores below are out of fold for every choice made.\n")
    parts.append("\n## Out-of-fold scores\n\nEach metric with its bootstrap 95 % interval over the rows:\n\n"
                 + table(_score_rows(comparison)))
    parts.append("\nPaired differences in " + comparison.main + " (same resampled rows for both models):\n\n"
                 + table([("difference", "value [95 % interval]", "the rows can tell them apart")]
                         + [(f"{comparison.best} − {m}", d.text(), "yes" if V.separated(d) else "no")
                            for m, d in comparison.differences.items()]))
    if metrics.get("small_data"):
        parts.append(f"\n## What {n} rows can support\n\n{metrics['small_data']['text']}\n")
    search = metrics["mlp_search"]
    parts.append(
        f"\n## The MLP\n\n{_search_text(options.search())}. Chosen across the {len(prep.plan.repeats[0])} × "
        f"{len(prep.plan.repeats)} outer training folds: hidden {search['hidden_chosen']}, weight decay "
        f"{search['weight_decay_chosen']}; median best epoch {search['median_best_epoch']:.0f}.\n")
    s = metrics["saved_model"]
    parts.append(f"\n## The saved model\n\n`--model {s['asked']}`: the {s['name']}, fitted on all {n} rows "
                 f"(`model.pt`). Apply it with `dlc predict --model <this folder> --data NEW.csv --out predictions.csv`.\n")
    parts.append("\n## Columns\n\nHow each feature column became numbers (learned from all rows, for the saved model):\n\n")
    parts.append(table(_column_rows(prep.preprocessor)))
    if prep.notes:
        parts.append("\n## Notes\n\n" + "".join(f"- {note}\n" for note in prep.notes))
    if prep.task == "classification":
        classes = metrics["classes"]
        for model, counts in metrics["confusion_matrices"].items():
            rows = [("true \\ predicted", *map(str, classes))] + [(str(c), *map(str, r)) for c, r in zip(classes, counts)]
            parts.append(f"\nConfusion matrix, {model} (out of fold):\n\n" + table(rows))
    if saved:
        parts.append("\n## Figures\n")
        parts += [f"\n![{caption}]({rel})\n\n{caption}\n" for rel, caption in saved]
    parts.append("\n## Config\n\n```json\n" + json.dumps(asdict(options), indent=2) + "\n```\n")
    return "".join(parts)
