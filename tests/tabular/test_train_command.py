"""`dlc train` and `dlc predict` on a user's table, through the real CLI entry point."""

import hashlib
import json
from importlib.resources import files
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from dlconcepts import tabular
from dlconcepts.cli import main
from dlconcepts.data.tables import read_table

GAIT = Path(str(files("dlconcepts.data").joinpath("files", "gait_tug_bbs.csv")))
GAIT_FEATURES = "age,t1,t2,t3,Steps,Gender,px"
CLASSIFY = ["--data", str(GAIT), "--target", "y2", "--features", GAIT_FEATURES, "--cv", "5", "--epochs", "50", "--quiet"]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_train_classification_writes_a_complete_run_and_predict_reproduces_the_model(tmp_path, capsys):
    before = digest(GAIT)
    assert main(["train", *CLASSIFY, "--out", str(tmp_path / "runs")]) == 0
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert capsys.readouterr().out.strip() == f"report: {run_dir / 'report.md'}"
    assert {p.name for p in run_dir.iterdir()} >= {"config.json", "metrics.json", "figures", "model.pt", "log.txt", "report.md"}
    assert {p.name for p in (run_dir / "figures").iterdir()} == {
        "model_comparison.png", "roc_curve.png", "confusion_matrix.png", "mlp_search.png", "loss_curves.png"}
    assert json.loads((run_dir / "config.json").read_text())["cv"] == 5
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["task"] == "classification" and metrics["rows"] == 23
    assert set(metrics["scores"]) == {"MLP", "logistic regression", "majority class"}
    for counts in metrics["confusion_matrices"].values():
        assert np.sum(counts) == 23  # every row predicted exactly once, out of fold
    # 17 of the 23 rows are class 0: the majority baseline's accuracy is 17/23, its balanced accuracy 1/2
    majority = metrics["scores"]["majority class"]
    assert majority["accuracy"]["value"] == pytest.approx(17 / 23) and majority["balanced accuracy"]["value"] == 0.5
    assert majority["ROC AUC"]["value"] == 0.5  # one constant score ranks nobody above anybody
    for model in metrics["scores"].values():
        for m in model.values():
            assert m["low"] <= m["high"]
    report = (run_dir / "report.md").read_text()
    assert report.splitlines()[2] == f"**{metrics['verdict']}**"  # the report opens with the verdict
    assert "binary: 'F'→0, 'M'→1" in report and "2 missing imputed by the median" in report  # px has 2 empty cells
    assert all(f"figures/{p.name}" in report for p in (run_dir / "figures").iterdir())
    saved = torch.load(run_dir / "model.pt", weights_only=True)
    assert saved["target"] == "y2" and saved["features"] == GAIT_FEATURES.split(",") and saved["kind"] == "mlp"

    # dlc predict applies the saved preprocessing and networks: exactly the in-memory final model's output
    options = tabular.TrainOptions(data=str(GAIT), target="y2", features=GAIT_FEATURES.split(","), cv=5, epochs=50,
                                   out=str(tmp_path / "direct"), quiet=True)
    outcome = tabular.train(options)
    X = outcome.preprocessor.transform(read_table(GAIT)[options.features])
    preds_csv = tmp_path / "preds.csv"
    assert main(["predict", "--model", str(run_dir), "--data", str(GAIT), "--out", str(preds_csv)]) == 0
    predicted = pd.read_csv(preds_csv)
    assert list(predicted.columns) == ["prediction", "probability_0", "probability_1"]
    np.testing.assert_array_equal(predicted["prediction"].to_numpy(), outcome.model.predict(X))
    # written with 17 significant digits, a float64 reads back bit for bit
    np.testing.assert_array_equal(predicted[["probability_0", "probability_1"]].to_numpy(), outcome.model.predict_proba(X))
    capsys.readouterr()
    assert main(["predict", "--model", str(run_dir), "--data", str(GAIT)]) == 0  # no --out: CSV on stdout
    assert capsys.readouterr().out == preds_csv.read_text()
    assert digest(GAIT) == before


def test_train_regression_with_leave_one_out(tmp_path):
    out = tmp_path / "runs"
    args = ["--data", str(GAIT), "--target", "BBS", "--task", "regression", "--features", "age,t1,TUG,Gender",
            "--cv", "loo", "--epochs", "30", "--quiet", "--out", str(out)]
    assert main(["train", *args]) == 0
    (run_dir,) = out.iterdir()
    assert {p.name for p in (run_dir / "figures").iterdir()} == {
        "model_comparison.png", "predicted_vs_actual.png", "mlp_search.png", "loss_curves.png"}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["cv"].startswith("leave-one-out (23 folds)")
    model, baseline = metrics["scores"]["MLP"], metrics["scores"]["mean"]
    assert model["RMSE"]["value"] >= model["MAE"]["value"] > 0  # RMSE ≥ MAE for any errors (power-mean inequality)
    # leave-one-out mean baseline: its error on row i is (y_i − ȳ)·n/(n−1), so its RMSE is std(y)·n/(n−1)
    y = pd.read_csv(GAIT)["BBS"].to_numpy(dtype=float)
    assert baseline["RMSE"]["value"] == pytest.approx(y.std() * 23 / 22, rel=1e-12)
    assert metrics["small_data"]["text"].startswith("With 23 rows")
    predicted = tabular.predict_table(run_dir, GAIT)
    assert list(predicted.columns) == ["prediction"] and len(predicted) == 23


@pytest.mark.parametrize("target, task", [("BBS", "regression"), ("y1", "classification")])
@pytest.mark.parametrize("model", ["linear", "best"])
def test_the_saved_model_is_the_one_asked_for_and_predict_reproduces_it(target, task, model, tmp_path):
    options = tabular.TrainOptions(data=str(GAIT), target=target, task=task, features=["age", "t1", "t3", "Gender"],
                                   cv=3, epochs=20, model=model, out=str(tmp_path / "runs"), quiet=True, n_boot=200)
    outcome = tabular.train(options)
    expected = {"linear": "linear", "best": {"MLP": "mlp", "ridge regression": "linear", "logistic regression": "linear",
                                             "mean": "constant", "majority class": "constant"}[outcome.metrics["best"]]}
    assert outcome.saved_kind == expected[model] == outcome.metrics["saved_model"]["kind"]
    X = outcome.preprocessor.transform(read_table(GAIT)[options.features])
    predicted = tabular.predict_table(outcome.run.path, GAIT)
    np.testing.assert_array_equal(predicted["prediction"].to_numpy(), outcome.model.predict(X))
    if task == "classification":
        np.testing.assert_array_equal(predicted.filter(like="probability_").to_numpy(), outcome.model.predict_proba(X))


def write_xlsx(path: Path) -> None:
    pd.read_csv(GAIT).to_excel(path, sheet_name="gait", index=False)


@pytest.mark.parametrize(
    "make_args, message",
    [
        (lambda d: ["train", "--data", str(d / "missing.csv"), "--target", "y2"], "does not exist"),
        (lambda d: ["train", "--data", str(GAIT), "--target", "y3"], "unknown target column 'y3' (did you mean 'y2'?)"),
        (lambda d: ["train", "--data", str(GAIT), "--target", "y2", "--features", "age,t9"], "unknown feature column 't9'"),
        (lambda d: ["train", "--data", str(d / "one_class.csv"), "--target", "y"], "has one class ('1')"),
        (lambda d: ["train", "--data", str(d / "tiny.csv"), "--target", "y", "--task", "regression", "--cv", "5"],
         "fewer than the 5 folds of --cv 5; use --cv 3 or fewer, or --cv loo"),
        (lambda d: ["train", "--data", str(GAIT), "--target", "y2", "--cv", "10"], "class '1' of the target has 6 rows, fewer than the 10 folds of --cv 10; stratified folds need one per fold — use --cv 6 or --cv loo"),
        (lambda d: ["train", "--data", str(GAIT), "--target", "Gender", "--task", "regression"], "regression needs numbers"),
        (lambda d: ["train", "--data", str(d / "gait.xlsx"), "--sheet", "data", "--target", "y2"], "has no sheet 'data' (did you mean 'gait'?)"),
        (lambda d: ["train", "--data", str(GAIT), "--target", "y2", "--cv", "1"], "--cv '1' is not a number of folds"),
        (lambda d: ["train", "--data", str(GAIT), "--target", "y2", "--hidden", "30,x"], "--hidden '30,x'"),
        (lambda d: ["train", "--data", str(GAIT), "--target", "y2", "--hidden", "none"], "use --model linear"),
        (lambda d: ["train", "--data", str(GAIT), "--target", "y2", "--model", "forest"], "--model 'forest' is not one of"),
        (lambda d: ["train", "--data", str(GAIT), "--target", "y2", "--lr", "-1"], "--lr -1.0 is impossible"),
        (lambda d: ["train", "--data", str(d / "empty.csv"), "--target", "y"], "is empty"),
        (lambda d: ["predict", "--model", str(d / "nowhere"), "--data", str(GAIT)], "does not exist"),
    ],
)
def test_user_errors_are_one_line_exit_2_and_write_nothing(make_args, message, tmp_path, capsys):
    (tmp_path / "one_class.csv").write_text("x,y\n1,1\n2,1\n3,1\n")
    (tmp_path / "tiny.csv").write_text("x,y\n1,1.5\n2,2.5\n3,0.5\n")
    (tmp_path / "empty.csv").write_text("")
    write_xlsx(tmp_path / "gait.xlsx")
    inputs = {p: digest(p) for p in [GAIT, *tmp_path.iterdir()]}
    out = tmp_path / "runs"
    args = make_args(tmp_path)
    code = main([*args, "--out", str(out), "--quiet"] if args[0] == "train" else args)
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err and err.startswith("dlc: error: ") and err.count("\n") == 1
    assert not out.exists()  # refused before the run directory was created
    assert {p: digest(p) for p in inputs} == inputs


def test_predict_rejects_a_table_lacking_a_feature(tmp_path, capsys):
    out = tmp_path / "runs"
    assert main(["train", *CLASSIFY, "--epochs", "5", "--out", str(out)]) == 0
    (run_dir,) = out.iterdir()
    lacking = tmp_path / "new.csv"
    pd.read_csv(GAIT).drop(columns=["px"]).to_csv(lacking, index=False)
    before = digest(lacking)
    capsys.readouterr()
    assert main(["predict", "--model", str(run_dir), "--data", str(lacking), "--out", str(tmp_path / "p.csv")]) == 2
    err = capsys.readouterr().err
    assert "this table lacks 'px' (did you mean 'p" in err and err.count("\n") == 1
    assert not (tmp_path / "p.csv").exists() and digest(lacking) == before
    assert main(["predict", "--model", str(run_dir), "--data", str(lacking), "--out", str(lacking)]) == 2
    assert "is the input table" in capsys.readouterr().err and digest(lacking) == before
    assert main(["predict", "--model", str(tmp_path), "--data", str(GAIT)]) == 2
    assert "has no model.pt" in capsys.readouterr().err
