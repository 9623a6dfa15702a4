"""Honest scores for models of a table: the one home of cross-validation, baselines and bootstrap intervals.

`dlc train` and the gait lab both call this module, so a fold, an out-of-fold prediction or an
interval means the same thing everywhere:

* `plan_cv` — which cross-validation: K folds, leave-one-out, or, chosen by row count under
  `--cv auto`, repeated K-fold (`SMALL_TABLE`, `MEDIUM_TABLE` below say where and why);
* `make_folds` — each fold's preprocessing (`TablePreprocessor`) fitted on that fold's training rows only;
* `out_of_fold` — every row predicted by models that never saw it (averaged over repeats);
* `baselines` — the models a network must beat, fitted on the same folds: the constant model (the
  training rows' mean, or class frequencies) and a regularized linear model whose penalty is chosen
  by an inner cross-validation (ridge or logistic regression, scikit-learn's `RidgeCV` and
  `LogisticRegressionCV`);
* `interval`, `paired_difference` — percentile bootstrap 95 % intervals over the rows
  (`scipy.stats.bootstrap`); a difference between two models is resampled paired, the same rows for both;
* `compare` — every model's metrics with intervals, the best model by the main metric, the paired
  difference to each other model, and the sentence that says it.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV, RidgeCV
from sklearn.model_selection import KFold, LeaveOneOut, RepeatedKFold, RepeatedStratifiedKFold, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from dlconcepts.data.tables import TablePreprocessor
from dlconcepts.errors import UserError

# --cv auto: below SMALL_TABLE rows every fit may keep all rows but one (leave-one-out: no shuffle to be
# lucky or unlucky with, and a fold of 1/5 of 25 rows would leave a model 20 to learn from); below
# MEDIUM_TABLE rows one 5-fold cut moves a score by several points from shuffle to shuffle, so each row's
# prediction is averaged over REPEATS shuffles; from MEDIUM_TABLE rows on, one shuffled 5-fold cut.
SMALL_TABLE = 30
MEDIUM_TABLE = 200
REPEATS = 5
FOLDS = 5
N_BOOT = 2000  # bootstrap resamples per interval
LEVEL = 0.95


# --------------------------------------------------------------------------- which cross-validation


@dataclass(frozen=True)
class CVPlan:
    """The outer cross-validation: `repeats` lists of (train rows, test rows), each list covering every row once."""

    name: str  # e.g. "5-fold stratified, shuffled with seed 0"
    reason: str  # why this plan; for --cv auto, the rule that chose it
    repeats: list[list[tuple[np.ndarray, np.ndarray]]]

    @property
    def n_fits(self) -> int:
        return sum(len(r) for r in self.repeats)


def plan_cv(cv: int | str, task: str, y: np.ndarray, seed: int) -> CVPlan:
    """`cv` is K (folds), "loo" or "auto" (chosen from the row count: module docstring)."""
    n = len(y)
    if n < 2:
        raise UserError(f"the table has {n} row; cross-validation needs at least 2 rows — add rows")
    smallest = int(np.unique(y, return_counts=True)[1].min()) if task == "classification" else n
    if cv == "auto":
        if n < SMALL_TABLE:
            return _loo(n, f"--cv auto: {n} rows (< {SMALL_TABLE}), so every model learns from all rows but one")
        k = FOLDS if task == "regression" else max(2, min(FOLDS, smallest))
        if task == "classification" and smallest < 2:
            return _loo(n, f"--cv auto: a class has {smallest} row, too few to stratify folds")
        if n < MEDIUM_TABLE:
            return repeated_plan(k, REPEATS, task, y, seed,
                             f"--cv auto: {n} rows (< {MEDIUM_TABLE}), so each row's prediction is averaged over "
                             f"{REPEATS} shuffles of {k} folds instead of resting on one cut")
        return _single(k, task, y, seed, f"--cv auto: {n} rows (≥ {MEDIUM_TABLE}), one shuffled {k}-fold cut")
    if cv == "loo":
        return _loo(n, "--cv loo")
    k = int(cv)
    if n < k:
        raise UserError(f"the table has {n} rows, fewer than the {k} folds of --cv {k}; use --cv {n} or fewer, or --cv loo")
    if task == "classification" and smallest < k:
        labels, counts = np.unique(y, return_counts=True)
        raise UserError(
            f"class '{labels[counts.argmin()]}' of the target has {smallest} rows, fewer than the {k} folds of --cv {k}; "
            f"stratified folds need one per fold — use --cv {max(2, smallest)} or --cv loo"
        )
    return _single(k, task, y, seed, f"--cv {k}")


def _loo(n: int, reason: str) -> CVPlan:
    return CVPlan(f"leave-one-out ({n} folds)", reason, [list(LeaveOneOut().split(np.zeros(n)))])


def _single(k: int, task: str, y: np.ndarray, seed: int, reason: str) -> CVPlan:
    if task == "classification":
        splits = StratifiedKFold(k, shuffle=True, random_state=seed).split(np.zeros(len(y)), y)
        return CVPlan(f"{k}-fold stratified, shuffled with seed {seed}", reason, [list(splits)])
    splits = KFold(k, shuffle=True, random_state=seed).split(np.zeros(len(y)))
    return CVPlan(f"{k}-fold, shuffled with seed {seed}", reason, [list(splits)])


def repeated_plan(k: int, repeats: int, task: str, y: np.ndarray, seed: int, reason: str = "asked for") -> CVPlan:
    kind = RepeatedStratifiedKFold if task == "classification" else RepeatedKFold
    splits = list(kind(n_splits=k, n_repeats=repeats, random_state=seed).split(np.zeros(len(y)), y))
    stratified = " stratified" if task == "classification" else ""
    return CVPlan(f"{k}-fold{stratified} × {repeats} repeats, shuffled with seed {seed}", reason,
                  [splits[r * k:(r + 1) * k] for r in range(repeats)])


# --------------------------------------------------------------------------- folds and out-of-fold predictions


@dataclass
class Fold:
    train: np.ndarray  # row positions
    test: np.ndarray
    X_train: np.ndarray  # preprocessed by a TablePreprocessor fitted on `train` only
    X_test: np.ndarray


def make_folds(frame: pd.DataFrame, plan: CVPlan) -> list[list[Fold]]:
    """Each repeat's folds, every fold with its own preprocessing fitted on its training rows only."""
    out = []
    for splits in plan.repeats:
        folds = []
        for k, (train, test) in enumerate(splits, start=1):
            pre = TablePreprocessor().fit(frame.iloc[train])
            try:
                X_test = pre.transform(frame.iloc[test])
            except UserError as exc:
                raise UserError(
                    f"cross-validation fold {k}: {exc}; a value that occurs in very few rows may be held out of a whole "
                    "training fold: merge rare values or use fewer folds"
                ) from None
            folds.append(Fold(train, test, pre.transform(frame.iloc[train]), X_test))
        out.append(folds)
    return out


@dataclass
class OutOfFold:
    """Every row's prediction from models that never saw it; with repeats, averaged over them."""

    predictions: np.ndarray  # regression: values; classification: labels (argmax of `probabilities`)
    probabilities: np.ndarray | None  # (rows, classes), columns in the order of `classes`
    classes: np.ndarray | None
    fits: list[Any] = field(default_factory=list)  # every fold's fitted model, in order
    folds_missing_a_class: int = 0  # classification: folds whose training rows lacked some class


ModelFactory = Callable[[np.ndarray], Any]  # training targets -> an unfitted scikit-learn-style model


def out_of_fold(make_model: ModelFactory, folds: list[list[Fold]], y: np.ndarray, task: str,
                on_fold: Callable[[], None] | None = None) -> OutOfFold:
    """Fit a fresh model on each fold's training rows and predict its held-out rows."""
    n = len(y)
    classes = np.unique(y) if task == "classification" else None
    total = np.zeros((n, len(classes))) if task == "classification" else np.zeros(n)
    counts = np.zeros(n)
    fits, missing = [], 0
    for repeat in folds:
        for fold in repeat:
            model = make_model(y[fold.train]).fit(fold.X_train, y[fold.train])
            if task == "classification":
                # a training fold without some class gives fewer probability columns: put them in place
                columns = np.searchsorted(classes, model.classes_)
                total[np.ix_(fold.test, columns)] += model.predict_proba(fold.X_test)
                missing += len(model.classes_) < len(classes)
            else:
                total[fold.test] += model.predict(fold.X_test)
            counts[fold.test] += 1
            fits.append(model)
            if on_fold is not None:
                on_fold()
    if task == "classification":
        probabilities = total / counts[:, None]
        return OutOfFold(classes[probabilities.argmax(axis=1)], probabilities, classes, fits, missing)
    return OutOfFold(total / counts, None, None, fits, 0)


# --------------------------------------------------------------------------- baselines


def constant_model(task: str) -> ModelFactory:
    """The model that ignores the features: the training rows' mean, or their majority class, given
    probability 1. (Their class frequencies as probabilities would rank the rows by fold: a fold holding out
    rows of a class learned that class from fewer rows, so under leave-one-out every held-out row of a class
    scores below the others and the ROC AUC is 0 — an artifact, not a baseline. One constant score gives
    every row the same rank: AUC 0.5.)"""
    return lambda y: (DummyClassifier(strategy="most_frequent") if task == "classification"
                      else DummyRegressor(strategy="mean"))


def linear_model(task: str, seed: int = 0) -> ModelFactory:
    """Ridge or logistic regression on standardized inputs, the L2 penalty chosen by inner cross-validation:
    RidgeCV by efficient leave-one-out over 13 strengths 10⁻³…10³, LogisticRegressionCV by stratified
    folds (up to 5, as many as the smallest class allows) over 7 values of C, 10⁻³…10³, by log loss
    (one per decade: 13 cost 1.6× the time, 0.18 s a fit on 23 rows, for no change in the choice there)."""
    alphas = np.logspace(-3, 3, 13)

    def make(y: np.ndarray):
        if task == "regression":
            return make_pipeline(StandardScaler(), RidgeCV(alphas=alphas))
        smallest = int(np.unique(y, return_counts=True)[1].min())
        if smallest < 2:  # one row of a class cannot sit on both sides of a fold: scikit-learn's default C
            return make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
        folds = StratifiedKFold(min(5, smallest), shuffle=True, random_state=seed)
        return make_pipeline(StandardScaler(), LogisticRegressionCV(Cs=np.logspace(-3, 3, 7), cv=folds, scoring="neg_log_loss",
                                                                    max_iter=5000, **_LOGISTIC_CV_QUIET))

    return make


# scikit-learn 1.9 warns that two defaults of LogisticRegressionCV will change; these values keep today's
# pure L2 penalty and silence the warnings. Older versions lack the parameters (and the warnings).
_LOGISTIC_CV_QUIET = {k: v for k, v in {"l1_ratios": (0.0,), "use_legacy_attributes": False}.items()
                      if k in inspect.signature(LogisticRegressionCV).parameters}


def linear_name(task: str) -> str:
    return "logistic regression" if task == "classification" else "ridge regression"


def constant_name(task: str) -> str:
    return "majority class" if task == "classification" else "mean"


# --------------------------------------------------------------------------- metrics and intervals


# Each metric below is a function of which rows count: `rows` is an index array (n,) or a batch of
# resamples (resamples, n), and the metric of each resample comes back, computed for the whole batch at
# once. scikit-learn's metrics give the same numbers (tests/tabular/test_validation.py checks each) but one
# resample per call, with input checks that cost more than the metric: 2000 resamples of balanced
# accuracy took 4.4 s through `balanced_accuracy_score` and take milliseconds here.
Metric = Callable[[np.ndarray], np.ndarray]


def r2_metric(y: np.ndarray, predicted: np.ndarray) -> Metric:
    """R² = 1 − Σ(y − ŷ)² / Σ(y − ȳ)² over the rows; NaN where the rows' y do not vary."""
    def metric(rows: np.ndarray) -> np.ndarray:
        t, p = y[rows], predicted[rows]
        total = np.sum((t - t.mean(axis=-1, keepdims=True)) ** 2, axis=-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(total > 0, 1 - np.sum((t - p) ** 2, axis=-1) / total, np.nan)

    return metric


def mae_metric(y: np.ndarray, predicted: np.ndarray) -> Metric:
    return lambda rows: np.mean(np.abs(y[rows] - predicted[rows]), axis=-1)


def rmse_metric(y: np.ndarray, predicted: np.ndarray) -> Metric:
    return lambda rows: np.sqrt(np.mean((y[rows] - predicted[rows]) ** 2, axis=-1))


def accuracy_metric(y: np.ndarray, label: np.ndarray) -> Metric:
    right = (y == label).astype(np.float64)
    return lambda rows: np.mean(right[rows], axis=-1)


def balanced_accuracy_metric(y: np.ndarray, label: np.ndarray) -> Metric:
    """The mean over the classes present in the rows of each class's recall (scikit-learn's definition)."""
    classes = np.unique(y)

    def metric(rows: np.ndarray) -> np.ndarray:
        t, p = y[rows], label[rows]
        recalls, present = [], []
        for c in classes:
            count = np.sum(t == c, axis=-1)
            with np.errstate(divide="ignore", invalid="ignore"):
                recalls.append(np.where(count > 0, np.sum((t == c) & (p == c), axis=-1) / count, 0.0))
            present.append(count > 0)
        return np.sum(recalls, axis=0) / np.sum(present, axis=0)

    return metric


def recall_metric(y: np.ndarray, label: np.ndarray, cls: Any) -> Metric:
    """The share of the rows of class `cls` predicted as `cls` (sensitivity for the positive class,
    specificity for the negative); NaN where the rows hold none of it."""
    def metric(rows: np.ndarray) -> np.ndarray:
        of_class = y[rows] == cls
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.sum(of_class & (label[rows] == cls), axis=-1) / np.sum(of_class, axis=-1)

    return metric


def roc_auc_metric(positive: np.ndarray, score: np.ndarray) -> Metric:
    """P(a positive row scores above a negative one), ties half: the Mann–Whitney U over the pair count,
    from average ranks; NaN where the rows hold one class only."""
    positive = positive.astype(bool)

    def metric(rows: np.ndarray) -> np.ndarray:
        pos = positive[rows]
        n_pos = pos.sum(axis=-1).astype(np.float64)
        n_neg = pos.shape[-1] - n_pos
        ranks = stats.rankdata(score[rows], axis=-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            return (np.sum(ranks * pos, axis=-1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)

    return metric


def macro_roc_auc_metric(y: np.ndarray, probabilities: np.ndarray, classes: np.ndarray) -> Metric:
    """One-vs-rest ROC AUC averaged over the classes (macro), NaN where some class is absent from the rows."""
    per_class = [roc_auc_metric(y == c, probabilities[:, i]) for i, c in enumerate(classes)]
    return lambda rows: np.mean([m(rows) for m in per_class], axis=0)


def metric_functions(task: str, y: np.ndarray, oof: OutOfFold) -> dict[str, Metric]:
    """Each metric of the out-of-fold predictions, as a function of which rows count (for the bootstrap)."""
    if task == "regression":
        p = oof.predictions
        return {"R²": r2_metric(y, p), "MAE": mae_metric(y, p), "RMSE": rmse_metric(y, p)}
    out = {"accuracy": accuracy_metric(y, oof.predictions), "balanced accuracy": balanced_accuracy_metric(y, oof.predictions)}
    if oof.folds_missing_a_class:  # some folds gave no probability for a class: no ranking to judge
        return out
    if len(oof.classes) == 2:
        out["ROC AUC"] = roc_auc_metric(y == oof.classes[1], oof.probabilities[:, 1])
    else:
        out["ROC AUC"] = macro_roc_auc_metric(y, oof.probabilities, oof.classes)
    return out


MAIN_METRIC = {"regression": "R²", "classification": "accuracy"}


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float

    def text(self, digits: int = 3) -> str:
        if not np.isfinite(self.value):
            return "n/a"
        if not (np.isfinite(self.low) and np.isfinite(self.high)):
            return f"{self.value:.{digits}f}"
        return f"{self.value:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"

    def as_dict(self) -> dict[str, float]:
        return {"value": self.value, "low": self.low, "high": self.high}


def interval(metric: Metric, n: int, n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL) -> Interval:
    """`metric` on all n rows, with a percentile bootstrap interval over the rows (Efron & Tibshirani 1993,
    ch. 13), resampled by `scipy.stats.bootstrap`.

    The same seed and n draw the same resamples, so intervals of two models (and their paired
    difference) rest on the same resampled rows. A resample on which the metric is undefined (NaN:
    ROC AUC of a resample holding one class) is left out of the percentiles. The interval reflects
    which rows happened to be drawn; the randomness of training stays fixed.
    """
    rows = np.arange(n)
    value = float(metric(rows))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns about NaN in the distribution; they are dropped below
        result = stats.bootstrap((rows,), lambda r, axis=-1: metric(r), n_resamples=n_boot, vectorized=True,
                                 batch=max(1, 2_000_000 // n), method="percentile", confidence_level=level,
                                 rng=np.random.default_rng(seed))
    values = result.bootstrap_distribution[np.isfinite(result.bootstrap_distribution)]
    if len(values) == 0:
        return Interval(value, float("nan"), float("nan"))
    low, high = np.percentile(values, [50 * (1 - level), 50 * (1 + level)])
    return Interval(value, float(low), float(high))


def paired_difference(metric_a: Metric, metric_b: Metric, n: int, n_boot: int = N_BOOT, seed: int = 0) -> Interval:
    """metric(a) − metric(b) with a paired bootstrap interval: both scored on the same resampled rows."""
    return interval(lambda r: metric_a(r) - metric_b(r), n, n_boot, seed)


def separated(diff: Interval) -> bool:
    """Whether the interval of a difference excludes 0: the rows can tell the two models apart."""
    return bool(diff.low > 0 or diff.high < 0)


# --------------------------------------------------------------------------- comparing the models


@dataclass
class Comparison:
    """Every model's out-of-fold metrics with intervals, and what they say about each other."""

    main: str  # the metric that decides, R² or accuracy
    scores: dict[str, dict[str, Interval]]  # model -> metric -> interval
    best: str
    differences: dict[str, Interval]  # other model -> (best − other) in the main metric, paired
    focus: str  # the model the user asked about
    focus_differences: dict[str, Interval]  # other model -> (focus − other) in the main metric, paired
    verdict: str  # one sentence: the best model, by how much, and whether the data can tell
    losses: list[str]  # sentences, one per baseline that beats `focus`; empty when none does

    def as_dict(self) -> dict[str, Any]:
        return {
            "main_metric": self.main,
            "best": self.best,
            "scores": {m: {k: v.as_dict() for k, v in s.items()} for m, s in self.scores.items()},
            "differences": {f"{self.best} − {m}": d.as_dict() for m, d in self.differences.items()},
            "focus_differences": {f"{self.focus} − {m}": d.as_dict() for m, d in self.focus_differences.items()},
            "verdict": self.verdict,
            "losses": self.losses,
        }


def compare(task: str, y: np.ndarray, predictions: dict[str, OutOfFold], focus: str,
            n_boot: int = N_BOOT, seed: int = 0) -> Comparison:
    """Compare models scored on the same folds; `focus` is the model the user asked about (the MLP)."""
    n = len(y)
    main = MAIN_METRIC[task]
    functions = {m: metric_functions(task, y, oof) for m, oof in predictions.items()}
    shared = [k for k in functions[focus] if all(k in f for f in functions.values())]
    scores = {m: {k: interval(f[k], n, n_boot, seed) for k in shared} for m, f in functions.items()}
    best = max(scores, key=lambda m: (_finite(scores[m][main].value), m == focus))  # ties go to the focus model
    focus_differences = {m: paired_difference(functions[focus][main], functions[m][main], n, n_boot, seed)
                         for m in scores if m != focus}
    # best − focus is −(focus − best) on the same resamples: negated, not bootstrapped twice
    differences = {m: (focus_differences[m] if best == focus else _negated(focus_differences[best]) if m == focus
                       else paired_difference(functions[best][main], functions[m][main], n, n_boot, seed))
                   for m in scores if m != best}
    verdict = _verdict(main, best, scores, differences)
    losses = []
    for other, diff in focus_differences.items():
        if scores[other][main].value <= scores[focus][main].value:
            continue
        tell = ("the interval excludes 0: on these rows the " + other + " is better" if separated(diff)
                else "the interval includes 0, so these rows cannot say the " + other + " is better, only that "
                     "the " + focus + " is not shown to be")
        losses.append(f"The {focus} loses to the {other}: out-of-fold {main} {scores[focus][main].text()} against "
                      f"{scores[other][main].text()}, difference {diff.text()} ({tell}).")
    return Comparison(main, scores, best, differences, focus, focus_differences, verdict, losses)


def _negated(diff: Interval) -> Interval:
    """b − a from a − b: the percentiles of a negated sample are the negated opposite percentiles."""
    return Interval(-diff.value, -diff.high, -diff.low)


def _finite(value: float) -> float:
    return value if np.isfinite(value) else -np.inf


def _verdict(main: str, best: str, scores: dict[str, dict[str, Interval]], differences: dict[str, Interval]) -> str:
    parts = []
    for other, diff in differences.items():
        tell = "the rows tell them apart" if separated(diff) else "the rows cannot tell them apart"
        if diff.value == 0:
            parts.append(f"level with the {other} (difference {diff.text()}; {tell})")
        else:
            parts.append(f"ahead of the {other} by {diff.text()} ({tell})")
    return (f"Out of fold, the {best} is best by {main} ({scores[best][main].text()})"
            + ("; " + ", and ".join(parts) if parts else "")
            + "; differences are paired bootstrap 95 % intervals over the rows.")


def summarize_choices(items: Sequence[Any]) -> dict[str, int]:
    """How often each value occurs, most frequent first (e.g. the hidden widths chosen in each fold)."""
    values, counts = np.unique([str(i) for i in items], return_counts=True)
    order = np.argsort(-counts, kind="stable")
    return {str(values[i]): int(counts[i]) for i in order}
