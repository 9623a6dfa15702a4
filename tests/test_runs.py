import json
import math
import os
import stat

import pytest
import torch

from dlconcepts.runs import Run, atomic_write_json, atomic_write_text


def test_atomic_write_replaces_whole_file(tmp_path):
    path = tmp_path / "a.txt"
    atomic_write_text(path, "old")
    atomic_write_text(path, "new")
    assert path.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "metrics.json"
    atomic_write_json(path, {"ok": 1})

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr("dlconcepts.runs.os.replace", broken_replace)
    with pytest.raises(OSError):
        atomic_write_json(path, {"ok": 2})
    assert json.loads(path.read_text()) == {"ok": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temp file left behind


def test_json_has_no_nan(tmp_path):
    atomic_write_json(tmp_path / "m.json", {"a": math.nan, "b": torch.tensor(2.5), "c": (1, math.inf)})
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": None, "b": 2.5, "c": [1, None]}


def test_run_directories_never_collide(tmp_path):
    a = Run.create(tmp_path, "lab", quiet=True)
    b = Run.create(tmp_path, "lab", quiet=True)
    assert a.path != b.path and a.path.is_dir() and b.path.is_dir()
    assert (a.path / "figures").is_dir()


def test_log_and_model(tmp_path, capsys):
    run = Run(tmp_path / "r", quiet=True)
    run.log("hello")
    run.log("world")
    assert (run.path / "log.txt").read_text() == "hello\nworld\n"
    assert capsys.readouterr().out == ""
    model = torch.nn.Linear(2, 1)
    run.save_model({"model": model.state_dict(), "layer_sizes": [2, 1]})
    state = torch.load(run.path / "model.pt", weights_only=True)
    assert torch.equal(state["model"]["weight"], model.weight)


def test_atomic_writes_get_the_mode_a_plain_open_would_give(tmp_path):
    old = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "report.md", "x")
        assert stat.S_IMODE(path.stat().st_mode) == 0o644  # not mkstemp's 0o600
        os.umask(0o077)
        assert stat.S_IMODE(atomic_write_text(tmp_path / "b.md", "y").stat().st_mode) == 0o600
    finally:
        os.umask(old)
