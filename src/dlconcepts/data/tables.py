"""A user's own table, read, checked and turned into numbers for `dlc train` and `dlc predict`.

Four steps, each a function or class here:

1. `read_table` reads a .csv (delimiter sniffed), .xlsx/.xlsm (openpyxl) or .xls (only with xlrd).
2. `select_columns` picks the target and the features, dropping rows whose target is missing.
3. `infer_task` decides regression or classification from the target.
4. `TablePreprocessor` learns, from the training rows only, how each column becomes numbers
   (imputation, 0/1, one-hot, dropping) and reports what it did per column.

Anything wrong with the user's file is a `UserError` with one line that names the problem and the fix,
so the CLI can print it and exit 2. The input file is only ever opened for reading.
Rows are named as "row N": the N-th data row, 1-based, the header not counted.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections import Counter
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from dlconcepts.errors import UserError, did_you_mean

CSV_SUFFIXES = (".csv",)
EXCEL_SUFFIXES = (".xlsx", ".xlsm")
OLD_EXCEL_SUFFIXES = (".xls",)
DELIMITERS = (",", ";", "\t")
ENCODINGS = ("utf-8", "utf-8-sig", "latin-1")  # latin-1 decodes any bytes, so it is the last resort
HUGE = 1e300  # beyond this a value squares to inf in float64 training; treat it as an entry error
MAX_CLASSIFICATION_LEVELS = 10  # an integer target with at most this many values is a class label
STATE_VERSION = 1

_DECIMAL_COMMA = re.compile(r"^\s*-?\d+,\d+\s*$")
_DECIMAL_POINT = re.compile(r"^\s*-?\d+\.\d+\s*$")


# --------------------------------------------------------------------------- 1. reading


def read_table(path: str | Path, sheet: str | None = None) -> pd.DataFrame:
    """The table in `path` as a DataFrame; anything unreadable is a one-line `UserError`.

    Notes about how the file was read (a latin-1 fallback, decimal commas) are in `table.attrs["notes"]`.
    Blank-looking text cells (only spaces) are missing values, like empty cells.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"data file '{path}' does not exist; check the path")
    if not path.is_file():
        raise UserError(f"data path '{path}' is not a file; give a .csv or .xlsx file")
    suffix = path.suffix.lower()
    if suffix in CSV_SUFFIXES:
        if sheet is not None:
            raise UserError(f"--sheet '{sheet}' was given but '{path.name}' is a CSV file, which has no sheets; drop --sheet")
        table, notes = _read_csv(path)
    elif suffix in EXCEL_SUFFIXES:
        table, notes = _read_xlsx(path, sheet)
    elif suffix in OLD_EXCEL_SUFFIXES:
        table, notes = _read_xls(path, sheet)
    else:
        known = CSV_SUFFIXES + EXCEL_SUFFIXES + OLD_EXCEL_SUFFIXES
        raise UserError(f"data file '{path.name}' has unknown type '{suffix or '(no extension)'}'; use one of {', '.join(known)}")
    table = _blank_text_to_missing(table)
    table.attrs["notes"] = notes
    return table


def _read_csv(path: Path) -> tuple[pd.DataFrame, list[str]]:
    notes: list[str] = []
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise UserError(f"cannot read '{path}': {err.strerror or err}; check the file's permissions") from None
    if b"\x00" in raw:
        raise UserError(f"'{path.name}' is not a text CSV file (it holds binary data); export the table as CSV (UTF-8)")
    text, encoding = _decode(raw)
    if encoding == "latin-1":
        notes.append(f"'{path.name}' is not valid UTF-8; read it as latin-1 (save it as UTF-8 if accents look wrong)")
    if not text.strip():
        raise UserError(f"'{path.name}' is empty; give a table with a header row and at least one data row")
    delimiter, rows = _sniff(text)
    header = rows[0][1]
    _check_header([h.strip() for h in header], path.name)
    for line, fields in rows[1:]:
        if len(fields) != len(header):
            raise UserError(
                f"'{path.name}' line {line} has {len(fields)} fields but the header has {len(header)}; "
                f"fix that row (delimiter '{_show_delimiter(delimiter)}')"
            )
    if len(rows) == 1:
        raise UserError(f"'{path.name}' has a header but no data rows; add rows to the table")
    decimal = "." if delimiter == "," else _decimal_mark(rows[1:])
    if decimal == ",":
        notes.append(f"'{path.name}' uses decimal commas (1,5 = 1.5)")
    names = [h.strip() for h in header]
    try:
        table = pd.read_csv(
            io.StringIO(text), sep=delimiter, header=0, names=names, decimal=decimal, skip_blank_lines=True
        )
    except (pd.errors.ParserError, ValueError) as err:  # the checks above should leave nothing, but pandas decides
        raise UserError(f"'{path.name}' could not be parsed as CSV ({str(err).splitlines()[0]}); check its format") from None
    return table, notes


def _decode(raw: bytes) -> tuple[str, str]:
    for encoding in ENCODINGS:
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError:
            continue
        return text.removeprefix("\ufeff"), encoding
    raise AssertionError("latin-1 decodes every byte")  # pragma: no cover


def _sniff(text: str) -> tuple[str, list[tuple[int, list[str]]]]:
    """The delimiter among `DELIMITERS` whose rows all match the header's width, with the widest header.

    When none fits every row, the widest-header one is kept so the ragged line can be reported.
    Returns (delimiter, [(line number, fields)]) without blank lines.
    """
    parsed: dict[str, list[tuple[int, list[str]]]] = {}
    for delimiter in DELIMITERS:
        try:
            reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
            parsed[delimiter] = [(reader.line_num, fields) for fields in reader if any(f.strip() for f in fields) or len(fields) > 1]
        except csv.Error as err:
            raise UserError(f"CSV text could not be parsed ({err}); check for an unclosed quote") from None

    def width(delimiter: str) -> int:
        return len(parsed[delimiter][0][1])

    def consistent(delimiter: str) -> bool:
        return all(len(fields) == width(delimiter) for _, fields in parsed[delimiter])

    fitting = [d for d in DELIMITERS if width(d) > 1 and consistent(d)]
    if fitting:
        best = max(fitting, key=width)  # max keeps the first of equals: comma before semicolon before tab
    else:
        best = max(DELIMITERS, key=width)
    return best, parsed[best]


def _decimal_mark(rows: list[tuple[int, list[str]]]) -> str:
    cells = [cell for _, fields in rows for cell in fields]
    if any(_DECIMAL_COMMA.match(c) for c in cells) and not any(_DECIMAL_POINT.match(c) for c in cells):
        return ","
    return "."


def _show_delimiter(delimiter: str) -> str:
    return "\\t" if delimiter == "\t" else delimiter


def _check_header(names: list[str], where: str) -> None:
    blank = [i + 1 for i, name in enumerate(names) if not name]
    if blank:
        raise UserError(f"{where}: header cell{'s' if len(blank) > 1 else ''} {_join(blank)} is blank; give every column a name")
    repeated = [name for name, count in Counter(names).items() if count > 1]
    if repeated:
        raise UserError(f"{where}: duplicate column header{'s' if len(repeated) > 1 else ''} {_quote(repeated)}; rename them so each is unique")


def _read_xlsx(path: Path, sheet: str | None) -> tuple[pd.DataFrame, list[str]]:
    import openpyxl  # only needed for Excel files

    try:
        # read_only: the workbook is streamed and never saved, so the input file cannot change
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as err:  # openpyxl raises zip, XML and its own errors for a bad file; all mean "unreadable"
        raise UserError(f"'{path.name}' could not be read as an Excel workbook ({type(err).__name__}); re-save it as .xlsx") from None
    try:
        names = book.sheetnames
        if sheet is None:
            sheet = names[0]
        elif sheet not in names:
            raise UserError(f"'{path.name}' has no sheet '{sheet}'{did_you_mean(sheet, names)}; its sheets are {_quote(names)}")
        rows = [list(r) for r in book[sheet].iter_rows(values_only=True)]
    finally:
        book.close()
    return _table_from_rows(rows, f"'{path.name}' sheet '{sheet}'"), []


def _read_xls(path: Path, sheet: str | None) -> tuple[pd.DataFrame, list[str]]:
    try:
        import xlrd  # noqa: F401  (pandas needs it for .xls)
    except ImportError:
        raise UserError(f"'{path.name}' is an old .xls workbook; install xlrd (pip install xlrd) or save it as .xlsx") from None
    try:
        sheets = pd.read_excel(path, sheet_name=None, header=None, engine="xlrd")
    except Exception as err:  # xlrd's errors for a bad file have no common base; all mean "unreadable"
        raise UserError(f"'{path.name}' could not be read as an .xls workbook ({type(err).__name__}); save it as .xlsx") from None
    names = list(sheets)
    if sheet is None:
        sheet = names[0]
    elif sheet not in names:
        raise UserError(f"'{path.name}' has no sheet '{sheet}'{did_you_mean(sheet, names)}; its sheets are {_quote(names)}")
    frame = sheets[sheet].astype(object).where(sheets[sheet].notna(), None)
    return _table_from_rows(frame.values.tolist(), f"'{path.name}' sheet '{sheet}'"), []


def _table_from_rows(rows: list[list], where: str) -> pd.DataFrame:
    """Cells of a sheet (first row = header) to a DataFrame, trailing empty rows and columns trimmed."""
    rows = [r for r in rows if any(not _empty(v) for v in r)]
    if not rows:
        raise UserError(f"{where} is empty; put a header row and data rows in it or choose another sheet")
    width = max(i + 1 for r in rows for i, v in enumerate(r) if not _empty(v))
    rows = [list(r[:width]) + [None] * (width - len(r)) for r in rows]
    header = ["" if _empty(v) else str(v).strip() for v in rows[0]]
    _check_header(header, where)
    if len(rows) == 1:
        raise UserError(f"{where} has a header but no data rows; add rows to the table")
    table = pd.DataFrame([[None if _empty(v) else v for v in r] for r in rows[1:]], columns=header)
    return table.infer_objects()


def _empty(value) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _blank_text_to_missing(table: pd.DataFrame) -> pd.DataFrame:
    for column in table.columns:
        if not (pd.api.types.is_numeric_dtype(table[column]) or pd.api.types.is_datetime64_any_dtype(table[column])):
            blank = table[column].map(lambda v: isinstance(v, str) and not v.strip()).astype(bool)
            if blank.any():
                table[column] = table[column].mask(blank)
    return table


# --------------------------------------------------------------------------- 2. choosing columns


class Selection(NamedTuple):
    X: pd.DataFrame  # the feature columns, rows with a missing target removed (original index kept)
    y: pd.Series  # the target column for those rows
    notes: list[str]  # what was done to the rows (e.g. dropped for a missing target), for the report


def select_columns(table: pd.DataFrame, target: str, features: list[str] | None = None) -> Selection:
    """The feature table and target; `features` defaults to every column except the target."""
    columns = [str(c) for c in table.columns]
    if target not in columns:
        raise UserError(f"unknown target column '{target}'{did_you_mean(target, columns)}; the columns are {_quote(columns)}")
    if features is None:
        features = [c for c in columns if c != target]
    else:
        features = list(features)
        unknown = [f for f in features if f not in columns]
        if unknown:
            hints = "".join(did_you_mean(f, columns) for f in unknown[:1])
            raise UserError(f"unknown feature column{'s' if len(unknown) > 1 else ''} {_quote(unknown)}{hints}; the columns are {_quote(columns)}")
        if target in features:
            raise UserError(f"the target '{target}' is also listed as a feature; remove it from --features")
        repeated = [f for f, count in Counter(features).items() if count > 1]
        if repeated:
            raise UserError(f"feature{'s' if len(repeated) > 1 else ''} {_quote(repeated)} listed twice in --features; list each once")
    if not features:
        raise UserError(f"no feature columns: the table has only the target '{target}'; add feature columns")
    notes: list[str] = []
    missing = table[target].isna()
    if missing.all():
        raise UserError(f"the target '{target}' is missing in every row; choose a target column with values")
    if missing.any():
        rows = [i + 1 for i in np.flatnonzero(missing.to_numpy())]
        notes.append(f"dropped {len(rows)} row{'s' if len(rows) > 1 else ''} whose target '{target}' is missing (row {_join(rows)})")
    kept = ~missing
    return Selection(table.loc[kept, features], table.loc[kept, target], notes)


# --------------------------------------------------------------------------- 3. the task


def infer_task(y: pd.Series, task: str = "auto") -> str:
    """'regression' or 'classification' for the target `y` (no missing values).

    The rule for `task="auto"`: text or true/false targets are classes; a numeric target whose
    values are all whole numbers and that takes at most `MAX_CLASSIFICATION_LEVELS` (10) distinct
    values is a class label (0/1, grades 1–5); any other numeric target is regressed.
    """
    tasks = ("auto", "regression", "classification")
    if task not in tasks:
        raise UserError(f"unknown task '{task}'{did_you_mean(task, tasks)}; use one of {', '.join(tasks)}")
    values = y.dropna()
    name = y.name
    numeric = _numeric_values(values)
    if task == "regression":
        if numeric is None:
            bad = _first_non_numeric(values)
            raise UserError(
                f"the target '{name}' holds text ({_repr(bad[1])} in row {bad[0]}); regression needs numbers — "
                "fix those cells or use --task classification"
            )
    if task == "auto":
        if numeric is None or pd.api.types.is_bool_dtype(values):
            task = "classification"
        else:
            whole = bool(np.all(np.isfinite(numeric)) and np.all(numeric == np.round(numeric)))
            task = "classification" if whole and len(np.unique(numeric)) <= MAX_CLASSIFICATION_LEVELS else "regression"
    distinct = values.astype(str).unique() if task == "classification" else np.unique(numeric)
    if len(distinct) < 2:
        what = "one class" if task == "classification" else "one value"
        raise UserError(
            f"the target '{name}' has {what} ({_repr(distinct[0])}) in all {len(values)} rows; "
            f"{task} needs at least two — choose another target or add rows with other values"
        )
    return task


def _numeric_values(values: pd.Series) -> np.ndarray | None:
    """The values as float64 when every one is a number (also numbers written as text), else None."""
    if pd.api.types.is_bool_dtype(values):
        return values.astype(np.float64).to_numpy()
    if pd.api.types.is_numeric_dtype(values):
        return values.to_numpy(dtype=np.float64)
    parsed = pd.to_numeric(values.map(_as_number_text), errors="coerce")
    if parsed.notna().all():
        return parsed.to_numpy(dtype=np.float64)
    return None


def _as_number_text(value):
    return np.nan if isinstance(value, bool) else value  # True/False are categories, not 1/0


def _first_non_numeric(values: pd.Series) -> tuple[int, object]:
    parsed = pd.to_numeric(values.map(_as_number_text), errors="coerce")
    bad = np.flatnonzero((parsed.isna() & values.notna()).to_numpy())
    return _row_number(values, bad[0]), values.iloc[bad[0]]


def _row_number(values: pd.Series, position: int) -> int:
    """The 1-based table row of `values.iloc[position]`: tables keep their read-time index through selection."""
    label = values.index[position]
    return int(label) + 1 if isinstance(label, (int, np.integer)) else position + 1


# --------------------------------------------------------------------------- 4. preprocessing

NUMERIC, BINARY, ONE_HOT, DROPPED = "numeric", "binary", "one-hot", "dropped"


class TablePreprocessor:
    """Turns a feature table into a float64 matrix, learning everything from the rows given to `fit`.

    Per column (scikit-learn's contract: `fit` learns, `transform` applies, learned attributes end in `_`):

    - numeric: kept; missing cells get the median of the fit rows. Text cells in a column that is
      mostly numbers (more than half of its non-missing cells) are an error naming the first bad cell;
      a column that is mostly text is categorical, its number-looking cells are just more levels.
    - text (or true/false) with 2 levels: 0/1 (levels sorted, the first is 0); missing → most frequent.
    - text with more levels: one-hot, one 0/1 column per level; a level not seen by `fit` becomes all
      zeros at `transform` (with a note); missing → most frequent.
    - constant or all-missing columns: dropped (noted in the report).
    - inf or |x| > 1e300: an error naming the column and row; dates: an error asking for numbers.
    """

    def fit(self, X: pd.DataFrame) -> "TablePreprocessor":
        if len(X) == 0:
            raise UserError("no rows to learn the preprocessing from; the table (or training fold) is empty")
        self.columns_ = [str(c) for c in X.columns]
        self.plans_ = [_plan_column(X[c], str(c)) for c in X.columns]
        self.feature_names_ = [name for plan in self.plans_ for name in _output_names(plan)]
        return self

    def transform(self, X: pd.DataFrame, notes: list[str] | None = None) -> np.ndarray:
        """The (rows, len(feature_names_)) float64 matrix; notes on unseen levels go into `notes`."""
        self._check_columns(X)
        blocks = [_apply_plan(plan, X[plan["name"]], notes) for plan in self.plans_ if plan["kind"] != DROPPED]
        if not blocks:
            return np.zeros((len(X), 0))
        return np.column_stack(blocks).astype(np.float64)

    def fit_transform(self, X: pd.DataFrame, notes: list[str] | None = None) -> np.ndarray:
        return self.fit(X).transform(X, notes)

    def report(self) -> list[dict[str, object]]:
        """Per input column: name, type, missing count (in the fit rows) and how it was handled."""
        return [{key: plan[key] for key in ("name", "type", "missing", "handling")} for plan in self.plans_]

    def state(self) -> dict:
        """Plain dicts, lists, str, float, int and None: JSON- and `torch.load(weights_only=True)`-safe."""
        return {"version": STATE_VERSION, "columns": list(self.columns_), "plans": [dict(p) for p in self.plans_]}

    @classmethod
    def from_state(cls, state: dict) -> "TablePreprocessor":
        """The preprocessor `state()` described, for `dlc predict`."""
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            raise UserError("the saved model's preprocessing is missing or from another version; retrain the model with dlc train")
        pre = cls()
        pre.columns_ = list(state["columns"])
        pre.plans_ = [dict(p) for p in state["plans"]]
        pre.feature_names_ = [name for plan in pre.plans_ for name in _output_names(plan)]
        return pre

    def _check_columns(self, X: pd.DataFrame) -> None:
        given = [str(c) for c in X.columns]
        lacks = [c for c in self.columns_ if c not in given]
        extra = [c for c in given if c not in self.columns_]
        if lacks or extra:
            parts = []
            if lacks:
                parts.append(f"this table lacks {_quote(lacks)}{did_you_mean(lacks[0], extra)}")
            if extra:
                parts.append(f"has extra {_quote(extra)}")
            raise UserError(f"the model was trained on columns {_quote(self.columns_)}; {' and '.join(parts)} — give a table with exactly those columns")


def _plan_column(column: pd.Series, name: str) -> dict:
    """How one column becomes numbers, learned from its fit rows only."""
    missing = int(column.isna().sum())
    values = column.dropna()
    plan: dict = {"name": name, "missing": missing, "fill": None, "levels": []}
    if pd.api.types.is_datetime64_any_dtype(column) or any(isinstance(v, (pd.Timestamp, np.datetime64)) for v in values):
        raise UserError(f"column '{name}' holds dates; convert it to numbers (e.g. days since a start) or leave it out of --features")
    if values.empty:
        return {**plan, "type": "empty", "kind": DROPPED, "handling": "dropped: every value is missing"}
    numbers = _numeric_column(values, name)
    if numbers is not None:
        _check_finite(numbers, values, name)
        plan["type"] = "numeric"
        distinct = np.unique(numbers)
        if len(distinct) == 1:
            return {**plan, "kind": DROPPED, "handling": f"dropped: constant ({_number(distinct[0])} in every row)"}
        median = float(np.median(numbers))
        handling = "kept" if not missing else f"kept; {missing} missing imputed by the median {_number(median)}"
        return {**plan, "kind": NUMERIC, "fill": median, "handling": handling}
    texts = values.map(str)
    plan["type"] = "bool" if pd.api.types.is_bool_dtype(values) or all(isinstance(v, (bool, np.bool_)) for v in values) else "text"
    levels = sorted(texts.unique())
    if len(levels) == 1:
        return {**plan, "kind": DROPPED, "handling": f"dropped: constant ({_repr(levels[0])} in every row)"}
    counts = texts.value_counts()
    most_frequent = min(counts.index[counts == counts.max()])  # ties: the first level in sorted order
    imputed = f"; {missing} missing imputed by the most frequent {_repr(most_frequent)}" if missing else ""
    if len(levels) == 2:
        handling = f"binary: {_repr(levels[0])}→0, {_repr(levels[1])}→1{imputed}"
        return {**plan, "kind": BINARY, "fill": most_frequent, "levels": levels, "handling": handling}
    handling = f"one-hot: {len(levels)} levels ({', '.join(map(_repr, levels))}){imputed}"
    return {**plan, "kind": ONE_HOT, "fill": most_frequent, "levels": levels, "handling": handling}


def _numeric_column(values: pd.Series, name: str) -> np.ndarray | None:
    """The column's numbers; None when it is text; an error when it is numbers with a few text cells."""
    if pd.api.types.is_bool_dtype(values):
        return None  # true/false is a two-level category, encoded 0/1 by its sorted levels
    numbers = _numeric_values(values)
    if numbers is not None:
        return numbers
    parsed = pd.to_numeric(values.map(_as_number_text), errors="coerce")
    if parsed.notna().sum() * 2 > len(values):
        row, bad = _first_non_numeric(values)
        raise UserError(
            f"column '{name}' is numeric but row {row} holds {_repr(bad)}; correct that cell or leave it empty (empty cells are imputed)"
        )
    return None


def _check_finite(numbers: np.ndarray, values: pd.Series, name: str) -> None:
    bad = np.flatnonzero(~np.isfinite(numbers) | (np.abs(numbers) > HUGE))
    if len(bad):
        row = _row_number(values, bad[0])
        raise UserError(
            f"column '{name}' has the value {numbers[bad[0]]:g} in row {row} (beyond ±1e300); correct it or leave the cell empty"
        )


def _apply_plan(plan: dict, column: pd.Series, notes: list[str] | None) -> np.ndarray:
    name, kind = plan["name"], plan["kind"]
    if kind == NUMERIC:
        values = column.dropna()
        numbers = _numeric_values(values)
        if numbers is None:
            row, bad = _first_non_numeric(values)
            raise UserError(f"column '{name}' must be numeric but row {row} holds {_repr(bad)}; correct that cell or leave it empty")
        _check_finite(numbers, values, name)
        out = np.full(len(column), plan["fill"], dtype=np.float64)
        out[column.notna().to_numpy()] = numbers
        return out
    texts = column.map(lambda v: plan["fill"] if _is_missing(v) else str(v))
    if kind == BINARY:
        unknown = sorted(set(texts) - set(plan["levels"]))
        if unknown:
            raise UserError(
                f"column '{name}' has {_repr(unknown[0])}, but the model knows only {_quote(plan['levels'])}; use one of those values"
            )
        return (texts == plan["levels"][1]).to_numpy(dtype=np.float64)
    unknown = sorted(set(texts) - set(plan["levels"]))
    if unknown and notes is not None:
        notes.append(f"column '{name}': {_quote(unknown)} not seen in training; encoded as all zeros")
    return np.column_stack([(texts == level).to_numpy(dtype=np.float64) for level in plan["levels"]])


def _output_names(plan: dict) -> list[str]:
    if plan["kind"] == DROPPED:
        return []
    if plan["kind"] == ONE_HOT:
        return [f"{plan['name']}={level}" for level in plan["levels"]]
    return [plan["name"]]


def _is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


# --------------------------------------------------------------------------- message helpers


def _quote(items) -> str:
    return ", ".join(f"'{i}'" for i in items)


def _join(numbers) -> str:
    numbers = list(numbers)
    shown = ", ".join(map(str, numbers[:10]))
    return shown + (f" … ({len(numbers)} in all)" if len(numbers) > 10 else "")


def _repr(value) -> str:
    text = str(value).replace("\n", " ")
    return f"'{text[:40]}…'" if len(text) > 40 else f"'{text}'"


def _number(x: float) -> str:
    return f"{x:.6g}"


def leakage_suspects(X: pd.DataFrame, y: np.ndarray, task: str) -> list[str]:
    """Notes on feature columns that look like a row identifier or like the target itself.

    Not errors — the user may know better — but said in the report, because both make a model look
    better on the table than it will be on new rows:
    * an identifier (whole numbers, one distinct value per row, consecutive) carries no information;
    * a column that alone separates the two classes perfectly (classification), or that correlates
      with the target beyond 0.99 (regression), is often the target's definition or a copy of it
      (the gait table's y1 is TUG ≥ 14 s).
    """
    notes = []
    y = np.asarray(y)
    for name in X.columns:
        values = pd.to_numeric(X[name], errors="coerce")
        if values.isna().all() or values.nunique() < 2:
            continue
        known = values.notna().to_numpy()
        v = values.to_numpy(dtype=float)
        if known.all() and np.all(v == np.round(v)) and len(np.unique(v)) == len(v) and np.ptp(v) == len(v) - 1:
            notes.append(f"column '{name}' looks like a row identifier ({v.min():g}…{v.max():g}, one per row): it says "
                         f"nothing about new rows; leave it out with --features")
            continue
        if task == "classification":
            classes = np.unique(y[known])
            if len(classes) == 2:
                a, b = v[known][y[known] == classes[0]], v[known][y[known] == classes[1]]
                if a.max() < b.min() or b.max() < a.min():
                    notes.append(f"column '{name}' alone separates the classes perfectly: if the target is defined from "
                                 f"it (or it copies the target), this is leakage; leave it out with --features")
        elif np.std(v[known]) > 0 and np.std(y[known].astype(float)) > 0:
            r = float(np.corrcoef(v[known], y[known].astype(float))[0, 1])
            if abs(r) > 0.99:
                notes.append(f"column '{name}' correlates {r:.3f} with the target: if it measures the same thing, this "
                             f"is leakage; leave it out with --features")
    return notes
