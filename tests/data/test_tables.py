"""A user's table: reading, column choice, task inference, preprocessing, and a suite of malformed files.

Every malformed file must end in a correct result or a one-line `UserError` that says what to fix —
never another exception — and no input file may change (its bytes are hashed before and after).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pytest

from dlconcepts.data.tables import TablePreprocessor, infer_task, read_table, select_columns
from dlconcepts.errors import UserError


def digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def assert_one_line_fix(err: UserError) -> str:
    message = str(err)
    assert "\n" not in message and message.strip() == message
    assert "; " in message, f"no fix after the problem: {message}"  # house format: "<problem>; <fix>"
    return message


def run_pipeline(path: Path, target: str = "y", task: str = "auto", sheet: str | None = None, features=None):
    table = read_table(path, sheet=sheet)
    X, y, notes = select_columns(table, target, features)
    task = infer_task(y, task)
    pre = TablePreprocessor().fit(X)
    return {"table": table, "X": X, "y": y, "notes": notes, "task": task, "pre": pre, "matrix": pre.transform(X)}


def write_text(name: str, text: str, encoding: str = "utf-8") -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        path = tmp / name
        path.write_bytes(text.encode(encoding))
        return path

    return make


def write_bytes(name: str, data: bytes) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        path = tmp / name
        path.write_bytes(data)
        return path

    return make


def write_xlsx(sheets: dict[str, list[list]], name: str = "t.xlsx") -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        import openpyxl

        book = openpyxl.Workbook()
        book.remove(book.active)
        for title, rows in sheets.items():
            sheet = book.create_sheet(title)
            for row in rows:
                sheet.append(row)
        path = tmp / name
        book.save(path)
        return path

    return make


@dataclass
class Case:
    name: str
    make: Callable[[Path], Path]
    error: str | None = None  # a phrase the UserError must contain; None = must succeed
    check: Callable[[dict], None] | None = None  # checks on a successful result
    kwargs: dict | None = None


def _columns(expected):
    def check(r):
        assert [str(c) for c in r["table"].columns] == expected

    return check


def _first_row(expected):
    def check(r):
        np.testing.assert_allclose(r["matrix"][0], expected)

    return check


def _handling(column, phrase):
    def check(r):
        rows = {row["name"]: row for row in r["pre"].report()}
        assert phrase in rows[column]["handling"], rows[column]

    return check


def _note(phrase, where="notes"):
    def check(r):
        notes = r["notes"] if where == "notes" else r["table"].attrs["notes"]
        assert any(phrase in n for n in notes), notes

    return check


def _all(*checks):
    def check(r):
        for c in checks:
            c(r)

    return check


CASES = [
    # delimiters and encodings
    Case("semicolon", write_text("t.csv", "a;b;y\n1;2;0\n3;4;1\n5;6;0\n"), check=_all(_columns(["a", "b", "y"]), _first_row([1, 2]))),
    Case("tab", write_text("t.csv", "a\tb\ty\n1\t2\t0\n3\t4\t1\n5\t7\t0\n"), check=_all(_columns(["a", "b", "y"]), _first_row([1, 2]))),
    Case(
        "semicolon with decimal commas",
        write_text("t.csv", "a;b;y\n1,5;2,25;0\n3,0;4,5;1\n"),
        check=_all(_first_row([1.5, 2.25]), _note("decimal commas", where="table")),
    ),
    Case("quoted commas", write_text("t.csv", 'name,a,y\n"Smith, J",1,0\n"Doe, A",2,1\n"Li, B",3,1\n'), check=_handling("name", "one-hot: 3 levels")),
    Case("utf-8 BOM", write_text("t.csv", "a,y\n1,0\n2,1\n", encoding="utf-8-sig"), check=_columns(["a", "y"])),
    Case(
        "latin-1 file",
        write_text("t.csv", "stadt,a,y\nMünchen,1,0\nKöln,2,1\n", encoding="latin-1"),
        check=_all(_handling("stadt", "'Köln'→0, 'München'→1"), _note("latin-1", where="table")),
    ),
    Case("unicode headers", write_text("t.csv", "größe,年齢,y\n1.8,30,0\n1.6,40,1\n"), check=_columns(["größe", "年齢", "y"])),
    Case("header cells with spaces", write_text("t.csv", " a , y \n1,0\n2,1\n"), check=_columns(["a", "y"])),
    Case("blank lines", write_text("t.csv", "a,y\n1,0\n\n2,1\n\n"), check=lambda r: r["matrix"].shape == (2, 1) or pytest.fail()),
    # structure
    Case("ragged row (extra field)", write_text("t.csv", "a,b,y\n1,2,0\n3,4,1,9\n"), error="line 3 has 4 fields but the header has 3"),
    Case("ragged row (short)", write_text("t.csv", "a,b,y\n1,2,0\n3,4,1\n5,6\n"), error="line 4 has 2 fields"),
    Case("duplicate headers", write_text("t.csv", "a,b,a,y\n1,2,3,0\n4,5,6,1\n"), error="duplicate column header 'a'"),
    Case("blank header cell", write_text("t.csv", "a,,y\n1,2,0\n3,4,1\n"), error="header cell 2 is blank"),
    Case("empty file", write_text("t.csv", ""), error="is empty"),
    Case("only whitespace", write_text("t.csv", "\n  \n\n"), error="is empty"),
    Case("header only", write_text("t.csv", "a,b,y\n"), error="no data rows"),
    Case("binary file named .csv", write_bytes("t.csv", b"PK\x03\x04\x00\x00binary"), error="not a text CSV"),
    Case("unclosed quote", write_text("t.csv", 'a,b,y\n1,"2,0\n3,4,1\n'), error="fields but the header has 3"),
    Case("unknown extension", write_text("t.txt", "a,y\n1,0\n"), error="unknown type '.txt'"),
    Case("missing file", lambda tmp: tmp / "nope.csv", error="does not exist"),
    Case("a directory", lambda tmp: tmp, error="is not a file"),
    Case("sheet given for a csv", write_text("t.csv", "a,y\n1,0\n2,1\n"), error="has no sheets", kwargs={"sheet": "Data"}),
    # values
    Case("text in numeric column", write_text("t.csv", "a,y\n1,0\n2,1\nabc,0\n4,1\n"), error="column 'a' is numeric but row 3 holds 'abc'"),
    Case("all-missing column", write_text("t.csv", "a,empty,y\n1,,0\n2,,1\n3,,0\n"), check=_all(_handling("empty", "dropped: every value is missing"), _first_row([1]))),
    Case("constant column", write_text("t.csv", "a,c,y\n1,5,0\n2,5,1\n"), check=_all(_handling("c", "dropped: constant (5 in every row)"), _first_row([1]))),
    Case("huge value", write_text("t.csv", "a,y\n1,0\n1e301,1\n"), error="column 'a' has the value 1e+301 in row 2"),
    Case("overflowing value", write_text("t.csv", "a,y\n1,0\n1e400,1\n2,0\n"), error="column 'a' has the value inf in row 2"),
    Case("the word inf", write_text("t.csv", "a,y\n1,0\n-inf,1\n2,0\n"), error="column 'a' has the value -inf in row 2"),
    Case("blank-looking cells are missing", write_text("t.csv", "a,y\n1,0\n  ,1\n5,0\n"), check=_all(_handling("a", "1 missing imputed by the median 3"), _first_row([1]))),
    Case(
        "missing target cells",
        write_text("t.csv", "a,y\n1,0\n2,\n3,1\n4,\n5,1\n"),
        check=_all(_note("dropped 2 rows whose target 'y' is missing (row 2, 4)"), lambda r: r["matrix"].shape == (3, 1) or pytest.fail()),
    ),
    Case("target missing everywhere", write_text("t.csv", "a,y\n1,\n2,\n"), error="missing in every row"),
    Case("one-class target", write_text("t.csv", "a,y\n1,1\n2,1\n3,1\n"), error="has one class ('1') in all 3 rows"),
    Case(
        "non-numeric regression target",
        write_text("t.csv", "a,y\n1,1.5\n2,high\n3,2.5\n"),
        error="the target 'y' holds text ('high' in row 2)",
        kwargs={"task": "regression"},
    ),
    Case("unknown target", write_text("t.csv", "a,label\n1,0\n2,1\n"), error="did you mean 'label'", kwargs={"target": "lable"}),
    Case("only the target", write_text("t.csv", "y\n1\n0\n"), error="no feature columns"),
    # Excel
    Case("xlsx", write_xlsx({"Data": [["a", "g", "y"], [1.0, "F", 0], [2.5, "M", 1], [None, "F", 1]]}), check=_first_row([1.0, 0.0])),
    Case("xlsx chosen sheet", write_xlsx({"Notes": [["hello"]], "Data": [["a", "y"], [1, 0], [2, 1]]}), check=_columns(["a", "y"]), kwargs={"sheet": "Data"}),
    Case("xlsx empty sheet", write_xlsx({"Empty": []}), error="sheet 'Empty' is empty"),
    Case("xlsx missing sheet", write_xlsx({"Data": [["a", "y"], [1, 0]]}), error="has no sheet 'Dat' (did you mean 'Data'?)", kwargs={"sheet": "Dat"}),
    Case("xlsx header only", write_xlsx({"Data": [["a", "y"]]}), error="no data rows"),
    Case("xlsx blank header", write_xlsx({"Data": [["a", None, "y"], [1, 2, 0], [3, 4, 1]]}), error="header cell 2 is blank"),
    Case("xlsx text in numeric column", write_xlsx({"Data": [["a", "y"], [1, 0], [2, 1], ["two", 0], [4, 1]]}), error="row 3 holds 'two'"),
    Case("not really xlsx", write_text("t.xlsx", "a,y\n1,0\n"), error="could not be read as an Excel workbook"),
    Case("xls", write_bytes("t.xls", b"\xd0\xcf\x11\xe0 not a real workbook"), error=".xls"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_malformed_table_ends_in_a_result_or_a_one_line_error(case: Case, tmp_path):
    path = case.make(tmp_path)
    before = digest(path)
    kwargs = case.kwargs or {}
    if case.error is None:
        result = run_pipeline(path, **kwargs)
        assert np.all(np.isfinite(result["matrix"]))
        case.check(result)
    else:
        with pytest.raises(UserError) as caught:
            run_pipeline(path, **kwargs)
        message = assert_one_line_fix(caught.value)
        assert case.error in message, message
    assert digest(path) == before  # the input file is never modified


def _generated_table(seed: int) -> tuple[str, str, pd.DataFrame]:
    """A random table with missing cells, text levels and a random delimiter, plus what it should read as."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 40))
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=n).round(4),
            "k": rng.integers(0, 1000, size=n).astype(float),
            "colour": rng.choice(["red", "green", "blue"], size=n),
            "sex": rng.choice(["F", "M"], size=n),
            "y": np.r_[0, 1, rng.integers(0, 2, size=n - 2)],
        }
    )
    for column in ("x", "k", "colour", "sex"):
        holes = rng.random(n) < 0.2
        holes[:2] = False  # keep every level and a spread of numbers in the first rows
        frame[column] = frame[column].astype(object).mask(holes)
    delimiter = str(rng.choice([",", ";", "\t"]))
    text = frame.to_csv(sep=delimiter, index=False)
    return delimiter, text, frame


@pytest.mark.parametrize("seed", range(6))
def test_generated_tables_read_back_and_preprocess(seed, tmp_path):
    delimiter, text, frame = _generated_table(seed)
    path = tmp_path / "generated.csv"
    path.write_text(text, encoding="utf-8")
    before = digest(path)
    r = run_pipeline(path)
    assert r["task"] == "classification"
    pd.testing.assert_series_equal(r["table"]["x"].astype(float), frame["x"].astype(float), check_names=False)
    matrix, names = r["matrix"], r["pre"].feature_names_
    assert not np.isnan(matrix).any()
    x_column = matrix[:, names.index("x")]
    missing_x = frame["x"].isna().to_numpy()
    np.testing.assert_allclose(x_column[~missing_x], frame["x"][~missing_x].astype(float))
    np.testing.assert_allclose(x_column[missing_x], np.median(frame["x"].dropna().astype(float)))
    one_hot = matrix[:, [names.index(f"colour={c}") for c in ("blue", "green", "red")]]
    np.testing.assert_array_equal(one_hot.sum(axis=1), 1.0)  # missing colours got the most frequent one
    assert digest(path) == before


# --------------------------------------------------------------------------- preprocessing learns from fit rows only


def test_imputation_uses_only_the_fit_rows():
    table = pd.DataFrame({"a": [1.0, 2.0, 3.0, np.nan, 100.0, 200.0], "c": ["u", "u", "v", None, "v", "v"]})
    train = table.iloc[:4]  # median of a on these rows is 2; on all rows it would be 3
    pre = TablePreprocessor().fit(train)
    out = pre.transform(table)
    assert out[3, 0] == 2.0
    assert out[3, 1] == 0.0  # 'u' is the most frequent of the fit rows (2 of 3), though 'v' wins overall
    report = {row["name"]: row for row in pre.report()}
    assert report["a"]["missing"] == 1 and "median 2" in report["a"]["handling"]
    assert "most frequent 'u'" in report["c"]["handling"]
    np.testing.assert_array_equal(out[4:, 0], [100.0, 200.0])  # transform does not clip or rescale


def test_one_hot_unseen_level_is_all_zeros_with_a_note():
    pre = TablePreprocessor().fit(pd.DataFrame({"c": ["a", "b", "c", "a"]}))
    notes: list[str] = []
    out = pre.transform(pd.DataFrame({"c": ["b", "z"]}), notes)
    np.testing.assert_array_equal(out, [[0, 1, 0], [0, 0, 0]])
    assert pre.feature_names_ == ["c=a", "c=b", "c=c"]
    assert notes == ["column 'c': 'z' not seen in training; encoded as all zeros"]


def test_binary_unseen_level_is_an_error():
    pre = TablePreprocessor().fit(pd.DataFrame({"Gender": ["F", "M", "F"]}))
    with pytest.raises(UserError) as caught:
        pre.transform(pd.DataFrame({"Gender": ["X"]}))
    assert "knows only 'F', 'M'" in assert_one_line_fix(caught.value)


def test_bool_column_is_binary():
    pre = TablePreprocessor().fit(pd.DataFrame({"smoker": [True, False, True]}))
    np.testing.assert_array_equal(pre.transform(pd.DataFrame({"smoker": [False, True]})).ravel(), [0, 1])
    assert pre.report()[0]["type"] == "bool"


@pytest.mark.parametrize(
    "columns, phrase",
    [(["a"], "this table lacks 'b'"), (["a", "b", "z"], "has extra 'z'"), (["a", "bb"], "lacks 'b' (did you mean 'bb'?) and has extra 'bb'")],
)
def test_transform_rejects_other_columns(columns, phrase):
    pre = TablePreprocessor().fit(pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]}))
    with pytest.raises(UserError) as caught:
        pre.transform(pd.DataFrame({c: [1.0] for c in columns}))
    message = assert_one_line_fix(caught.value)
    assert "the model was trained on columns 'a', 'b'" in message and phrase in message


def test_text_in_a_numeric_column_at_predict_time_is_an_error():
    pre = TablePreprocessor().fit(pd.DataFrame({"a": [1.0, 2.0]}))
    with pytest.raises(UserError) as caught:
        pre.transform(pd.DataFrame({"a": ["3", "oops"]}))
    assert "row 2 holds 'oops'" in assert_one_line_fix(caught.value)


def test_mostly_text_column_with_numbers_is_categorical():
    pre = TablePreprocessor().fit(pd.DataFrame({"grade": ["low", "high", "3", "low"]}))
    assert pre.report()[0]["handling"].startswith("one-hot: 3 levels ('3', 'high', 'low')")


def test_state_round_trips_through_json_and_torch_weights_only(tmp_path):
    torch = pytest.importorskip("torch")
    table = pd.DataFrame(
        {"a": [1.0, np.nan, 3.0, 4.0], "g": ["F", "M", None, "F"], "c": ["x", "y", "z", "x"], "k": [7, 7, 7, 7]}
    )
    pre = TablePreprocessor().fit(table)
    state = pre.state()
    via_json = TablePreprocessor.from_state(json.loads(json.dumps(state)))
    torch.save({"preprocessing": state}, tmp_path / "m.pt")
    via_torch = TablePreprocessor.from_state(torch.load(tmp_path / "m.pt", weights_only=True)["preprocessing"])
    new = pd.DataFrame({"a": [np.nan, 2.0], "g": [None, "M"], "c": ["z", None], "k": [1, 2]})
    expected = pre.transform(new)
    np.testing.assert_array_equal(via_json.transform(new), expected)
    np.testing.assert_array_equal(via_torch.transform(new), expected)
    assert via_json.report() == pre.report() and via_json.feature_names_ == pre.feature_names_
    np.testing.assert_array_equal(expected, [[3.0, 0.0, 0.0, 0.0, 1.0], [2.0, 1.0, 1.0, 0.0, 0.0]])


def test_from_state_rejects_a_foreign_state():
    with pytest.raises(UserError) as caught:
        TablePreprocessor.from_state({"version": 99})
    assert_one_line_fix(caught.value)


# --------------------------------------------------------------------------- columns and task


def test_select_columns_features_and_errors():
    table = pd.DataFrame({"age": [1, 2], "height": [3.0, 4.0], "y": [0, 1]})
    X, y, notes = select_columns(table, "y", ["height"])
    assert list(X.columns) == ["height"] and y.tolist() == [0, 1] and notes == []
    for features, phrase in [
        (["heigth"], "unknown feature column 'heigth' (did you mean 'height'?)"),
        (["age", "y"], "also listed as a feature"),
        (["age", "age"], "listed twice"),
        ([], "no feature columns"),
    ]:
        with pytest.raises(UserError) as caught:
            select_columns(table, "y", features)
        assert phrase in assert_one_line_fix(caught.value)


@pytest.mark.parametrize(
    "values, task",
    [
        ([0, 1, 1, 0], "classification"),
        ([0.0, 1.0, 1.0], "classification"),  # whole numbers stored as floats are still labels
        (["a", "b", "a"], "classification"),
        ([True, False, True], "classification"),
        (list(range(10)), "classification"),
        (list(range(11)), "regression"),  # the 11th distinct integer tips it to regression
        ([0.5, 1.0, 2.0], "regression"),
        (["1.5", "2.5", "3"], "regression"),  # numbers written as text
    ],
)
def test_infer_task_rule(values, task):
    assert infer_task(pd.Series(values, name="y")) == task


def test_infer_task_errors():
    for values, task, phrase in [
        ([1.0, 2.0], "regresion", "unknown task 'regresion' (did you mean 'regression'?)"),
        ([2.5, 2.5], "regression", "has one value ('2.5')"),
        (["a", "a"], "auto", "has one class ('a')"),
    ]:
        with pytest.raises(UserError) as caught:
            infer_task(pd.Series(values, name="y"), task)
        assert phrase in assert_one_line_fix(caught.value)


def test_dates_are_an_error():
    with pytest.raises(UserError) as caught:
        TablePreprocessor().fit(pd.DataFrame({"d": pd.to_datetime(["2020-01-01", "2021-01-01"])}))
    assert "holds dates" in assert_one_line_fix(caught.value)


# --------------------------------------------------------------------------- the course's gait table


def test_gait_table_through_the_pipeline():
    path = resources.files("dlconcepts.data").joinpath("files", "gait_tug_bbs.csv")
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    table = read_table(path)
    X, y, notes = select_columns(table, "y1")
    assert X.shape == (23, 24) and notes == []
    assert infer_task(y) == "classification"
    pre = TablePreprocessor().fit(X)
    report = {row["name"]: row for row in pre.report()}
    px_median = float(np.median(table["px"].dropna()))
    assert report["px"]["missing"] == 2
    assert report["px"]["handling"] == f"kept; 2 missing imputed by the median {px_median:.6g}"
    assert report["Gender"]["handling"] == "binary: 'F'→0, 'M'→1"
    matrix = pre.transform(X)
    px = matrix[:, pre.feature_names_.index("px")]
    np.testing.assert_array_equal(px[table["px"].isna().to_numpy()], [px_median, px_median])
    np.testing.assert_array_equal(matrix[:, pre.feature_names_.index("Gender")], (table["Gender"] == "M").astype(float))
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_leakage_suspects_on_the_gait_table():
    from dlconcepts.data.gait import load_gait
    from dlconcepts.data.tables import leakage_suspects

    t = load_gait()

    def flagged(target, task):
        notes = leakage_suspects(t.drop(columns=[target]), t[target].to_numpy(), task)
        return {n.split("'")[1] for n in notes}

    assert flagged("y1", "classification") == {"No", "TUG"}  # y1 is defined as TUG ≥ 14 s
    assert flagged("y2", "classification") == {"No", "BBS"}  # y2 is defined as BBS ≤ 22
    assert flagged("TUG", "regression") == {"No", "time", "t6", "n6"}  # the same measurement, three ways
    rng = np.random.default_rng(0)
    noise = pd.DataFrame({"a": rng.normal(size=23), "b": rng.integers(0, 5, 23)})
    assert leakage_suspects(noise, t["y1"].to_numpy(), "classification") == []


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_malformed_table_through_dlc_train(case: Case, tmp_path, capsys):
    """The same tables through the real command: a finished run or exit 2 with one line; input untouched."""
    from dlconcepts.cli import main

    path = case.make(tmp_path)
    before = digest(path)
    kwargs = case.kwargs or {}
    args = ["train", "--data", str(path), "--target", kwargs.get("target", "y"), "--task", kwargs.get("task", "auto"),
            "--cv", "2", "--epochs", "3", "--out", str(tmp_path / "runs"), "--quiet"]
    if kwargs.get("sheet"):
        args += ["--sheet", kwargs["sheet"]]
    if kwargs.get("features"):
        args += ["--features", ",".join(kwargs["features"])]
    code = main(args)
    err = capsys.readouterr().err
    if case.error is not None:
        assert code == 2 and case.error in err, err
    assert code in (0, 2)
    if code == 2:  # a table fine for reading may still be refused for training (e.g. fewer rows than folds)
        assert err.startswith("dlc: error: ") and err.count("\n") == 1, err
        assert not (tmp_path / "runs").exists()
    else:
        (run_dir,) = (tmp_path / "runs").iterdir()
        assert (run_dir / "model.pt").is_file() and (run_dir / "report.md").is_file()
    assert digest(path) == before
