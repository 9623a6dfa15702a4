""""Use Excel to verify": the walk-through as a workbook whose every layer is a live spreadsheet formula.

The slides recompute each layer as X·Wᵀ + b and say "Use Excel to verify". `build_workbook` writes
that workbook for any walk-through (any MLP of Linear layers with ReLU/Sigmoid/Tanh):

- sheet `inputs`: X, one row per example (yellow: change it and every layer follows);
- one sheet per layer: W with the course's names beside it, b, the layer's inputs (linked to the
  sheet before), k = MMULT(inputs, TRANSPOSE(W)) as an array formula, z = k + b (the slides'
  "k + b = n" step), a = f(z) where the layer has an activation, and next to z and a PyTorch's own
  values and the difference, with the sheet's largest |difference|.

MMULT/TRANSPOSE are written as classic array formulas ({=…}), which Excel and LibreOffice both
recalculate; the bias is added cell by cell, so no array broadcasting is needed.

`recalculate` opens a workbook in LibreOffice headless with a private profile whose setting
"recalculation on file load" is *always* (LibreOffice's default for .xlsx trusts the values cached
in the file, so without it a formula's stale value would be read back as if computed), and returns
the recalculated values.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from openpyxl import Workbook, load_workbook
from openpyxl.styles import Font, PatternFill
from openpyxl.utils import get_column_letter, quote_sheetname
from openpyxl.worksheet.formula import ArrayFormula
from openpyxl.worksheet.worksheet import Worksheet

from dlconcepts.errors import UserError
from dlconcepts.explain.matrix import LayerStep, Walkthrough
from dlconcepts.runs import atomic_write_bytes

# The activations as spreadsheet formulas of one cell z (scratch.mlp.ACTIVATIONS, slide: σ(z) = 1/(1+e^(−z))).
ACTIVATION_FORMULAS = {
    "sigmoid": "1/(1+EXP(-{z}))",
    "tanh": "TANH({z})",
    "relu": "MAX(0,{z})",
}

_EDITABLE = PatternFill("solid", fgColor="FFF2CC")
_PYTORCH = PatternFill("solid", fgColor="DDEBF7")
_BOLD = Font(bold=True)
_VALUE_FORMAT = "0.0000"
_DIFF_FORMAT = "0.0E+00"


@dataclass(frozen=True)
class Block:
    """A rectangle of values on one sheet: first value at (top, left), 1-based like the spreadsheet."""

    sheet: str
    top: int
    left: int
    rows: int
    cols: int

    def cell(self, i: int, j: int, absolute: bool = False) -> str:
        col, row = get_column_letter(self.left + j), self.top + i
        return f"${col}${row}" if absolute else f"{col}{row}"

    def range(self, other_sheet: bool = False) -> str:
        ref = f"{self.cell(0, 0, True)}:{self.cell(self.rows - 1, self.cols - 1, True)}"
        return f"{quote_sheetname(self.sheet)}!{ref}" if other_sheet else ref


@dataclass(frozen=True)
class LayerBlocks:
    """Where one layer sheet keeps its formulas (z, a), PyTorch's values, and the differences."""

    z: Block
    a: Block  # the same as z when the layer has no activation
    torch_z: Block
    torch_a: Block
    max_abs_diff: Block  # one cell


@dataclass(frozen=True)
class WorkbookLayout:
    inputs: Block
    layers: list[LayerBlocks]


# --- writing ----------------------------------------------------------------------------------------


def _write_block(
    ws: Worksheet, top: int, left: int, title: str, col_headers: Sequence[str], row_headers: Sequence[str],
    values: np.ndarray | Sequence[Sequence[object]], number_format: str | None = _VALUE_FORMAT,
    fill: PatternFill | None = None,
) -> Block:
    """Title at (top, left−1), column headers on the next row, row headers in column left−1, then the values."""
    ws.cell(top, left - 1, title).font = _BOLD
    for j, header in enumerate(col_headers):
        ws.cell(top + 1, left + j, header).font = _BOLD
    for i, header in enumerate(row_headers):
        ws.cell(top + 2 + i, left - 1, header).font = _BOLD
    block = Block(ws.title, top + 2, left, len(row_headers), len(col_headers))
    for i in range(block.rows):
        for j in range(block.cols):
            cell = ws.cell(block.top + i, block.left + j)
            value = values[i][j]
            cell.value = float(value) if isinstance(value, (float, np.floating, int, np.integer)) else value
            if number_format:
                cell.number_format = number_format
            if fill:
                cell.fill = fill
    return block


def _formulas(block_shape: tuple[int, int], make) -> list[list[str]]:
    return [[make(i, j) for j in range(block_shape[1])] for i in range(block_shape[0])]


def _write_layer_sheet(wb: Workbook, step: LayerStep, source: Block, examples: list[str]) -> LayerBlocks:
    ws = wb.create_sheet(f"layer {step.number}")
    W, b = step.layer.W, step.layer.b
    m, n = source.rows, W.shape[0]
    ws.cell(1, 1, step.title()).font = Font(bold=True, size=13)
    ws.cell(2, 1, "z = X·Wᵀ + b computed by the formulas below (k = MMULT(inputs, TRANSPOSE(W)), then z = k + b"
            + ("" if step.layer.activation == "identity" else f", then a = {step.layer.activation}(z)")
            + "). Yellow cells are numbers you may change; blue cells are PyTorch's own outputs.")
    w_block = _write_block(ws, 4, 2, f"W{step.number} (weight)", step.input_names, step.output_names, W, fill=_EDITABLE)
    _write_block(ws, 4, w_block.left + w_block.cols + 2, "course names", step.input_names, step.output_names,
                 step.weight_names, number_format=None)
    row = w_block.top + w_block.rows + 1
    b_block = _write_block(ws, row, 2, f"b{step.number} (bias)", step.bias_names, ["b"], [b], fill=_EDITABLE)
    row = b_block.top + 2

    inputs = _write_block(ws, row, 2, "inputs of this layer", step.input_names, examples,
                          _formulas((m, source.cols), lambda i, j: f"={quote_sheetname(source.sheet)}!{source.cell(i, j)}"))
    row = inputs.top + m + 1
    k_block = _write_block(ws, row, 2, "k = MMULT(inputs, TRANSPOSE(W))", step.output_names, examples,
                           [[None] * n for _ in range(m)])
    ws.cell(k_block.top, k_block.left).value = ArrayFormula(
        f"{k_block.cell(0, 0)}:{k_block.cell(m - 1, n - 1)}", f"=MMULT({inputs.range()},TRANSPOSE({w_block.range()}))"
    )
    row = k_block.top + m + 1

    beside = n + 2  # a value block, a blank column, the next block's row headers
    z_block = _write_block(ws, row, 2, "z = k + b", step.output_names, examples,
                           _formulas((m, n), lambda i, j: f"={k_block.cell(i, j)}+{b_block.cell(0, j, True)}"))
    torch_z = _write_block(ws, row, 2 + beside, f"PyTorch: net[{step.linear_name}](inputs)", step.output_names,
                           examples, step.module_Z, fill=_PYTORCH)
    diffs = [_write_block(ws, row, 2 + 2 * beside, "z − PyTorch", step.output_names, examples,
                          _formulas((m, n), lambda i, j: f"={z_block.cell(i, j)}-{torch_z.cell(i, j)}"), _DIFF_FORMAT)]
    a_block, torch_a = z_block, torch_z
    if step.layer.activation != "identity":
        formula = ACTIVATION_FORMULAS[step.layer.activation]
        row = z_block.top + m + 1
        a_block = _write_block(ws, row, 2, f"a = {step.layer.activation}(z)", step.output_names, examples,
                               _formulas((m, n), lambda i, j: "=" + formula.format(z=z_block.cell(i, j))))
        torch_a = _write_block(ws, row, 2 + beside, f"PyTorch: {step.layer.activation} module's output",
                               step.output_names, examples, step.module_A, fill=_PYTORCH)
        diffs.append(_write_block(ws, row, 2 + 2 * beside, "a − PyTorch", step.output_names, examples,
                                  _formulas((m, n), lambda i, j: f"={a_block.cell(i, j)}-{torch_a.cell(i, j)}"),
                                  _DIFF_FORMAT))
    row = a_block.top + m + 1
    ws.cell(row, 1, "largest |spreadsheet − PyTorch| on this sheet").font = _BOLD
    target = ws.cell(row, 2)
    target.value = ArrayFormula(target.coordinate, "=MAX(" + ",".join(f"ABS({d.range()})" for d in diffs) + ")")
    target.number_format = _DIFF_FORMAT
    ws.column_dimensions["A"].width = 34
    return LayerBlocks(z=z_block, a=a_block, torch_z=torch_z, torch_a=torch_a,
                       max_abs_diff=Block(ws.title, row, 2, 1, 1))


def build_workbook(walk: Walkthrough) -> tuple[Workbook, WorkbookLayout]:
    """The workbook for a walk-through, and where its blocks are (to read the recalculated values back)."""
    wb = Workbook()
    ws = wb.active
    ws.title = "inputs"
    arrow = "→".join(map(str, walk.layer_sizes))
    ws.cell(1, 1, f"MLP {arrow}: the inputs X, one row per example").font = Font(bold=True, size=13)
    ws.cell(2, 1, "Change a yellow cell and every layer sheet recomputes; PyTorch's columns keep the values "
                  "PyTorch computed, so the differences show the change.")
    examples = [f"example {i + 1}" for i in range(walk.X.shape[0])]
    inputs = _write_block(ws, 4, 2, "X", walk.steps[0].input_names, examples, walk.X, fill=_EDITABLE)
    ws.column_dimensions["A"].width = 34
    layers, source = [], inputs
    for step in walk.steps:
        blocks = _write_layer_sheet(wb, step, source, examples)
        layers.append(blocks)
        source = blocks.a
    return wb, WorkbookLayout(inputs=inputs, layers=layers)


def workbook_bytes(walk: Walkthrough) -> bytes:
    buffer = io.BytesIO()
    build_workbook(walk)[0].save(buffer)
    return buffer.getvalue()


def write_workbook(walk: Walkthrough, path: str | Path) -> Path:
    """Write the workbook atomically to `path` (.xlsx); a bad path is a UserError and writes nothing."""
    path = Path(path)
    if path.suffix.lower() != ".xlsx":
        raise UserError(f"the workbook path {str(path)!r} must end in .xlsx, e.g. matrix.xlsx")
    data = workbook_bytes(walk)
    try:
        return atomic_write_bytes(path, data)
    except OSError as exc:
        raise UserError(f"cannot write {str(path)!r}: {exc.strerror or exc}; choose a writable path") from None


# --- recalculating in a real spreadsheet engine -----------------------------------------------------


class SpreadsheetEngineMissing(UserError):
    """LibreOffice (`soffice`) is not installed."""


# LibreOffice's "Recalculation on File Load" for Excel 2007+ and ODF files: 0 = always.
_ALWAYS_RECALCULATE = """<?xml version="1.0" encoding="UTF-8"?>
<oor:items xmlns:oor="http://openoffice.org/2001/registry" xmlns:xs="http://www.w3.org/2001/XMLSchema" \
xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<item oor:path="/org.openoffice.Office.Calc/Formula/Load"><prop oor:name="OOXMLRecalcMode" oor:op="fuse"><value>0</value></prop></item>
<item oor:path="/org.openoffice.Office.Calc/Formula/Load"><prop oor:name="ODFRecalcMode" oor:op="fuse"><value>0</value></prop></item>
</oor:items>
"""


def find_soffice() -> str | None:
    return shutil.which("soffice") or shutil.which("libreoffice")


def recalculate(path: str | Path, timeout: float = 120.0) -> Workbook:
    """Open `path` in LibreOffice headless, recalculate every formula, and return the values (data_only).

    LibreOffice converts the file to .xlsx in a private temporary profile (so parallel runs never
    share a lock) whose setting makes it recalculate on load instead of trusting cached values.
    """
    soffice = find_soffice()
    if soffice is None:
        raise SpreadsheetEngineMissing(
            "LibreOffice (soffice) is not installed, so the workbook cannot be recalculated; "
            "install it (Debian/Ubuntu: apt-get install libreoffice-calc-nogui)"
        )
    with tempfile.TemporaryDirectory(prefix="dlc-soffice-") as tmp:
        tmp_dir = Path(tmp)
        (tmp_dir / "profile" / "user").mkdir(parents=True)
        (tmp_dir / "profile" / "user" / "registrymodifications.xcu").write_text(_ALWAYS_RECALCULATE)
        (tmp_dir / "in").mkdir()
        source = tmp_dir / "in" / "workbook.xlsx"
        shutil.copyfile(path, source)
        command = [
            soffice, f"-env:UserInstallation={(tmp_dir / 'profile').as_uri()}", "--headless", "--norestore",
            "--calc", "--convert-to", "xlsx", "--outdir", str(tmp_dir / "out"), str(source),
        ]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise UserError(f"LibreOffice did not finish recalculating {path} within {timeout:.0f} s") from None
        result = tmp_dir / "out" / "workbook.xlsx"
        if done.returncode != 0 or not result.exists():
            detail = (done.stderr or done.stdout).strip().splitlines()
            raise UserError(f"LibreOffice could not recalculate {path} (exit code {done.returncode}"
                            f"{': ' + detail[-1] if detail else ''})")
        return load_workbook(result, data_only=True)


def read_block(wb: Workbook, block: Block) -> np.ndarray:
    """A block's values as floats; a cell holding an error (#VALUE!, #NAME?) or nothing is an error."""
    ws = wb[block.sheet]
    out = np.empty((block.rows, block.cols))
    for i in range(block.rows):
        for j in range(block.cols):
            value = ws.cell(block.top + i, block.left + j).value
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise ValueError(f"{block.sheet}!{block.cell(i, j)} holds {value!r}, not a number")
            out[i, j] = value
    return out


def relative_difference(sheet: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """|sheet − reference| / |reference|; where the reference is exactly 0 (ReLU), 0 if the sheet is 0 too, else inf."""
    sheet, reference = np.asarray(sheet, float), np.asarray(reference, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.abs(sheet - reference) / np.abs(reference)
    return np.where(reference == 0, np.where(sheet == 0, 0.0, np.inf), rel)


@dataclass(frozen=True)
class SpreadsheetCheck:
    """The recalculated workbook against PyTorch: each layer's (z, a) as the spreadsheet computed them."""

    values: list[tuple[np.ndarray, np.ndarray]]
    max_rel_diff: float
    seconds: float  # LibreOffice's time to open, recalculate and save


def check_against_pytorch(path: str | Path, walk: Walkthrough, timeout: float = 120.0) -> SpreadsheetCheck:
    """Recalculate the workbook at `path` (written for `walk`) and compare every z and a with the module's."""
    layout = build_workbook(walk)[1]
    start = time.perf_counter()
    wb = recalculate(path, timeout)
    seconds = time.perf_counter() - start
    values, worst = [], 0.0
    for step, blocks in zip(walk.steps, layout.layers):
        z, a = read_block(wb, blocks.z), read_block(wb, blocks.a)
        values.append((z, a))
        worst = max(worst, float(relative_difference(z, step.module_Z).max()),
                    float(relative_difference(a, step.module_A).max()))
    return SpreadsheetCheck(values=values, max_rel_diff=worst, seconds=seconds)
