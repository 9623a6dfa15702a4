"""`dlconcepts.run_lab` and `labs_table`: the notebook face, as thin as the CLI and equal to it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import dlconcepts
from dlconcepts import notebook
from dlconcepts.cli import main
from dlconcepts.errors import ConfigError, UserError
from dlconcepts.labs import all_labs


def _cli_run(lab_id, out, seed, set_pairs):
    args = ["run", lab_id, "--quick", "--seed", str(seed), "--out", str(out), "--quiet"]
    for pair in set_pairs:
        args += ["--set", pair]
    assert main(args) == 0
    (run_dir,) = list(out.iterdir())
    return run_dir


def _without_time(metrics):
    return {k: v for k, v in metrics.items() if k != "seconds"}


@pytest.mark.parametrize(
    "lab_id, set_pairs, config",
    [
        ("mlp-regression", ["hidden=20,10", "epochs=150"], {"hidden": (20, 10), "epochs": 150}),
        ("mlp-classification", ["lr=0.02"], {"lr": "0.02"}),  # a string is read like --set's text
        ("overfitting", ["epochs=120"], {"epochs": 120}),
    ],
)
def test_run_lab_writes_the_same_metrics_as_dlc_run(tmp_path, lab_id, set_pairs, config):
    cli_dir = _cli_run(lab_id, tmp_path / "cli", 3, set_pairs)
    result = dlconcepts.run_lab(lab_id, quick=True, seed=3, out=tmp_path / "api", quiet=True, **config)
    cli_metrics = json.loads((cli_dir / "metrics.json").read_text())
    api_metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert _without_time(api_metrics) == _without_time(cli_metrics)
    assert result.metrics == api_metrics
    assert json.loads((cli_dir / "config.json").read_text())["config"] == result.config
    assert sorted(p.name for p in (cli_dir / "figures").iterdir()) == sorted(f.path.name for f in result.figures)


def _cli_error(capsys, *args):
    assert main(list(args)) == 2
    return capsys.readouterr().err.strip().removeprefix("dlc: error: ")


@pytest.mark.parametrize(
    "config, cli_set",
    [({"lrr": 0.1}, "lrr=0.1"), ({"epochs": "ten"}, "epochs=ten"), ({"lr": "-1"}, "lr=-1"),
     ({"activation": "relux"}, "activation=relux")],
)
def test_a_bad_key_or_value_is_the_clis_one_line_error_and_writes_nothing(tmp_path, capsys, config, cli_set):
    cli_message = _cli_error(capsys, "run", "mlp-regression", "--quick", "--out", str(tmp_path / "cli"), "--set", cli_set)
    with pytest.raises(ConfigError) as caught:
        dlconcepts.run_lab("mlp-regression", quick=True, out=tmp_path / "api", **config)
    assert str(caught.value) == cli_message
    assert "\n" not in cli_message
    assert not (tmp_path / "api").exists() and not (tmp_path / "cli").exists()


def test_a_value_of_the_wrong_type_is_refused_like_a_toml_value(tmp_path):
    with pytest.raises(ConfigError, match=r"epochs=2\.5 is not an integer"):
        dlconcepts.run_lab("mlp-regression", quick=True, out=tmp_path, epochs=2.5)
    with pytest.raises(ConfigError, match=r"hidden=\[30, 'x'\] is not a comma-separated list of integers"):
        dlconcepts.run_lab("mlp-regression", quick=True, out=tmp_path, hidden=[30, "x"])


def test_an_unknown_lab_and_all_are_one_line_errors(capsys):
    cli_message = _cli_error(capsys, "run", "mlp-regresion")
    with pytest.raises(UserError) as caught:
        dlconcepts.run_lab("mlp-regresion")
    assert str(caught.value) == cli_message and "did you mean 'mlp-regression'" in cli_message
    with pytest.raises(UserError, match="dlc run all"):
        dlconcepts.run_lab("all")


def test_a_user_error_renders_as_one_line_in_ipython():
    assert ConfigError("lr=-1 is impossible")._render_traceback_() == ["ConfigError: lr=-1 is impossible"]


def test_the_result_draws_itself_with_its_figures_embedded(tmp_path):
    result = dlconcepts.run_lab("overfitting", quick=True, out=tmp_path, quiet=True, epochs=30)
    page = result._repr_html_()
    assert page.count('src="data:image/png;base64,') == len(result.figures) >= 1
    assert 'src="figures/' not in page  # Colab cannot show a path on the kernel's disk
    assert result.headline in page and all(what in page for _, what in result.three_steps)
    first = result.figures[0]
    assert result.figure(first.name) is first and first._repr_png_().startswith(b"\x89PNG")
    with pytest.raises(UserError, match=f"did you mean '{first.name}'"):
        result.figure(first.name + "s")
    assert result.report == (result.run_dir / "report.md").read_text()
    assert "quick mode" in repr(result)


def test_labs_table_lists_every_lab_in_course_order_with_its_three_steps():
    table = dlconcepts.labs_table()
    labs = all_labs()
    assert list(table.index) == list(labs)
    for lab_id, lab in labs.items():
        steps = dict(lab.three_steps())
        assert table.loc[lab_id, "function"] == steps["1. function"]
        assert table.loc[lab_id, "loss"] == steps["2. loss"]
        assert table.loc[lab_id, "minimizer"] == steps["3. minimizer"]


def test_import_dlconcepts_stays_light_and_exports_the_api():
    code = "import sys, dlconcepts; print('torch' in sys.modules); print(dlconcepts.run_lab.__module__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True).stdout
    assert out.split() == ["False", "dlconcepts.notebook"]
    assert dlconcepts.run_lab is notebook.run_lab and dlconcepts.labs_table is notebook.labs_table
    with pytest.raises(AttributeError):
        dlconcepts.no_such_thing  # noqa: B018


@pytest.mark.parametrize("backend, expected", [("module://matplotlib_inline.backend_inline", "inline"), ("", "agg")])
def test_figures_keep_a_notebooks_inline_backend_and_use_agg_elsewhere(backend, expected):
    code = "import matplotlib, dlconcepts.report.figures; print(matplotlib.get_backend().lower())"
    env = {"PATH": "/usr/bin:/bin", **({"MPLBACKEND": backend} if backend else {})}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env, check=True)
    assert expected in out.stdout
