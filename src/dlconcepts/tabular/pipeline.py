"""Train a model on the user's own table (`dlc train`) and apply it to new rows (`dlc predict`).

`train` does, in order:

1. read and check everything it can before writing a byte: the file, the columns, the task, the
   folds, and the preprocessing of every fold (`prepare`). Any mistake is a `UserError` and no run
   directory is created;
2. cross-validate (`cross_validate`): for each fold a fresh `TablePreprocessor` and a fresh MLP are
   fitted on the training rows only, and the held-out rows are predicted. The metrics come from
   these out-of-fold predictions, next to a baseline that knows no features (the training fold's
   majority class, or its mean);
3. fit the preprocessing and the MLP on all rows: that is the saved model;
4. write the run directory: config.json, metrics.json, figures/, model.pt, log.txt, report.md.

model.pt is a dict of primitives and one state_dict, loadable with `torch.load(weights_only=True)`:
{"model": state_dict, "estimator": `estimator_state(...)`, "preprocessing": `TablePreprocessor.state()`,
"target": name, "features": [...]}. `load_model` rebuilds the same preprocessor and network from it,
so `dlc predict` gives exactly the predictions of the model that was trained.
"""

from __future__ import annotations

import io
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import balanced_accuracy_score, mean_absolute_error, r2_score, roc_auc_score, roc_curve
from sklearn.model_selection import KFold, LeaveOneOut, StratifiedKFold

from dlconcepts.data.scaling import Standardizer
from dlconcepts.data.tables import (
    Selection,
    TablePreprocessor,
    infer_task,
    leakage_suspects,
    read_table,
    select_columns,
)
from dlconcepts.errors import UserError, did_you_mean
from dlconcepts.estimators import DTYPES, MLPClassifier, MLPRegressor
from dlconcepts.nets.mlp import mlp
from dlconcepts.report import figures
from dlconcepts.report.markdown import plain_table, table
from dlconcepts.runs import Run, atomic_write_text
from dlconcepts.train.metrics import confusion_matrix, rmse

MODEL_FILE = "model.pt"
ESTIMATOR_STATE_VERSION = 1
MAX_FOLD_CURVES = 10  # more fold curves than this make an unreadable legend; then their mean is drawn


@dataclass(frozen=True)
class TrainOptions:
    """What `dlc train` was asked; written to config.json as is."""

    data: str  # the .csv / .xlsx file; only ever read
    target: str  # the column to predict
    features: list[str] | None = None  # None: every other column
    task: str = "auto"  # auto, regression or classification (`infer_task`)
    hidden: tuple[int, ...] = (30, 15)  # hidden layer widths; () for a linear model
    epochs: int = 500  # full-batch Adam steps per fit
    lr: float = 1e-2  # Adam's learning rate
    cv: int | str = 5  # K folds, or "loo" for leave-one-out
    seed: int = 0  # fold shuffling and every fit's initial weights
    sheet: str | None = None  # the Excel sheet; None: the first
    out: str = "runs"  # parent folder of the run directory
    quiet: bool = False  # no progress on the terminal


# --------------------------------------------------------------------------- parsing the command line


def parse_hidden(text: str) -> tuple[int, ...]:
    """'30,15' -> (30, 15); '' or 'none' -> () (a linear model)."""
    if text.strip().lower() in ("", "none"):
        return ()
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        sizes = (0,)
    if any(s < 1 for s in sizes):
        raise UserError(f"--hidden {text!r} is not positive layer widths separated by commas; use e.g. --hidden 30,15")
    return sizes


def parse_cv(text: str) -> int | str:
    """'5' -> 5 folds; 'loo' -> leave-one-out."""
    if text.strip().lower() == "loo":
        return "loo"
    try:
        k = int(text)
    except ValueError:
        k = 0
    if k < 2:
        raise UserError(f"--cv {text!r} is not a number of folds >= 2 or 'loo'; use e.g. --cv 5 or --cv loo")
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


# --------------------------------------------------------------------------- 1. everything checked before writing


@dataclass
class Fold:
    train: np.ndarray  # row positions
    test: np.ndarray
    X_train: np.ndarray  # preprocessed by a preprocessor fitted on `train` only
    X_test: np.ndarray


@dataclass
class Prepared:
    selection: Selection
    task: str
    y: np.ndarray  # class labels (classification) or float64 values (regression)
    cv_name: str
    folds: list[Fold]
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
    splitter, cv_name = _splitter(options.cv, task, y, options.seed)
    folds = []
    for k, (train, test) in enumerate(splitter.split(X, y if task == "classification" else None), start=1):
        fold_pre = TablePreprocessor().fit(selection.X.iloc[train])
        try:
            X_test = fold_pre.transform(selection.X.iloc[test])
        except UserError as exc:
            raise UserError(
                f"cross-validation fold {k}: {exc}; a value that occurs in very few rows may be held out of a whole "
                "training fold: merge rare values or use fewer folds"
            ) from None
        X_train = fold_pre.transform(selection.X.iloc[train])
        folds.append(Fold(train, test, X_train, X_test))
    return Prepared(selection, task, y, cv_name, folds, preprocessor, X, notes)


def _target_values(y: pd.Series, task: str) -> np.ndarray:
    if task == "regression":
        return pd.to_numeric(y).to_numpy(dtype=np.float64)  # infer_task checked every value is a number
    if pd.api.types.is_numeric_dtype(y) or pd.api.types.is_bool_dtype(y):
        return y.to_numpy()
    return y.astype(str).to_numpy()  # mixed text and numbers: all labels as text, so they sort


def _splitter(cv: int | str, task: str, y: np.ndarray, seed: int):
    n = len(y)
    if cv == "loo":
        if n < 2:
            raise UserError(f"the table has {n} row; cross-validation needs at least 2 rows — add rows")
        return LeaveOneOut(), f"leave-one-out ({n} folds)"
    k = int(cv)
    if n < k:
        raise UserError(f"the table has {n} rows, fewer than the {k} folds of --cv {k}; use --cv {n} or fewer, or --cv loo")
    if task == "classification":
        labels, counts = np.unique(y, return_counts=True)
        smallest = int(counts.argmin())
        if counts[smallest] < k:
            raise UserError(
                f"class '{labels[smallest]}' of the target has {counts[smallest]} rows, fewer than the {k} folds of --cv {k}; "
                f"stratified folds need one per fold — use --cv {max(2, int(counts[smallest]))} or --cv loo"
            )
        return StratifiedKFold(k, shuffle=True, random_state=seed), f"{k}-fold stratified, shuffled with seed {seed}"
    return KFold(k, shuffle=True, random_state=seed), f"{k}-fold, shuffled with seed {seed}"


# --------------------------------------------------------------------------- 2. cross-validation


def make_estimator(task: str, options: TrainOptions) -> MLPClassifier | MLPRegressor:
    kind = MLPClassifier if task == "classification" else MLPRegressor
    return kind(hidden=options.hidden, lr=options.lr, epochs=options.epochs, random_state=options.seed)


@dataclass
class CrossValidation:
    predictions: np.ndarray  # out-of-fold prediction of every row
    probabilities: np.ndarray | None  # (rows, classes) out-of-fold, classification only
    baseline: np.ndarray  # out-of-fold prediction of the training fold's majority class / mean
    loss_curves: list[list[float]]  # each fold's training loss per epoch (standardized units)
    classes: np.ndarray | None
    folds_missing_a_class: int  # folds whose training rows lacked some class


def cross_validate(prep: Prepared, options: TrainOptions, log: Callable[[str], None]) -> CrossValidation:
    n = len(prep.y)
    classification = prep.task == "classification"
    classes = np.unique(prep.y) if classification else None
    predictions = np.empty(n, dtype=prep.y.dtype)
    baseline = np.empty(n, dtype=prep.y.dtype)
    probabilities = np.zeros((n, len(classes))) if classification else None
    curves, missing = [], 0
    for k, fold in enumerate(prep.folds, start=1):
        y_train = prep.y[fold.train]
        estimator = make_estimator(prep.task, options).fit(fold.X_train, y_train)
        predictions[fold.test] = estimator.predict(fold.X_test)
        if classification:
            # a training fold without some class gives fewer probability columns; put them in place
            columns = np.searchsorted(classes, estimator.classes_)
            probabilities[np.ix_(fold.test, columns)] = estimator.predict_proba(fold.X_test)
            missing += len(estimator.classes_) < len(classes)
            labels, counts = np.unique(y_train, return_counts=True)
            baseline[fold.test] = labels[counts.argmax()]  # ties: the first label in sorted order
        else:
            baseline[fold.test] = y_train.mean()
        curves.append(list(estimator.loss_curve_))
        if len(prep.folds) <= 20 or k % 10 == 0 or k == len(prep.folds):
            log(f"  fold {k}/{len(prep.folds)}: {len(fold.train)} training rows, {len(fold.test)} held out, "
                f"final training loss {estimator.loss_curve_[-1]:.4g}")
    return CrossValidation(predictions, probabilities, baseline, curves, classes, missing)


def cv_metrics(prep: Prepared, cv: CrossValidation) -> dict[str, Any]:
    """Metrics of the out-of-fold predictions, the model's beside the baseline's."""
    y = prep.y
    if prep.task == "regression":
        def scores(pred: np.ndarray) -> dict[str, float]:
            return {"mae": float(mean_absolute_error(y, pred)), "rmse": rmse(pred, y), "r2": float(r2_score(y, pred))}

        return {"model": scores(cv.predictions), "baseline": scores(cv.baseline), "notes": []}
    classes = cv.classes
    notes: list[str] = []

    def scores(pred: np.ndarray) -> dict[str, float]:
        return {"accuracy": float(np.mean(pred == y)), "balanced_accuracy": float(balanced_accuracy_score(y, pred))}

    model = scores(cv.predictions)
    if cv.folds_missing_a_class:
        model["roc_auc"] = None
        notes.append(f"ROC AUC not computed: the training rows of {cv.folds_missing_a_class} fold(s) lacked a class, "
                     "so those folds give no probability for it")
    elif len(classes) == 2:
        model["roc_auc"] = float(roc_auc_score(y == classes[1], cv.probabilities[:, 1]))
    else:
        model["roc_auc"] = float(roc_auc_score(y, cv.probabilities, multi_class="ovr", average="macro", labels=classes))
        notes.append("ROC AUC is one-vs-rest, averaged over the classes (macro)")
    index = np.searchsorted(classes, y), np.searchsorted(classes, cv.predictions)
    model["confusion_matrix"] = confusion_matrix(*index, len(classes)).tolist()
    return {"model": model, "baseline": {**scores(cv.baseline), "roc_auc": 0.5}, "classes": classes.tolist(), "notes": notes}


# --------------------------------------------------------------------------- 3. the saved model


def estimator_state(estimator: MLPClassifier | MLPRegressor) -> dict[str, Any]:
    """The fitted estimator as primitives (its network's weights go separately, as a state_dict)."""
    linear = [m for m in estimator.model_ if isinstance(m, torch.nn.Linear)]
    state = {
        "version": ESTIMATOR_STATE_VERSION,
        "task": "classification" if isinstance(estimator, MLPClassifier) else "regression",
        "hyperparameters": {k: (list(v) if isinstance(v, tuple) else v) for k, v in estimator.get_params().items()},
        "layer_sizes": [linear[0].in_features, *(m.out_features for m in linear)],
        "n_features_in": int(estimator.n_features_in_),
        "x_scaler": estimator.x_scaler_.state(),
    }
    if isinstance(estimator, MLPClassifier):
        state["classes"] = estimator.classes_.tolist()
    else:
        state["y_scaler"] = estimator.y_scaler_.state()
        state["n_outputs"] = int(estimator.n_outputs_)
    return state


def estimator_from_state(state: dict[str, Any], weights: dict[str, torch.Tensor]) -> MLPClassifier | MLPRegressor:
    """The fitted estimator `estimator_state` described, with the network `nets.mlp` builds."""
    params = dict(state["hyperparameters"])
    params["hidden"] = tuple(params["hidden"]) if isinstance(params["hidden"], list) else params["hidden"]
    classification = state["task"] == "classification"
    estimator = (MLPClassifier if classification else MLPRegressor)(**params)
    estimator.n_features_in_ = state["n_features_in"]
    estimator.x_scaler_ = _scaler(state["x_scaler"])
    if classification:
        estimator.classes_ = np.array(state["classes"])
    else:
        estimator.y_scaler_ = _scaler(state["y_scaler"])
        estimator.n_outputs_ = state["n_outputs"]
        estimator._y_1d = True  # dlc train fits one target column
    model = mlp(state["layer_sizes"], params["activation"], dropout=params["dropout"]).to(DTYPES[params["dtype"]])
    model.load_state_dict(weights)
    estimator.model_ = model.eval()
    return estimator


def _scaler(state: dict[str, list[float]]) -> Standardizer:
    scaler = Standardizer()  # Identity shares transform/inverse_transform: only mean_ and scale_ matter
    scaler.mean_, scaler.scale_ = np.asarray(state["mean"], dtype=np.float64), np.asarray(state["scale"], dtype=np.float64)
    return scaler


@dataclass
class SavedModel:
    preprocessor: TablePreprocessor
    estimator: MLPClassifier | MLPRegressor
    target: str
    features: list[str]


def load_model(run_dir: str | Path) -> SavedModel:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"model directory '{run_dir}' does not exist; give the run directory that dlc train printed")
    path = run_dir / MODEL_FILE
    if not path.is_file():
        raise UserError(f"'{run_dir}' has no {MODEL_FILE}; give a run directory written by dlc train")
    try:
        saved = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:  # a truncated or foreign file: torch raises many kinds
        raise UserError(f"'{path}' could not be loaded ({type(exc).__name__}); retrain with dlc train") from None
    if not isinstance(saved, dict) or not {"model", "estimator", "preprocessing", "target", "features"} <= set(saved):
        raise UserError(f"'{path}' is not a model written by dlc train (a lab's model.pt cannot predict tables); retrain with dlc train")
    if saved["estimator"].get("version") != ESTIMATOR_STATE_VERSION:
        raise UserError(f"'{path}' comes from another version of dlc; retrain the model with dlc train")
    return SavedModel(
        TablePreprocessor.from_state(saved["preprocessing"]),
        estimator_from_state(saved["estimator"], saved["model"]),
        saved["target"],
        list(saved["features"]),
    )


# --------------------------------------------------------------------------- dlc train


@dataclass
class TrainOutcome:
    run: Run
    estimator: MLPClassifier | MLPRegressor  # fitted on all rows: the saved one
    preprocessor: TablePreprocessor
    metrics: dict[str, Any]


def train(options: TrainOptions) -> TrainOutcome:
    start = time.perf_counter()
    prep = prepare(options)  # nothing is written before this passes
    run = Run.create(options.out, "train", quiet=options.quiet)
    run.write_json("config.json", {"command": "train", **asdict(options)})
    features = list(prep.selection.X.columns)
    run.log(f"dlc train: {options.data} -> {run.path}")
    run.log(f"  target '{options.target}' ({prep.task}), {len(prep.y)} rows, {len(features)} feature columns")
    run.log(plain_table(_column_rows(prep.preprocessor)).rstrip("\n"))
    for note in prep.notes:
        run.log(f"  note: {note}")
    hidden = "→".join(map(str, (prep.X.shape[1], *options.hidden, _outputs(prep))))
    run.log(f"  MLP {hidden}, Adam lr {options.lr}, {options.epochs} epochs; cross-validation: {prep.cv_name}")
    try:
        cv = cross_validate(prep, options, run.log)
        metrics = cv_metrics(prep, cv)
        final = make_estimator(prep.task, options).fit(prep.X, prep.y)
    except UserError as exc:  # a diverged fit: the log keeps why
        run.log(f"error: {exc}", echo=False)
        raise
    run.save_model({
        "model": final.model_.state_dict(),
        "estimator": estimator_state(final),
        "preprocessing": prep.preprocessor.state(),
        "target": options.target,
        "features": features,
    })
    _save_figures(run, prep, cv, final)
    metrics = {"task": prep.task, "target": options.target, "rows": len(prep.y), "cv": prep.cv_name, **metrics,
               "final_training_loss": float(final.loss_curve_[-1]), "seconds": time.perf_counter() - start}
    run.write_json("metrics.json", metrics)
    run.write_text("report.md", _report(options, prep, metrics, run.figures))
    run.log(f"  {_headline(metrics)}")
    run.log(f"dlc train: done in {metrics['seconds']:.1f} s")
    return TrainOutcome(run, final, prep.preprocessor, metrics)


def _outputs(prep: Prepared) -> int:
    return len(np.unique(prep.y)) if prep.task == "classification" else 1


def _column_rows(preprocessor: TablePreprocessor) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = [("column", "type", "missing", "handling")]
    rows += [(str(r["name"]), str(r["type"]), str(r["missing"]), str(r["handling"])) for r in preprocessor.report()]
    return rows


def _headline(metrics: dict[str, Any]) -> str:
    m, b = metrics["model"], metrics["baseline"]
    if metrics["task"] == "regression":
        return f"cross-validated MAE {m['mae']:.4g} (baseline {b['mae']:.4g}), RMSE {m['rmse']:.4g}, R² {m['r2']:.3f}"
    auc = "n/a" if m["roc_auc"] is None else f"{m['roc_auc']:.3f}"
    return (f"cross-validated accuracy {m['accuracy']:.3f} (baseline {b['accuracy']:.3f}), "
            f"balanced accuracy {m['balanced_accuracy']:.3f} (baseline {b['balanced_accuracy']:.3f}), ROC AUC {auc}")


def _metric_rows(metrics: dict[str, Any]) -> list[tuple[str, ...]]:
    baseline = "mean of the training fold" if metrics["task"] == "regression" else "majority class of the training fold"
    rows: list[tuple[str, ...]] = [("metric", "MLP (out-of-fold)", f"baseline: {baseline}")]
    for name, value in metrics["model"].items():
        if name == "confusion_matrix":
            continue
        base = metrics["baseline"].get(name)
        rows.append((name, "n/a" if value is None else f"{value:.4g}", "" if base is None else f"{base:.4g}"))
    return rows


# --------------------------------------------------------------------------- figures and report


def _save_figures(run: Run, prep: Prepared, cv: CrossValidation, final: MLPClassifier | MLPRegressor) -> None:
    if prep.task == "regression":
        run.save_figure(_predicted_vs_actual(prep.y, cv.predictions, prep.selection.y.name),
                        "predicted_vs_actual", "Out-of-fold predictions against the true values; on the diagonal they are exact.")
    else:
        labels = [str(c) for c in cv.classes]
        counts = np.asarray(confusion_matrix(np.searchsorted(cv.classes, prep.y), np.searchsorted(cv.classes, cv.predictions), len(labels)))
        run.save_figure(figures.confusion_matrix_figure(counts, labels, "out-of-fold confusion matrix"),
                        "confusion_matrix", "Out-of-fold predictions: rows are the true class, columns the predicted one.")
        if not cv.folds_missing_a_class:
            run.save_figure(_roc(prep.y, cv.probabilities, cv.classes), "roc_curve",
                            "ROC curve of the out-of-fold probabilities; the dashed diagonal is guessing.")
    panel: dict[str, list[float]] = {"final fit (all rows)": list(final.loss_curve_)}
    if len(cv.loss_curves) <= MAX_FOLD_CURVES:
        panel.update({f"fold {k}": c for k, c in enumerate(cv.loss_curves, start=1)})
    else:
        panel[f"mean of the {len(cv.loss_curves)} folds"] = list(np.mean(cv.loss_curves, axis=0))
    loss = "cross-entropy" if prep.task == "classification" else "MSE (standardized target)"
    run.save_figure(figures.curves({"training loss": panel}, log_y=True, ylabels=[loss]),
                    "loss_curves", "Training loss per epoch of each fold's model and of the final model.")


def _predicted_vs_actual(y: np.ndarray, predicted: np.ndarray, name: str):
    fig, ax = figures.plt.subplots(figsize=(4.4, 4.2))
    ax.scatter(y, predicted, s=22, alpha=0.8)
    low, high = float(min(y.min(), predicted.min())), float(max(y.max(), predicted.max()))
    ax.plot([low, high], [low, high], "k--", lw=1, label="predicted = actual")
    ax.set_xlabel(f"actual {name}")
    ax.set_ylabel(f"predicted {name} (out-of-fold)")
    ax.set_title("predicted vs actual")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _roc(y: np.ndarray, probabilities: np.ndarray, classes: np.ndarray):
    fig, ax = figures.plt.subplots(figsize=(4.4, 4.2))
    shown = [1] if len(classes) == 2 else range(len(classes))  # binary: one curve, for the second class
    for i in shown:
        fpr, tpr, _ = roc_curve(y == classes[i], probabilities[:, i])
        ax.plot(fpr, tpr, lw=1.6, label=f"class {classes[i]}" + (" vs rest" if len(classes) > 2 else ""))
    ax.plot([0, 1], [0, 1], "k--", lw=1)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC curve (out-of-fold)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def _report(options: TrainOptions, prep: Prepared, metrics: dict[str, Any], saved: list[tuple[str, str]]) -> str:
    parts = [f"# dlc train: '{options.target}' from {Path(options.data).name}\n\n",
             f"Task: {prep.task}. Rows: {len(prep.y)}. Cross-validation: {prep.cv_name}. "
             f"Model: MLP with hidden layers {list(options.hidden)}, Adam lr {options.lr}, {options.epochs} epochs, "
             f"seed {options.seed}. Every fold's preprocessing and network were fitted on its training rows only.\n",
             "\n## Columns\n\nHow each feature column became numbers (learned from all rows, for the saved model):\n\n",
             table(_column_rows(prep.preprocessor))]
    notes = prep.notes + metrics["notes"]
    if notes:
        parts.append("\n## Notes\n\n" + "".join(f"- {n}\n" for n in notes))
    parts.append("\n## Cross-validated metrics\n\n" + table(_metric_rows(metrics)))
    if prep.task == "classification":
        classes = metrics["classes"]
        rows = [("true \\ predicted", *map(str, classes))]
        rows += [(str(c), *map(str, counts)) for c, counts in zip(classes, metrics["model"]["confusion_matrix"])]
        parts.append("\nConfusion matrix (out-of-fold):\n\n" + table(rows))
    if saved:
        parts.append("\n## Figures\n")
        parts += [f"\n![{caption}]({rel})\n\n{caption}\n" for rel, caption in saved]
    parts.append("\n## Use the model\n\n`dlc predict --model <this folder> --data NEW.csv --out predictions.csv`\n")
    parts.append("\n## Config\n\n```json\n" + json.dumps(asdict(options), indent=2) + "\n```\n")
    return "".join(parts)


# --------------------------------------------------------------------------- dlc predict


def predict_table(run_dir: str | Path, data: str | Path, sheet: str | None = None) -> pd.DataFrame:
    """Predictions for every row of `data`: a `prediction` column (and `probability_<class>` for classifiers).

    The table must hold every feature the model was trained on; other columns (an id, the target) are ignored.
    """
    model = load_model(run_dir)
    frame = read_table(data, sheet)
    given = [str(c) for c in frame.columns]
    lacking = [f for f in model.features if f not in given]
    if lacking:
        others = [c for c in given if c not in model.features]
        names = ", ".join(f"'{f}'" for f in lacking)
        raise UserError(
            f"the model was trained on columns {', '.join(repr(f) for f in model.features)}; this table lacks {names}"
            f"{did_you_mean(lacking[0], others)} — give a table with those columns"
        )
    frame.columns = given
    X = model.preprocessor.transform(frame[model.features])
    out = pd.DataFrame({"prediction": model.estimator.predict(X)})
    if isinstance(model.estimator, MLPClassifier):
        for c, p in zip(model.estimator.classes_, model.estimator.predict_proba(X).T):
            out[f"probability_{c}"] = p
    return out


def write_predictions(predictions: pd.DataFrame, out: str | Path | None) -> str:
    """The predictions as CSV text; also written atomically to `out` when given."""
    buffer = io.StringIO()
    predictions.to_csv(buffer, index=False, float_format="%.17g")  # every bit, so a re-read is exact
    text = buffer.getvalue()
    if out is not None:
        try:
            atomic_write_text(out, text)
        except OSError as exc:
            raise UserError(f"cannot write '{out}': {exc.strerror or exc}; choose another --out") from None
    return text
