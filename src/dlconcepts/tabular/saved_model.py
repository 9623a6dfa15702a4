"""The model `dlc train` saves, and `dlc predict`, which applies it to new rows.

model.pt is a dict of primitives and tensors, loadable with `torch.load(weights_only=True)`:
{"version", "kind" ("mlp", "linear" or "constant"), "model": the kind's state, "preprocessing":
`TablePreprocessor.state()`, "target", "features", "task"}. `model_from_state` rebuilds the very
objects that were fitted — `TunedMLP` for the MLP, scikit-learn's own pipeline of `StandardScaler`
and `Ridge`/`LogisticRegression` for the linear model, `DummyRegressor`/`DummyClassifier` for the
constant one — with the fitted numbers put back, so `dlc predict` runs the same arithmetic as the
model that was trained and gives exactly its predictions (tests compare them bit for bit).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from dlconcepts.data.tables import TablePreprocessor, read_table
from dlconcepts.errors import UserError, did_you_mean
from dlconcepts.runs import atomic_write_text
from dlconcepts.tabular.tuned_mlp import TunedMLP

MODEL_FILE = "model.pt"
VERSION = 2
KINDS = ("mlp", "linear", "constant")


# --------------------------------------------------------------------------- fitted model <-> primitives


def model_state(kind: str, model: Any) -> dict[str, Any]:
    """The fitted model of `kind` as primitives (and, for the MLP, one state_dict)."""
    if kind == "mlp":
        return model.state()
    if kind == "linear":
        scaler, linear = model[0], model[-1]
        state = {"mean": scaler.mean_.tolist(), "scale": scaler.scale_.tolist(), "var": scaler.var_.tolist(),
                 "coef": linear.coef_.tolist(), "intercept": np.atleast_1d(linear.intercept_).tolist()}
        if hasattr(linear, "classes_"):
            chosen_c = linear.C_ if hasattr(linear, "C_") else linear.C  # LogisticRegressionCV chose it; else given
            state.update(classes=linear.classes_.tolist(), C=float(np.atleast_1d(chosen_c)[0]))
        else:
            state.update(alpha=float(linear.alpha_), intercept_is_scalar=np.ndim(linear.intercept_) == 0)
        return state
    if kind == "constant":
        if isinstance(model, DummyClassifier):
            return {"classes": model.classes_.tolist(), "prior": model.class_prior_.tolist(), "n_features": model.n_features_in_}
        return {"constant": model.constant_.ravel().tolist(), "n_features": model.n_features_in_}
    raise ValueError(f"unknown model kind {kind!r}")


def model_from_state(kind: str, state: dict[str, Any]) -> Any:
    """The fitted model `model_state` described, ready to predict."""
    if kind == "mlp":
        return TunedMLP.from_state(state)
    if kind == "linear":
        scaler = StandardScaler()
        scaler.mean_, scaler.scale_, scaler.var_ = (np.asarray(state[k], dtype=np.float64) for k in ("mean", "scale", "var"))
        scaler.n_features_in_ = len(scaler.mean_)
        scaler.n_samples_seen_ = 0
        coef = np.asarray(state["coef"], dtype=np.float64)
        if "classes" in state:
            linear: Any = LogisticRegression(C=state["C"])
            linear.classes_ = np.asarray(state["classes"])
            linear.intercept_ = np.asarray(state["intercept"], dtype=np.float64)
        else:
            linear = Ridge(alpha=state["alpha"])
            intercept = np.asarray(state["intercept"], dtype=np.float64)
            linear.intercept_ = float(intercept[0]) if state["intercept_is_scalar"] else intercept
        linear.coef_ = coef
        linear.n_features_in_ = len(scaler.mean_)
        return make_pipeline(scaler, linear)
    if kind == "constant":
        if "classes" in state:
            dummy: Any = DummyClassifier(strategy="most_frequent")
            dummy.classes_ = np.asarray(state["classes"])
            dummy.class_prior_ = np.asarray(state["prior"], dtype=np.float64)
            dummy.n_classes_, dummy.n_outputs_, dummy._strategy = len(dummy.classes_), 1, "most_frequent"
        else:
            dummy = DummyRegressor(strategy="mean")
            dummy.constant_ = np.asarray(state["constant"], dtype=np.float64).reshape(1, -1)
            dummy.n_outputs_, dummy._strategy = 1, "mean"
        dummy.n_features_in_ = state["n_features"]
        dummy._sparse_output = False  # scikit-learn's own attribute, set by fit
        return dummy
    raise ValueError(f"unknown model kind {kind!r}")


# --------------------------------------------------------------------------- the file


@dataclass
class SavedModel:
    kind: str
    task: str
    model: Any
    preprocessor: TablePreprocessor
    target: str
    features: list[str]


def saved_dict(kind: str, task: str, model: Any, preprocessor: TablePreprocessor, target: str,
               features: list[str]) -> dict[str, Any]:
    return {"version": VERSION, "kind": kind, "task": task, "model": model_state(kind, model),
            "preprocessing": preprocessor.state(), "target": target, "features": features}


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
    if not isinstance(saved, dict) or not {"model", "preprocessing", "target", "features"} <= set(saved):
        raise UserError(f"'{path}' is not a model written by dlc train (a lab's model.pt cannot predict tables); retrain with dlc train")
    if saved.get("version") != VERSION or saved.get("kind") not in KINDS:
        raise UserError(f"'{path}' comes from another version of dlc; retrain the model with dlc train")
    return SavedModel(saved["kind"], saved["task"], model_from_state(saved["kind"], saved["model"]),
                      TablePreprocessor.from_state(saved["preprocessing"]), saved["target"], list(saved["features"]))


# --------------------------------------------------------------------------- dlc predict


def predict_table(run_dir: str | Path, data: str | Path, sheet: str | None = None) -> pd.DataFrame:
    """Predictions for every row of `data`: a `prediction` column (and `probability_<class>` for classifiers).

    The table must hold every feature the model was trained on; other columns (an id, the target) are ignored.
    """
    saved = load_model(run_dir)
    frame = read_table(data, sheet)
    given = [str(c) for c in frame.columns]
    lacking = [f for f in saved.features if f not in given]
    if lacking:
        others = [c for c in given if c not in saved.features]
        names = ", ".join(f"'{f}'" for f in lacking)
        raise UserError(
            f"the model was trained on columns {', '.join(repr(f) for f in saved.features)}; this table lacks {names}"
            f"{did_you_mean(lacking[0], others)} — give a table with those columns"
        )
    frame.columns = given
    X = saved.preprocessor.transform(frame[saved.features])
    return predictions_frame(saved.model, X, saved.task)


def predictions_frame(model: Any, X: np.ndarray, task: str) -> pd.DataFrame:
    """What a fitted model says about rows X, as `dlc predict` writes it."""
    out = pd.DataFrame({"prediction": model.predict(X)})
    if task == "classification":
        for c, p in zip(model.classes_, model.predict_proba(X).T):
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
