""""Use Excel to verify": the workbook's live formulas, recalculated by a real spreadsheet engine (LibreOffice).

A workbook whose formulas were never recalculated proves nothing, so these tests (1) poison every
formula's cached value before recalculating and (2) change an input cell and check that every layer
follows it.
"""

import io
import os
import re
import zipfile

import numpy as np
import pytest
import torch
from openpyxl import load_workbook
from torch import nn

from dlconcepts.cli import main
from dlconcepts.explain import spreadsheet
from dlconcepts.explain.matrix import COURSE_X, course_network, layers_from_sequential, walk_through
from dlconcepts.explain.spreadsheet import (
    SpreadsheetEngineMissing, build_workbook, check_against_pytorch, read_block, recalculate, relative_difference,
    write_workbook,
)
from dlconcepts.scratch.mlp import forward_as_matrices

RTOL = 1e-6  # the bar; both sides compute in IEEE double, so the real gaps are ~1e-15


@pytest.fixture
def soffice():
    path = spreadsheet.find_soffice()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("LibreOffice (soffice) is missing in CI; .ci/run installs libreoffice-calc-nogui")
        pytest.skip("LibreOffice (soffice) is not installed; apt-get install libreoffice-calc-nogui")
    return path


def mixed_network() -> nn.Sequential:
    """A network that is not the course's: every supported activation, different widths."""
    torch.manual_seed(11)
    return nn.Sequential(
        nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 4), nn.Sigmoid(), nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2),
    ).double()


def mixed_inputs() -> np.ndarray:
    return np.random.default_rng(4).normal(size=(4, 3)) * 2


def assert_matches_pytorch(wb, walk, layout):
    for step, blocks in zip(walk.steps, layout.layers):
        z, a = read_block(wb, blocks.z), read_block(wb, blocks.a)
        np.testing.assert_allclose(z, step.module_Z, rtol=RTOL, atol=0)
        np.testing.assert_allclose(a, step.module_A, rtol=RTOL, atol=0)
        assert read_block(wb, blocks.max_abs_diff)[0, 0] <= 1e-12


def poison_cached_values(xlsx: bytes, value: str = "999") -> bytes:
    """The same workbook, but every formula cell carries a (wrong) cached value."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(xlsx)) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename.startswith("xl/worksheets/sheet"):
                text, n = re.subn(r"(<f[^>]*>[^<]*</f>)(<v>[^<]*</v>|<v\s*/>)?", rf"\1<v>{value}</v>", data.decode())
                data = text.encode()
            zout.writestr(item, data)
    return out.getvalue()


def test_workbook_has_live_formulas_and_the_course_names():
    walk = walk_through(course_network("sigmoid"), COURSE_X)
    wb, layout = build_workbook(walk)
    assert wb.sheetnames == ["inputs", "layer 1", "layer 2", "layer 3"]
    sheet = wb["layer 1"]
    texts = [str(getattr(c.value, "text", c.value)) for row in sheet.iter_rows() for c in row if c.value is not None]
    assert any(t.startswith("=MMULT(") and "TRANSPOSE(" in t for t in texts)
    assert {"w13", "w23", "w14", "w24", "w15", "w25", "b3", "b4", "b5"} <= set(texts)
    z = layout.layers[0].z
    assert sheet.cell(z.top, z.left).value.startswith("=")
    a = layout.layers[0].a
    assert sheet.cell(a.top, a.left).value == f"=1/(1+EXP(-{z.cell(0, 0)}))"
    assert "w6y" in [c.value for row in wb["layer 3"].iter_rows() for c in row]


def test_course_workbook_recalculated_by_libreoffice_matches_pytorch(soffice, tmp_path):
    walk = walk_through(course_network(), COURSE_X)
    path = write_workbook(walk, tmp_path / "course.xlsx")
    check = check_against_pytorch(path, walk)
    assert check.max_rel_diff <= RTOL
    np.testing.assert_allclose(check.values[0][0], walk.steps[0].module_Z, rtol=RTOL, atol=0)
    assert round(check.values[0][0][2, 1], 4) == -9.3572


def test_poisoned_cached_values_are_replaced_by_the_recalculation(soffice, tmp_path):
    """Every formula cell claims 999; only a real recalculation gives PyTorch's numbers back."""
    walk = walk_through(mixed_network(), mixed_inputs())
    wb, layout = build_workbook(walk)
    buffer = io.BytesIO()
    wb.save(buffer)
    poisoned = tmp_path / "poisoned.xlsx"
    poisoned.write_bytes(poison_cached_values(buffer.getvalue()))
    stale = load_workbook(poisoned, data_only=True)  # what a reader sees without recalculating
    assert (read_block(stale, layout.layers[0].z) == 999).all() and (read_block(stale, layout.layers[2].a) == 999).all()

    recalculated = recalculate(poisoned)
    assert_matches_pytorch(recalculated, walk, layout)
    assert [layer.activation for layer in layers_from_sequential(mixed_network())] == ["relu", "sigmoid", "tanh", "identity"]
    assert (read_block(recalculated, layout.layers[0].a) == 0).any()  # ReLU did cut something


def test_changing_an_input_cell_moves_every_layer(soffice, tmp_path):
    net = mixed_network()
    X = mixed_inputs()
    walk = walk_through(net, X)
    path = write_workbook(walk, tmp_path / "mixed.xlsx")
    _, layout = build_workbook(walk)
    edited = load_workbook(path)
    inputs = layout.inputs
    new_value = 7.25
    edited[inputs.sheet].cell(inputs.top + 1, inputs.left + 2).value = new_value
    edited.save(tmp_path / "edited.xlsx")

    recalculated = recalculate(tmp_path / "edited.xlsx")
    X_new = X.copy()
    X_new[1, 2] = new_value
    expected = forward_as_matrices(X_new, layers_from_sequential(net))
    for out, blocks, step in zip(expected, layout.layers, walk.steps):
        np.testing.assert_allclose(read_block(recalculated, blocks.z), out.Z, rtol=RTOL, atol=0)
        np.testing.assert_allclose(read_block(recalculated, blocks.a), out.A, rtol=RTOL, atol=0)
        # PyTorch's columns kept the old numbers, so the sheet's difference now shows the edit
        assert read_block(recalculated, blocks.max_abs_diff)[0, 0] > 1e-6
    # LibreOffice saves numbers to .xlsx with 15 significant digits, hence 1e-14 and not exact
    np.testing.assert_allclose(read_block(recalculated, inputs), X_new, rtol=1e-14, atol=0)
    assert read_block(recalculated, inputs)[1, 2] == new_value


def test_dlc_explain_matrix_excel_writes_a_workbook_that_recalculates(soffice, tmp_path, capsys):
    target = tmp_path / "sub" / "walk.xlsx"
    assert main(["explain", "matrix", "--layers", "2,4,3,1", "--activation", "tanh", "--seed", "1",
                 "--excel", str(target)]) == 0
    assert f"workbook: {target}" in capsys.readouterr().out
    assert not list(target.parent.glob("*.tmp"))
    from dlconcepts.explain.matrix import choose_network

    net, X, _ = choose_network((2, 4, 3, 1), "tanh", 1)
    walk = walk_through(net, X)
    assert target.read_bytes()[:2] == b"PK"
    assert check_against_pytorch(target, walk).max_rel_diff <= RTOL


def test_missing_libreoffice_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(spreadsheet.shutil, "which", lambda name: None)
    path = write_workbook(walk_through(course_network(), COURSE_X), tmp_path / "c.xlsx")
    with pytest.raises(SpreadsheetEngineMissing, match="install it"):
        recalculate(path)


def test_relative_difference_handles_exact_zeros():
    rel = relative_difference(np.array([0.0, 0.0, 1.0 + 1e-9]), np.array([0.0, 1e-3, 1.0]))
    assert rel[0] == 0 and rel[1] == 1 and rel[2] == pytest.approx(1e-9)
    assert relative_difference(np.array([1e-30]), np.array([0.0]))[0] == np.inf
