"""The `dlc` command, through its real entry point: labs in quick mode, and every user mistake."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dlconcepts.cli import main
from dlconcepts.labs import all_labs

LAB_IDS = list(all_labs())


def dlc(*args, cwd=None):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "dlconcepts", *args], capture_output=True, text=True, cwd=cwd, env=env)


def check_run_directory(path: Path, lab_id: str):
    assert {p.name for p in path.iterdir()} >= {"config.json", "metrics.json", "figures", "model.pt", "log.txt", "report.md"}
    config = json.loads((path / "config.json").read_text())
    assert config["lab"] == lab_id and config["quick"] is True
    assert config["seeds"] == {"python": 7, "numpy": 7, "torch": 7}
    lab = all_labs()[lab_id]
    if lab.prefers_cpu:  # a tiny model stays on the CPU under --device auto, GPU or not
        assert config["runtime"]["device"] == "cpu"
    metrics = json.loads((path / "metrics.json").read_text())
    assert metrics["lab"] == lab_id and metrics["seconds"] > 0
    figures = list((path / "figures").glob("*.png"))
    assert figures and all(f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for f in figures)
    state = torch.load(path / "model.pt", weights_only=True)
    assert any(k.endswith("weight") for k in state["model"])
    assert f"device: {config['runtime']['device_name']}" in (path / "log.txt").read_text()
    report = (path / "report.md").read_text()
    head = report[: report.index("## Results")]
    for _, step in lab.three_steps(lab.config(**{k: tuple(v) if isinstance(v, list) else v for k, v in config["config"].items()})):
        assert step.replace("|", "\\|") in head  # Markdown tables escape a '|' inside a cell
    for fig in figures:
        assert f"figures/{fig.name}" in report
    assert not list(path.rglob("*.tmp"))


@pytest.mark.parametrize("lab_id", LAB_IDS)
def test_each_lab_runs_in_quick_mode_through_the_cli(lab_id, tmp_path):
    result = dlc("run", lab_id, "--quick", "--seed", "7", "--out", str(tmp_path), "--quiet")
    assert result.returncode == 0, result.stderr
    (run_dir,) = tmp_path.iterdir()
    assert run_dir.name.endswith(f"-{lab_id}")
    assert result.stdout.strip() == f"report: {run_dir / 'report.md'}"
    check_run_directory(run_dir, lab_id)


def test_run_all_quick_writes_the_course_index(tmp_path):
    result = dlc("run", "all", "--quick", "--seed", "7", "--out", str(tmp_path), "--quiet")
    assert result.returncode == 0, result.stderr
    (root,) = tmp_path.iterdir()
    index = (root / "report.md").read_text()
    for lab_id in LAB_IDS:
        check_run_directory(root / lab_id, lab_id)
        assert f"[{lab_id}]({lab_id}/report.md)" in index
    summary = json.loads((root / "metrics.json").read_text())
    assert [e["status"] for e in summary["labs"]] == ["ok"] * len(LAB_IDS)


def test_same_seed_same_numbers(tmp_path):
    for out in ("a", "b"):
        assert main(["run", "mlp-classification", "--quick", "--seed", "3", "--out", str(tmp_path / out), "--quiet"]) == 0
    a, b = (json.loads(next((tmp_path / o).iterdir()).joinpath("metrics.json").read_text()) for o in ("a", "b"))
    a.pop("seconds"), b.pop("seconds")
    assert a == b


def test_set_and_toml_reach_the_config(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text("[mlp-regression]\nepochs = 12\nhidden = [8, 4]\n")
    out = tmp_path / "runs"
    assert main(["run", "mlp-regression", "--config", str(toml), "--set", "lr=0.02", "--out", str(out), "--quiet"]) == 0
    config = json.loads(next(out.iterdir()).joinpath("config.json").read_text())["config"]
    assert (config["epochs"], config["hidden"], config["lr"]) == (12, [8, 4], 0.02)
    metrics = json.loads(next(out.iterdir()).joinpath("metrics.json").read_text())
    assert metrics["standardized"]["epochs_run"] == 12
    assert "1→8→4→1" in next(out.iterdir()).joinpath("report.md").read_text()


def test_version_labs_and_help():
    result = dlc("--version")
    assert result.returncode == 0 and result.stdout.startswith("dlc 0.")
    result = dlc("labs")
    assert result.returncode == 0
    for lab in all_labs().values():
        assert lab.id in result.stdout
        for _, step in lab.three_steps():
            assert step in result.stdout
    for args in (["--help"], ["run", "--help"], ["labs", "--help"], ["config", "--help"], ["serve", "--help"]):
        assert dlc(*args).returncode == 0
    assert "serve" in dlc("--help").stdout
    result = dlc("config", "mlp-regression")
    assert result.returncode == 0 and "lr" in result.stdout and "learning rate" in result.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "mlp-regresion"], "unknown lab 'mlp-regresion' (did you mean 'mlp-regression'?)"),
        (["run", "mlp-regression", "--set", "lrr=0.1"], "unknown config key 'lrr' for lab 'mlp-regression' (did you mean 'lr'?)"),
        (["run", "mlp-regression", "--set", "epochs=ten"], "epochs='ten' is not an integer"),
        (["run", "mlp-regression", "--set", "lr=-0.1"], "lr=-0.1 is impossible: it must be > 0"),
        (["run", "mlp-regression", "--set", "epochs=0"], "epochs=0 is impossible: it must be > 0"),
        (["run", "mlp-classification", "--set", "activation=softmax"], "activation=softmax is not accepted"),
        (["run", "mlp-regression", "--set", "epochs"], "is not key=value"),
        (["run", "mlp-regression", "--config", "missing.toml"], "does not exist"),
        (["run", "mlp-regression", "--seed", "-1"], "--seed -1 is impossible"),
        (["run", "mlp-regression", "--seed", "abc"], "invalid int value: 'abc'"),
        (["run", "mlp-regression", "--device", "tpu"], "--device 'tpu' is not known"),
        (["run", "mlp-regression", "--threads", "0"], "--threads 0 is impossible"),
        (["run", "all", "--set", "nokey=1"], "no lab has a config key 'nokey'"),
        (["run", "all", "--set", "mlp-regresion.epochs=1"], "unknown lab 'mlp-regresion'"),
        (["run"], "give a lab id (see 'dlc labs'), 'all', or --resume RUN_DIR"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_user_errors_are_one_line_with_exit_code_2(args, message, tmp_path, capsys):
    out = tmp_path / "runs"
    code = main([*args, "--out", str(out)] if args[0] == "run" and len(args) > 1 else args)
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert err.count("\n") == 1 and err.startswith("dlc: error: ")
    assert not out.exists()  # nothing was written for a refused command


def test_bad_toml_and_missing_cuda(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("epochs = = 1")
    assert main(["run", "mlp-regression", "--config", str(bad), "--out", str(tmp_path / "r")]) == 2
    assert "not valid TOML" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["run", "mlp-regression", "--device", "cuda", "--out", str(tmp_path / "r")]) == 2
        assert "no CUDA GPU" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_errors_through_the_real_process_have_no_traceback(tmp_path):
    result = dlc("run", "mlp-regression", "--set", "lr=-1", "--out", str(tmp_path))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1


def test_divergence_is_one_line_and_the_log_keeps_it(tmp_path, capsys):
    out = tmp_path / "runs"
    code = main(["run", "mlp-regression", "--quick", "--set", "lr=100", "--set", "optimizer=sgd", "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "loss became" in err and "learning rate" in err and err.count("\n") == 1
    (run_dir,) = out.iterdir()
    assert "loss became" in (run_dir / "log.txt").read_text()
    json.loads((run_dir / "config.json").read_text())  # what was written is whole


@pytest.mark.parametrize("args, message", [
    (["run", "linear-gd", "--mnist", "anywhere"], "--mnist: lab 'linear-gd' has no mnist setting; the labs that take it: cnn-digits"),
    (["run", "matrix", "--weights", "w.pt"], "--weights: lab 'matrix' has no weights setting; the labs that take it: conv"),
    (["run", "conv", "--weights", "no-such-file.pt"], "weights='no-such-file.pt': no such file"),
    (["run", "vae", "--mnist", "no-such-folder"], "MNIST folder 'no-such-folder' does not exist"),
])
def test_weights_and_mnist_flags_are_refused_in_one_line_before_anything_is_written(tmp_path, capsys, args, message):
    assert main([*args, "--out", str(tmp_path / "runs"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"dlc: error: {message}") and err.count("\n") == 1
    assert not (tmp_path / "runs").exists()
