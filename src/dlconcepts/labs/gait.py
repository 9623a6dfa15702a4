"""Lab `gait`: fall risk (y1, y2) and the clinical scores (TUG, BBS) of 23 older adults, from gait timings.

The course's clinical table (`dlconcepts.data.gait`) is small and full of traps, so this lab is
mostly about what can honestly be measured on it:

* Leakage. y1 is TUG ≥ 14 s, and `time` (TUG read off the video), `t6` and `n6` (the end of the
  test, in seconds and in frames) measure nearly the same thing as TUG. A model given them "predicts"
  y1 by reading its definition. By default each target's features are the gait columns only: never
  `No` (an identifier) nor the clinical columns TUG, y1, BBS, y2 (the labels and the scores they are
  thresholds of); for a target made from TUG (y1, TUG itself) also not `time`, `t6`, `n6`. The
  "leaky" run adds the defining or duplicating columns back (y1: TUG, time, t6, n6; y2: BBS;
  TUG: time, t6, n6; BBS: y2), so the report shows how much of a score is the leak.
* Validation. Every number is out-of-fold: leave-one-out (23 fits per model) and repeated
  stratified k-fold (each subject's probability averaged over the repeats). Each fold's
  preprocessing (`TablePreprocessor`: median for the two missing `px`, Gender as 0/1) is fitted on its
  training rows only, as in `dlc train`.
* Uncertainty. Each metric comes with a percentile bootstrap 95% interval over the 23 subjects
  (`tabular.validation.interval`); differences between models are bootstrapped paired (the same
  resampled subjects for both), which is what decides whether one model beats another here.
* Baselines side by side: the majority class (mean, for TUG and BBS) and logistic regression
  (ridge regression) with its penalty chosen by an inner cross-validation, on the same folds and
  features as the MLP — the baselines, folds and intervals of `dlc train` (`tabular.validation`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import roc_curve

from dlconcepts.config import param
from dlconcepts.data.gait import COLUMNS, load_gait
from dlconcepts.data.tables import TablePreprocessor
from dlconcepts.estimators import MLPClassifier, MLPRegressor
from dlconcepts.labs.base import Lab, LabContext, Result
from dlconcepts.report import figures
from dlconcepts.tabular import validation as V

IDENTIFIER = "No"
CLINICAL = ("TUG", "y1", "BBS", "y2")  # the two clinical scores and the labels thresholded from them
TUG_DUPLICATES = ("time", "t6", "n6")  # TUG off the video; the end of the test in seconds and in frames
LEAKS = {"y1": ("TUG", *TUG_DUPLICATES), "y2": ("BBS",), "TUG": TUG_DUPLICATES, "BBS": ("y2",)}
SOURCE = {"y1": "TUG", "y2": "BBS", "TUG": "TUG", "BBS": "BBS"}  # the score each target is (made from)
CLASS_TARGETS = ("y1", "y2")
REGRESSION_TARGETS = ("TUG", "BBS")
MLP, MAJORITY, LOGISTIC = "MLP", "majority class", "logistic regression"
MEAN, RIDGE = "mean", "ridge regression"
GUARDED, LEAKY, DEFINITION = "guarded", "leaky", "definition only"
LOO, REPEATED = "leave-one-out", "repeated k-fold"


@dataclass(frozen=True)
class Config:
    hidden: tuple[int, ...] = param((8,), "hidden layer widths of the MLP", positive=True)
    lr: float = param(0.01, "Adam's learning rate (full batch)", positive=True)
    epochs: int = param(200, "full-batch Adam steps per fit", positive=True)
    weight_decay: float = param(0.0, "the MLP's L2 weight decay", minimum=0.0)
    # y2 has 6 positive subjects: stratified folds need at least one per fold, so at most 6 folds.
    folds: int = param(3, "folds of the repeated stratified k-fold", minimum=2, maximum=6)
    repeats: int = param(10, "repeats of the stratified k-fold, each with another shuffle", positive=True)
    n_boot: int = param(2000, "bootstrap resamples of the 23 subjects per interval", minimum=100)
    regression: bool = param(True, "also regress TUG and BBS (MAE, leave-one-out)")


# -- features ------------------------------------------------------------------------------------

def feature_columns(target: str, leaky: bool = False) -> list[str]:
    """The gait columns a model of `target` may see; `leaky` adds back the columns that define or duplicate it."""
    if target not in LEAKS:
        raise ValueError(f"unknown gait target {target!r}; one of {', '.join(LEAKS)}")
    excluded = {IDENTIFIER, *CLINICAL, *LEAKS[target]}
    added = set(LEAKS[target]) if leaky else set()
    return [c for c in COLUMNS if c not in excluded or c in added]


def _columns(target: str, features: str) -> list[str]:
    return [SOURCE[target]] if features == DEFINITION else feature_columns(target, features == LEAKY)


# -- metrics of out-of-fold scores (P(class 1) for the labels, predictions for the scores) ---------

# Each metric is built from (y, score) as a function of which subjects count (`tabular.validation`), so
# the bootstrap can resample it; class 1 is predicted above 0.5, as every `predict` does.
def _predicted(score: np.ndarray) -> np.ndarray:
    return (np.asarray(score) > 0.5).astype(int)


MetricFactory = Callable[[np.ndarray, np.ndarray], V.Metric]
CLASS_METRICS: dict[str, MetricFactory] = {
    "accuracy": lambda y, s: V.accuracy_metric(y, _predicted(s)),
    "balanced accuracy": lambda y, s: V.balanced_accuracy_metric(y, _predicted(s)),
    "ROC AUC": lambda y, s: V.roc_auc_metric(y == 1, s),
    "sensitivity": lambda y, s: V.recall_metric(y, _predicted(s), 1),
    "specificity": lambda y, s: V.recall_metric(y, _predicted(s), 0),
}
MAE: MetricFactory = V.mae_metric


def _point(factory: MetricFactory) -> Callable[[np.ndarray, np.ndarray], float]:
    return lambda y, s: float(factory(np.asarray(y), np.asarray(s))(np.arange(len(y))))


accuracy, balanced_accuracy, roc_auc, sensitivity, specificity = (_point(CLASS_METRICS[k]) for k in CLASS_METRICS)
mae = _point(MAE)


def with_interval(factory: MetricFactory, y: np.ndarray, score: np.ndarray, n_boot: int, seed: int) -> dict[str, float]:
    """The metric and its bootstrap 95% interval. Every call resamples the same subjects (same seed),
    so the intervals of two models are computed on the same resamples."""
    return V.interval(factory(y, score), len(y), n_boot, seed).as_dict()


def paired_difference(factory: MetricFactory, y: np.ndarray, score_a: np.ndarray, score_b: np.ndarray,
                      n_boot: int, seed: int) -> dict[str, float]:
    """metric(a) − metric(b) with a paired bootstrap 95% interval: both scored on the same resampled subjects."""
    return V.paired_difference(factory(y, score_a), factory(y, score_b), len(y), n_boot, seed).as_dict()


# -- models and out-of-fold scores ---------------------------------------------------------------

def classifiers(cfg: Config, seed: int) -> dict[str, V.ModelFactory]:
    return {
        MLP: lambda y: MLPClassifier(hidden=cfg.hidden, lr=cfg.lr, epochs=cfg.epochs, weight_decay=cfg.weight_decay,
                                     random_state=seed),
        MAJORITY: V.constant_model("classification"),
        LOGISTIC: V.linear_model("classification", seed),
    }


def regressors(cfg: Config, seed: int) -> dict[str, V.ModelFactory]:
    return {
        MLP: lambda y: MLPRegressor(hidden=cfg.hidden, lr=cfg.lr, epochs=cfg.epochs, weight_decay=cfg.weight_decay,
                                    random_state=seed),
        MEAN: V.constant_model("regression"),
        RIDGE: V.linear_model("regression", seed),
    }


def out_of_fold(make_model: V.ModelFactory, folds: list[list[V.Fold]], y: np.ndarray, task: str) -> np.ndarray:
    """Each subject's score from the models fitted without it: P(class 1) for labels, else the prediction."""
    oof = V.out_of_fold(make_model, folds, y, task)
    return oof.predictions if task == "regression" else oof.probabilities[:, list(oof.classes).index(1)]


# -- the lab ---------------------------------------------------------------------------------------

def run(cfg: Config, ctx: LabContext) -> Result:
    seed = ctx.runtime.seed
    table = load_gait()
    n = len(table)
    scores: dict = {}  # scores[target][features][validation][model] = out-of-fold scores
    metrics: dict = {"subjects": n, "features": {t: {GUARDED: feature_columns(t), LEAKY: feature_columns(t, True)}
                                                 for t in (*CLASS_TARGETS, *REGRESSION_TARGETS)}}
    classification: dict = {}
    for target in CLASS_TARGETS:
        y = table[target].to_numpy(dtype=int)
        models = classifiers(cfg, seed)
        per_target: dict = {}
        for features in (GUARDED, LEAKY, DEFINITION):
            frame = table[_columns(target, features)]
            loo = V.make_folds(frame, V.plan_cv("loo", "classification", y, seed))
            # the majority class ignores the features: its leaky run would repeat the guarded one; on the
            # one defining column, logistic regression shows what the definition alone scores
            names = {GUARDED: list(models), LEAKY: [MLP, LOGISTIC], DEFINITION: [LOGISTIC]}[features]
            per_target[features] = {LOO: {m: out_of_fold(models[m], loo, y, "classification") for m in names}}
            if features == GUARDED:
                repeats = V.make_folds(frame, V.repeated_plan(cfg.folds, cfg.repeats, "classification", y, seed))
                per_repeat = {m: np.array([out_of_fold(models[m], [f], y, "classification") for f in repeats])
                              for m in names}
                per_target[features][REPEATED] = {m: s.mean(axis=0) for m, s in per_repeat.items()}
                per_target["repeat accuracies"] = {m: [accuracy(y, s) for s in per_repeat[m]] for m in names}
            ctx.log(f"  {target}, {features} features ({frame.shape[1]} columns): LOO accuracy " + ", ".join(
                f"{m} {accuracy(y, s):.3f}" for m, s in per_target[features][LOO].items()))
        scores[target] = per_target
        classification[target] = _classification_metrics(cfg, y, per_target, seed)
    metrics["classification"] = classification

    regression: dict = {}
    if cfg.regression:
        for target in REGRESSION_TARGETS:
            y = table[target].to_numpy(dtype=float)
            models = regressors(cfg, seed)
            per_target = {}
            for features in (GUARDED, LEAKY):
                frame = table[feature_columns(target, features == LEAKY)]
                loo = V.make_folds(frame, V.plan_cv("loo", "regression", y, seed))
                names = list(models) if features == GUARDED else [MLP, RIDGE]
                per_target[features] = {
                    m: with_interval(MAE, y, out_of_fold(models[m], loo, y, "regression"), cfg.n_boot, seed)
                    for m in names}
            regression[target] = per_target
            ctx.log(f"  {target}: LOO MAE " + ", ".join(f"{m} {v['value']:.2f}" for m, v in per_target[GUARDED].items())
                    + f"; leaky MLP {per_target[LEAKY][MLP]['value']:.2f}")
    metrics["regression"] = regression
    metrics["correlations"] = _strongest_remaining(table)

    _save_figures(ctx, table, scores, classification, regression)
    _save_model(ctx, cfg, table, seed)
    return Result(metrics=metrics, table=_table(metrics), findings=_findings(cfg, metrics, table),
                  headline=_headline(metrics))


def _classification_metrics(cfg: Config, y: np.ndarray, per_target: dict, seed: int) -> dict:
    out: dict = {}
    for features in (GUARDED, LEAKY, DEFINITION):
        out[features] = {
            validation: {m: {name: with_interval(f, y, s, cfg.n_boot, seed) for name, f in CLASS_METRICS.items()}
                         for m, s in by_model.items()}
            for validation, by_model in per_target[features].items()
        }
    loo, leaky = per_target[GUARDED][LOO], per_target[LEAKY][LOO]
    acc, bal = CLASS_METRICS["accuracy"], CLASS_METRICS["balanced accuracy"]
    out["differences"] = {
        "MLP − majority class, accuracy": paired_difference(acc, y, loo[MLP], loo[MAJORITY], cfg.n_boot, seed),
        "MLP − logistic regression, accuracy": paired_difference(acc, y, loo[MLP], loo[LOGISTIC], cfg.n_boot, seed),
        "MLP − majority class, balanced accuracy": paired_difference(bal, y, loo[MLP], loo[MAJORITY], cfg.n_boot, seed),
        "leaky − guarded MLP, accuracy": paired_difference(acc, y, leaky[MLP], loo[MLP], cfg.n_boot, seed),
    }
    out["repeat accuracies"] = {m: {"min": min(a), "max": max(a)} for m, a in per_target["repeat accuracies"].items()}
    out["positives"] = int(y.sum())
    return out


def _strongest_remaining(table: pd.DataFrame) -> dict:
    """Per target: the guarded feature most correlated with the score the target is made from."""
    out = {}
    for target in (*CLASS_TARGETS, *REGRESSION_TARGETS):
        numeric = table[feature_columns(target)].select_dtypes("number")
        r = numeric.corrwith(table[SOURCE[target]])
        name = str(r.abs().idxmax())
        out[target] = {"column": name, "r": float(r[name]), "source": SOURCE[target]}
    return out


def _save_model(ctx: LabContext, cfg: Config, table: pd.DataFrame, seed: int) -> None:
    """The guarded y1 MLP, preprocessing and network fitted on all 23 subjects."""
    features = feature_columns("y1")
    pre = TablePreprocessor().fit(table[features])
    y = table["y1"].to_numpy(dtype=int)
    model = classifiers(cfg, seed)[MLP](y).fit(pre.transform(table[features]), y)
    ctx.run.save_model({"model": model.model_.state_dict(), "target": "y1", "features": features,
                        "preprocessing": pre.state(), "x_scaler": model.x_scaler_.state(),
                        "layer_sizes": [model.n_features_in_, *cfg.hidden, 2]})


# -- report ----------------------------------------------------------------------------------------

def _cell(m: dict[str, float], digits: int = 2) -> str:
    if np.isnan(m["value"]):
        return "n/a"
    return f"{m['value']:.{digits}f} [{m['low']:.{digits}f}, {m['high']:.{digits}f}]"


def _features_text(metrics: dict, target: str, features: str) -> str:
    if features == GUARDED:
        return f"guarded ({len(metrics['features'][target][GUARDED])} gait columns)"
    if features == DEFINITION:
        return f"{SOURCE[target]} alone (the definition)"
    return "leaky (+ " + ", ".join(LEAKS[target]) + ")"


def _table(metrics: dict) -> list[tuple[str, ...]]:
    names = list(CLASS_METRICS)
    rows: list[tuple[str, ...]] = [("section", "target", "features", "validation", "model", *names, "MAE")]
    for target, m in metrics["classification"].items():
        for validation in (LOO, REPEATED):
            for model, values in m[GUARDED][validation].items():
                section = "model" if model == MLP else "baseline"
                rows.append((section, target, _features_text(metrics, target, GUARDED), validation, model,
                             *(_cell(values[k]) for k in names), ""))
        for features in (LEAKY, DEFINITION):
            for model, values in m[features][LOO].items():
                rows.append(("leakage check", target, _features_text(metrics, target, features), LOO, model,
                             *(_cell(values[k]) for k in names), ""))
    for target, m in metrics["regression"].items():
        for features in (GUARDED, LEAKY):
            for model, values in m[features].items():
                section = "leakage check" if features == LEAKY else ("model" if model == MLP else "baseline")
                rows.append((section, target, _features_text(metrics, target, features), LOO, model,
                             *([""] * len(names)), _cell(values, 1)))
    return rows


def _findings(cfg: Config, metrics: dict, table: pd.DataFrame) -> list[str]:
    cls, reg = metrics["classification"], metrics["regression"]
    n = metrics["subjects"]
    found = [
        "Features: every model sees gait columns only — never `No` (an identifier) nor TUG, y1, BBS, y2 (the clinical "
        "scores and the labels made from them); for y1 and TUG also not time, t6, n6, which measure TUG again. "
        "Metrics are out-of-fold, each with a bootstrap 95% interval over the subjects in brackets; each fold's "
        "imputation, encoding and scaling were fitted on its training rows only.",
    ]
    for target in CLASS_TARGETS:
        m, d = cls[target], cls[target]["differences"]
        g, lk, alone = m[GUARDED][LOO], m[LEAKY][LOO], m[DEFINITION][LOO][LOGISTIC]
        corr = metrics["correlations"][target]
        found.append(
            f"Leakage, {target}: logistic regression on {SOURCE[target]} alone — the column {target} is a threshold "
            f"of — has leave-one-out ROC AUC {_cell(alone['ROC AUC'])} (1 = every at-risk subject ranked above every "
            f"other) and accuracy {_cell(alone['accuracy'])}: its threshold is learned from 22 subjects under an L2 "
            f"penalty chosen by inner cross-validation, not given. With "
            f"{', '.join(LEAKS[target])} added to the gait columns, the MLP scores {_cell(lk[MLP]['accuracy'])} "
            f"(logistic regression {_cell(lk[LOGISTIC]['accuracy'])}) against {_cell(g[MLP]['accuracy'])} guarded "
            f"(paired difference {_cell(d['leaky − guarded MLP, accuracy'])}). The guard removes the definition and "
            f"its exact copies only: the guarded column most correlated with {corr['source']} is {corr['column']} "
            f"(r = {corr['r']:.2f}), so a good guarded score may still be {corr['source']} measured another way.")
        mlp_vs_major, mlp_vs_log = d["MLP − majority class, accuracy"], d["MLP − logistic regression, accuracy"]
        found.append(
            f"Baselines, {target} ({m['positives']} of {n} at risk): always predicting 'not at risk' scores accuracy "
            f"{g[MAJORITY]['accuracy']['value']:.2f} (balanced accuracy 0.50); the MLP {_cell(g[MLP]['accuracy'])}, "
            f"balanced {_cell(g[MLP]['balanced accuracy'])}, ROC AUC {_cell(g[MLP]['ROC AUC'])}; logistic regression "
            f"{_cell(g[LOGISTIC]['accuracy'])}, ROC AUC {_cell(g[LOGISTIC]['ROC AUC'])}. MLP − majority accuracy "
            f"{_cell(mlp_vs_major)} ({_verdict(mlp_vs_major)}); MLP − logistic {_cell(mlp_vs_log)} ({_verdict(mlp_vs_log)}).")
        rep = m["repeat accuracies"][MLP]
        found.append(
            f"Validation, {target}: leave-one-out MLP accuracy {g[MLP]['accuracy']['value']:.2f}; {cfg.folds}-fold "
            f"stratified, {cfg.repeats} repeat{'s' if cfg.repeats > 1 else ''} (probabilities averaged per subject) "
            f"{m[GUARDED][REPEATED][MLP]['accuracy']['value']:.2f}, single repeats between {rep['min']:.2f} and "
            f"{rep['max']:.2f} — the shuffle alone moves the accuracy by {rep['max'] - rep['min']:.2f}.")
    for target, m in reg.items():
        g, lk = m[GUARDED], m[LEAKY]
        unit = " s" if target == "TUG" else " points"
        found.append(
            f"Regression, {target} (leave-one-out MAE{unit}): MLP {_cell(g[MLP], 1)}, mean baseline "
            f"{_cell(g[MEAN], 1)}, ridge regression {_cell(g[RIDGE], 1)}; leaky (+ {', '.join(LEAKS[target])}) MLP "
            f"{_cell(lk[MLP], 1)}, ridge {_cell(lk[RIDGE], 1)}.")
    found.append(_what_23_subjects_support(metrics))
    return found


def _verdict(diff: dict[str, float]) -> str:
    if diff["low"] > 0:
        return "interval above 0: better on these subjects"
    if diff["high"] < 0:
        return "interval below 0: worse on these subjects"
    return "interval includes 0: no demonstrated difference"


def _what_23_subjects_support(metrics: dict) -> str:
    cls, n = metrics["classification"], metrics["subjects"]
    loo = {t: cls[t][GUARDED][LOO] for t in CLASS_TARGETS}
    widths = [loo[t][MLP]["accuracy"]["high"] - loo[t][MLP]["accuracy"]["low"] for t in CLASS_TARGETS]
    auc_widths = [loo[t][MLP]["ROC AUC"]["high"] - loo[t][MLP]["ROC AUC"]["low"] for t in CLASS_TARGETS]
    positives = min(cls[t]["positives"] for t in CLASS_TARGETS)
    # signal: some guarded model ranks the at-risk subjects above chance with its whole interval
    signal = [t for t in CLASS_TARGETS if max(loo[t][m]["ROC AUC"]["low"] for m in (MLP, LOGISTIC)) > 0.5]
    beats = [t for t in CLASS_TARGETS if cls[t]["differences"]["MLP − majority class, accuracy"]["low"] > 0]
    versus_logistic = [cls[t]["differences"]["MLP − logistic regression, accuracy"] for t in CLASS_TARGETS]
    separated = [t for t, d in zip(CLASS_TARGETS, versus_logistic) if d["low"] > 0 or d["high"] < 0]
    corr = metrics["correlations"]
    return (
        f"What {n} subjects can and cannot support: one subject is {100 / n:.1f} accuracy points, and with "
        f"{positives} at-risk subjects one of them is {100 / positives:.0f} points of sensitivity. The 95% intervals "
        f"of the MLP's leave-one-out accuracy are {min(widths):.2f}–{max(widths):.2f} wide, those of its ROC AUC "
        f"{min(auc_widths):.2f}–{max(auc_widths):.2f}. They support that the gait columns rank at-risk subjects "
        f"above chance (ROC AUC interval above 0.5) for {_labels(signal)} — for y1 partly through "
        f"{corr['y1']['column']}, which correlates {corr['y1']['r']:.2f} with TUG — and that a leaky column can "
        f"inflate a score. The MLP's accuracy beats always answering 'not at risk' (paired interval above 0) for "
        f"{_labels(beats)}. They cannot support choosing the MLP over logistic regression (the paired accuracy "
        f"interval excludes 0 for {_labels(separated)}; the defaults were not tuned on held-out subjects), a "
        f"clinical threshold, or any claim about other people: {n} subjects from one study are not a population.")


def _labels(targets: list[str]) -> str:
    return " and ".join(targets) if targets else "neither label"


def _headline(metrics: dict) -> str:
    y1 = metrics["classification"]["y1"]
    g = y1[GUARDED][LOO]
    return (f"y1 LOO accuracy: MLP {_cell(g[MLP]['accuracy'])}, majority {g[MAJORITY]['accuracy']['value']:.2f}, "
            f"logistic {g[LOGISTIC]['accuracy']['value']:.2f}; leaky MLP {y1[LEAKY][LOO][MLP]['accuracy']['value']:.2f}")


# -- figures ---------------------------------------------------------------------------------------

def _save_figures(ctx: LabContext, table: pd.DataFrame, scores: dict, cls: dict, reg: dict) -> None:
    plt = figures.plt
    shown = ("accuracy", "balanced accuracy", "ROC AUC", "sensitivity", "specificity")
    fig, axes = plt.subplots(len(CLASS_TARGETS), len(shown), figsize=(17, 3.2 * len(CLASS_TARGETS)), sharey="row",
                             squeeze=False)
    for r, target in enumerate(CLASS_TARGETS):
        entries_of = [(f"{model} ({'LOO' if v == LOO else 'rep. k-fold'})", cls[target][GUARDED][v][model])
                      for v in (LOO, REPEATED) for model in cls[target][GUARDED][v]]
        entries_of += [(f"{model} leaky (LOO)", cls[target][LEAKY][LOO][model]) for model in cls[target][LEAKY][LOO]]
        entries_of.append((f"logistic, {SOURCE[target]} alone, leaky (LOO)", cls[target][DEFINITION][LOO][LOGISTIC]))
        for c, name in enumerate(shown):
            entries = [(label, m[name]) for label, m in entries_of]
            figures.forest_panel(axes[r, c], entries, f"{target}: {name}", highlight=MLP, colors={"leaky": "C3"},
                                 reference=0.5 if name in ("balanced accuracy", "ROC AUC") else None, xlabel=name)
            axes[r, c].set_xlim(-0.05, 1.05)
    fig.tight_layout()
    ctx.run.save_figure(fig, "forest_classification",
                        "Out-of-fold metrics with bootstrap 95% intervals over the 23 subjects; blue: the MLP, grey: "
                        "the baselines, red: leaky features. Dotted line: chance (0.5) for balanced accuracy and ROC AUC.")

    fig, axes = plt.subplots(1, len(CLASS_TARGETS), figsize=(4.6 * len(CLASS_TARGETS), 4.2), squeeze=False)
    for ax, target in zip(axes[0], CLASS_TARGETS):
        y = table[target].to_numpy(dtype=int)
        for features, style in ((GUARDED, "-"), (LEAKY, "--")):
            for model, color in ((MLP, "C0"), (LOGISTIC, "C1")):
                s = scores[target][features][LOO][model]
                fpr, tpr, _ = roc_curve(y, s)
                ax.plot(fpr, tpr, style, color=color, lw=1.5, label=f"{model}, {features} (AUC {roc_auc(y, s):.2f})")
        ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls=":")
        ax.set_title(f"{target}: ROC, leave-one-out")
        ax.set_xlabel("false positive rate (1 − specificity)")
        ax.set_ylabel("true positive rate (sensitivity)")
        ax.legend(fontsize=7, loc="lower right")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    ctx.run.save_figure(fig, "roc_loo", "ROC curves of the leave-one-out probabilities: solid guarded, dashed leaky; "
                                        "the dotted diagonal is guessing.")

    if reg:
        fig, axes = plt.subplots(1, len(reg), figsize=(5.2 * len(reg), 2.8), squeeze=False)
        for ax, (target, m) in zip(axes[0], reg.items()):
            entries = [(model, v) for model, v in m[GUARDED].items()]
            entries += [(f"{model} leaky", v) for model, v in m[LEAKY].items()]
            figures.forest_panel(ax, entries, f"{target}: leave-one-out MAE", highlight=MLP, colors={"leaky": "C3"},
                                 xlabel=f"MAE ({'s' if target == 'TUG' else 'BBS points'})")
        fig.tight_layout()
        ctx.run.save_figure(fig, "forest_regression", "Leave-one-out mean absolute error with bootstrap 95% intervals; "
                                                      "red: leaky features.")


LAB = Lab(
    id="gait",
    title="Fall risk from gait timings of 23 older adults: leakage, baselines and honest intervals",
    function="MLP features→{hidden}→2 (labels y1, y2) or →1 (TUG, BBS), ReLU",
    loss="cross-entropy on logits (y1, y2); MSE on the standardized score (TUG, BBS)",
    minimizer="Adam lr {lr}, full batch, {epochs} epochs per fit; leave-one-out and {repeats}×{folds}-fold stratified",
    data="the course's gait table: 23 subjects, gait timings from a TUG video, labels y1 (TUG ≥ 14 s) and y2 (BBS ≤ 22)",
    typical_time="~50 s (quick ~20 s: the logistic baseline chooses its penalty by inner cross-validation in every fold)",
    config=Config,
    run=run,
    quick={"epochs": 20, "repeats": 1, "n_boot": 100, "regression": False},
    prefers_cpu="23 rows and an MLP with 8 hidden units: hundreds of tiny fits that a GPU would only slow down",
)
